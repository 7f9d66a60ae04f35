/*  gateway/gateway.h — the edge: REST and WebSocket on one port.
 *
 *  Each gateway actor runs one libwebsockets context in its own thread
 *  (several share the port with SO_REUSEPORT). It parses and checks input,
 *  authenticates bearer tokens, turns each request into an envelope for the
 *  actor that owns the data, and writes the asynchronous answer back. It
 *  never touches a store. Its inbox (answers, events, health, stats) and its
 *  zactor pipe are polled inside the lws loop as adopted descriptors.
 *  State owned: sockets, pending requests, store health, metrics.
 */
#ifndef PARLEY_GATEWAY_H
#define PARLEY_GATEWAY_H

#include <czmq.h>
#include "config.h"

/* Starts gateway number `index` listening on the configured address.
   Returns the actor (caller owns) or NULL with the reason in `error`. */
zactor_t *gateway_spawn (int index, const config_t *config, char *error,
                         size_t error_size);

#endif
