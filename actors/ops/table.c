/*  actors/ops/table.c — where the persister finds an operation by name.
 *  Each resource file (actors/ops/<resource>.c) exports its own table. */
#include "ops.h"

#include <string.h>

extern const op_def_t ops_auth[];
extern const op_def_t ops_rooms[];
extern const op_def_t ops_messages[];
extern const op_def_t ops_receipts[];
extern const op_def_t ops_presence[];
extern const op_def_t ops_ws[];
extern const op_def_t ops_notifications[];
extern const op_def_t ops_admin[];
extern const op_def_t ops_jobs[];
extern const op_def_t ops_inject[];
extern const op_def_t ops_attachments[];

static const op_def_t *const s_tables[] = {
    ops_auth, ops_rooms, ops_messages, ops_receipts, ops_presence, ops_ws, ops_inject,
    ops_attachments, ops_notifications, ops_admin, ops_jobs, NULL
};

const op_def_t *
ops_lookup (const char *name)
{
    for (const op_def_t *const *table = s_tables; *table; table++)
        for (const op_def_t *def = *table; def->name; def++)
            if (strcmp (def->name, name) == 0)
                return def;
    return NULL;
}
