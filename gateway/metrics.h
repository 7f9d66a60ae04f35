/*  gateway/metrics.h — the figures behind GET /metrics (Prometheus text).
 *
 *  Owned by one gateway actor: its own counters (HTTP requests by status,
 *  open connections, WebSocket frames) and the last STATS envelope of every
 *  other actor (envelopes handled, mailbox depth, actor figures).
 */
#ifndef PARLEY_METRICS_H
#define PARLEY_METRICS_H

#include <jansson.h>
#include <stdint.h>

typedef struct metrics_t metrics_t;

/* Caller owns return value. */
metrics_t *metrics_new (const char *gateway_name);
void metrics_destroy (metrics_t **self_p);

/* Counts one HTTP answer with `status`. */
void metrics_http (metrics_t *self, int status);
/* Adds `delta` to a gauge or counter of the gateway ("connections_open"). */
void metrics_add (metrics_t *self, const char *name, int64_t delta);
/* Records the STATS body of another actor (copied). */
void metrics_actor (metrics_t *self, const json_t *stats);

/* Renders everything as Prometheus text; caller frees with free(). */
char *metrics_render (metrics_t *self, size_t *size);

#endif
