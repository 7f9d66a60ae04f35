/*  actors/ops_internal.h — the persister's side of ops.h: the connection an
 *  operation runs on, with its prepared-statement cache. */
#ifndef PARLEY_OPS_INTERNAL_H
#define PARLEY_OPS_INTERNAL_H

#include <czmq.h>
#include <libpq-fe.h>
#include <stdbool.h>

struct op_conn_t {
    PGconn *pg;
    zhashx_t *statements;   /* SQL text -> prepared statement name */
    int next_statement;
    char sqlstate[8];       /* of the last failed statement        */
    bool renew_savepoint;   /* before the next statement: RELEASE
                               SAVEPOINT op; SAVEPOINT op — sent with it
                               in one round trip (libpq pipeline mode) */
};

void op_conn_init (op_conn_t *self);
/* Closes the connection and forgets its prepared statements. */
void op_conn_reset (op_conn_t *self);
void op_conn_fini (op_conn_t *self);
/* Runs the pending savepoint renewal now, if any (false: it failed). */
bool op_conn_renew_savepoint (op_conn_t *self);

#endif
