/*  actors/migrate.c — applies the embedded migrations, see migrate.h. */
#include "migrate.h"
#include "log.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MIGRATE_LOCK_KEY "7370616e6c6579"   /* advisory lock id */

static int
s_exec (PGconn *pg, const char *sql, char *error, size_t error_size)
{
    PGresult *res = PQexec (pg, sql);
    ExecStatusType st = PQresultStatus (res);
    int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : -1;
    if (rc)
        snprintf (error, error_size, "%s", PQresultErrorMessage (res));
    PQclear (res);
    return rc;
}

static int
s_applied (PGconn *pg, const char *version)
{
    const char *params[] = { version };
    PGresult *res = PQexecParams (pg,
        "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL, params,
        NULL, NULL, 0);
    int found = PQresultStatus (res) == PGRES_TUPLES_OK ? PQntuples (res) > 0 : -1;
    PQclear (res);
    return found;
}

static int
s_apply_one (PGconn *pg, const migration_t *m, char *error, size_t error_size)
{
    char message[400];
    if (s_exec (pg, "BEGIN", message, sizeof message) != 0)
        goto failed;
    if (s_exec (pg, m->sql, message, sizeof message) != 0)
        goto rollback;
    const char *params[] = { m->version };
    PGresult *res = PQexecParams (pg,
        "INSERT INTO schema_migrations (version) VALUES ($1)", 1, NULL, params,
        NULL, NULL, 0);
    bool ok = PQresultStatus (res) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf (message, sizeof message, "%s", PQresultErrorMessage (res));
    PQclear (res);
    if (!ok || s_exec (pg, "COMMIT", message, sizeof message) != 0)
        goto rollback;
    log_info ("migrate", "applied %s", m->version);
    return 0;
rollback:
    s_exec (pg, "ROLLBACK", error, error_size);
failed:
    snprintf (error, error_size, "migration %s failed: %s", m->version, message);
    return -1;
}

int
migrate_apply (PGconn *pg, char *error, size_t error_size)
{
    if (s_exec (pg, "SET client_min_messages = warning", error, error_size)
        || s_exec (pg, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                       " version text PRIMARY KEY,"
                       " applied_at timestamptz NOT NULL DEFAULT now())",
                   error, error_size)
        || s_exec (pg, "SELECT pg_advisory_lock(x'" MIGRATE_LOCK_KEY "'::bigint)",
                   error, error_size))
        return -1;
    int applied = 0;
    for (const migration_t *m = migrations_table; m->version; m++) {
        int found = s_applied (pg, m->version);
        if (found < 0) {
            snprintf (error, error_size, "cannot read schema_migrations: %s",
                      PQerrorMessage (pg));
            applied = -1;
            break;
        }
        if (found)
            continue;
        if (s_apply_one (pg, m, error, error_size) != 0) {
            applied = -1;
            break;
        }
        applied++;
    }
    char ignored[200];
    s_exec (pg, "SELECT pg_advisory_unlock(x'" MIGRATE_LOCK_KEY "'::bigint)",
            ignored, sizeof ignored);
    return applied;
}
