/*  gateway/ws.h — the WebSocket side of the gateway (API.md §3). Internal.
 *
 *  A connection (ws_conn_t) belongs to one user once authenticated (session
 *  cookie, ?token=, or a first `auth` frame within 5 s, else close 4401).
 *  The gateway keeps two indexes over its connections: by user (for
 *  ephemeral events and membership changes) and by room (subscriptions,
 *  with the last seq each connection got, so per room every connection gets
 *  events in seq order without gaps or duplicates, also across `resume`).
 *
 *  Events are encoded once per room and gateway (a shared, refcounted
 *  frame), queued per connection, and coalesced into one array frame when
 *  several are waiting. The queue is bounded (ws_queue_max): ephemeral
 *  events are dropped first, then the connection is closed with 1013.
 *  Client commands become the same operations as REST (actors/ops), so REST
 *  and WebSocket share every rule.
 */
#ifndef PARLEY_GATEWAY_WS_H
#define PARLEY_GATEWAY_WS_H

#include "http.h"

typedef struct ws_conn_t ws_conn_t;

/* lws callbacks, one function each (the switch is in gateway.c) */
int ws_on_confirm_upgrade (gateway_t *gw, struct lws *wsi);
int ws_on_filter (gateway_t *gw, struct lws *wsi);
void ws_on_destroy (struct lws *wsi);
int ws_on_established (gateway_t *gw, struct lws *wsi, gw_session_t *pss);
int ws_on_receive (gateway_t *gw, struct lws *wsi, gw_session_t *pss,
                   const void *data, size_t len);
int ws_on_writeable (gateway_t *gw, struct lws *wsi, gw_session_t *pss);
int ws_on_timer (gateway_t *gw, struct lws *wsi, gw_session_t *pss);
void ws_on_closed (gateway_t *gw, gw_session_t *pss);

/* inbox envelopes */
void ws_on_room_event (gateway_t *gw, envelope_t *env);
void ws_on_room_ephemeral (gateway_t *gw, envelope_t *env);
void ws_on_user_event (gateway_t *gw, envelope_t *env);
/* Returns true when `env` answered a WebSocket command (and handles it). */
bool ws_on_response (gateway_t *gw, envelope_t *env);

/* Creates / destroys the gateway's WebSocket indexes. */
void ws_indexes_new (gateway_t *gw);
void ws_indexes_destroy (gateway_t *gw);

#endif
