/*  gateway/ratelimit.h — per-user token buckets for message sends.
 *
 *  API.md §6: default 20 sends/s with bursts of 50 (config rate_limit_per_sec,
 *  rate_limit_burst), over REST and WebSocket alike. Each gateway actor
 *  keeps the buckets of the users it serves; idle full buckets are dropped
 *  by ratelimit_sweep so memory stays bounded by active senders.
 */
#ifndef PARLEY_RATELIMIT_H
#define PARLEY_RATELIMIT_H

#include <czmq.h>
#include <stdint.h>
#include "config.h"

/* A table of buckets (user id -> bucket). Caller owns return value. */
zhashx_t *ratelimit_new (void);

/* Takes one token from `user`'s bucket at time `now_ms`. Returns 0 when
   allowed, -1 when limited, with the seconds until a token is due in
   *retry_after. */
int ratelimit_take_at (zhashx_t *buckets, const char *user, const config_t *config,
                       int64_t now_ms, double *retry_after);

/* The same at the current monotonic time. */
int ratelimit_take (zhashx_t *buckets, const char *user, const config_t *config,
                    double *retry_after);

/* Drops buckets that have refilled completely by `now_ms`. */
void ratelimit_sweep (zhashx_t *buckets, const config_t *config, int64_t now_ms);

#endif
