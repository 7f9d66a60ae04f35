/*  actors/mailbox.h — how Parley's actors address each other.
 *
 *  Every actor owns one inbox: a PULL socket bound at inproc://parley.<name>
 *  ("persister.0", "room.3", "gateway.0", ...). A sender owns a mailbox_t: its
 *  own cache of PUSH sockets connected to the inboxes it writes to (ZeroMQ
 *  sockets are single-threaded, so each actor keeps its own). Between actors
 *  only encoded envelopes travel, never pointers.
 */
#ifndef PARLEY_MAILBOX_H
#define PARLEY_MAILBOX_H

#include <czmq.h>
#include "envelope.h"

typedef struct mailbox_t mailbox_t;

/* Binds and returns the inbox of actor `name`. Caller owns return value. */
zsock_t *mailbox_inbox_new (const char *name);

/* Creates an empty outbound mailbox. Caller owns return value. */
mailbox_t *mailbox_new (void);

/* Destroys it and its sockets; accepts NULL, nulls the pointer. */
void mailbox_destroy (mailbox_t **self_p);

/* Encodes `env` and sends it to the inbox of `to`, without blocking.
   Returns 0, or -1 when the envelope is invalid or the inbox is full. */
int mailbox_send (mailbox_t *self, const char *to, const envelope_t *env);

/* Receives one frame from an inbox (blocking only when `wait`). Returns 0
   when nothing was there, 1 when a frame was read: *env is then the decoded
   envelope (caller owns) or NULL when the frame was not valid (logged). */
int mailbox_recv (zsock_t *inbox, bool wait, envelope_t **env);

/* Writes "<kind>.<n>" into `name`, n chosen by hashing `key` over `count`
   shards (a stable FNV-1a hash, so every actor agrees). */
void mailbox_shard_name (char *name, size_t size, const char *kind,
                         const char *key, int count);

#endif
