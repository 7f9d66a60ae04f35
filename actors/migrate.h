/*  actors/migrate.h — applies schema/migrations (*.sql) at start-up.
 *
 *  The migrations are compiled into parleyd (schema/embed_migrations.cmake).
 *  Each one not yet recorded in schema_migrations is applied in its own
 *  transaction, under an advisory lock so several nodes starting at once
 *  apply each exactly once. Landed migrations are never edited.
 */
#ifndef PARLEY_MIGRATE_H
#define PARLEY_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>

typedef struct {
    const char *version;   /* "001_core"          */
    const char *sql;       /* the file's contents */
} migration_t;

/* Every migration, in order, ending with {NULL, NULL}. */
extern const migration_t migrations_table[];

/* Applies what is missing. Returns the number applied, or -1 with a message
   in `error`. */
int migrate_apply (PGconn *pg, char *error, size_t error_size);

#endif
