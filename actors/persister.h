/*  actors/persister.h — the actors that own PostgreSQL.
 *
 *  persister.0 .. persister.N-1 each own one connection. Each drains its
 *  inbox in batches and runs the batch's operations (ops.h) in one
 *  transaction, one savepoint per operation (group commit): one fsync for
 *  many requests. Answers and committed events leave only after COMMIT.
 *  persister.0 applies the migrations at start and reports the database's
 *  health to the gateways.
 */
#ifndef PARLEY_PERSISTER_H
#define PARLEY_PERSISTER_H

#include "actor.h"

extern const actor_def_t persister_actor;

#endif
