/*  actors/actor.h — the runtime every Parley actor (but the gateway) runs on.
 *
 *  An actor is a CZMQ zactor: one thread that owns its state outright, an
 *  inbox of envelopes (mailbox.h) and a pipe to its parent. The runtime runs
 *  the loop — pipe commands, inbox batches, extra sockets, a tick — and the
 *  actor's definition supplies the handlers. Start-up is two-step: zactor_new
 *  returns once the thread runs, then actor_spawn sends START and waits for
 *  "OK" or "ERROR <why>", so a store that is down stops Parley's start-up
 *  with a message instead of a half-started server.
 *
 *  Every second the runtime reports its figures (envelopes handled, backlog)
 *  to the gateways as a STATS envelope, for /metrics.
 */
#ifndef PARLEY_ACTOR_H
#define PARLEY_ACTOR_H

#include <czmq.h>
#include "config.h"
#include "envelope.h"
#include "mailbox.h"

typedef struct actor_t actor_t;

typedef struct {
    const char *kind;      /* "persister", "room", ...: the name prefix      */
    size_t batch_max;      /* most envelopes per handle call (0 means 1)     */
    bool batch_from_config;/* use the group_commit_max setting instead       */
    int tick_ms;           /* tick period, 0 for none                        */
    /* Opens stores and builds state; 0, or -1 with a message in `error`.   */
    int (*start) (actor_t *self, char *error, size_t error_size);
    /* Handles `count` envelopes; the runtime destroys them afterwards.     */
    void (*handle) (actor_t *self, envelope_t **batch, size_t count);
    void (*tick) (actor_t *self);
    /* Releases the actor's state (also after a failed start).             */
    void (*stop) (actor_t *self);
} actor_def_t;

/* Starts actor `def` number `index` and waits for it to be ready.
   `config` must outlive the actor. Returns the zactor (caller owns) or NULL
   with the actor's reason in `error`. */
zactor_t *actor_spawn (const actor_def_t *def, int index, const config_t *config,
                       char *error, size_t error_size);

/* The actor's name ("persister.0"), configuration and outbound mailbox. */
const char *actor_name (actor_t *self);
int actor_index (actor_t *self);
const config_t *actor_config (actor_t *self);
mailbox_t *actor_mailbox (actor_t *self);

/* The actor's own state, set by its start handler. */
void *actor_state (actor_t *self);
void actor_set_state (actor_t *self, void *state);

/* Sends `env` to actor `to`; 0 or -1 (see mailbox_send). */
int actor_send (actor_t *self, const char *to, const envelope_t *env);

/* Sends `env` to every gateway actor (health, stats, events for sockets). */
void actor_send_gateways (actor_t *self, const envelope_t *env);

/* Watches an extra socket: `fn` runs when it is readable. */
typedef void (actor_reader_fn) (actor_t *self, zsock_t *sock);
int actor_watch (actor_t *self, zsock_t *sock, actor_reader_fn *fn);

/* Adds `n` to a named figure reported in the actor's STATS envelope. */
void actor_figure_add (actor_t *self, const char *figure, int64_t n);

/* Number of shards of `kind` the configuration asks for (cores when 0). */
int actor_shard_count (const config_t *config, const char *kind);

#endif
