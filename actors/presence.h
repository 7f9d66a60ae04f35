/*  actors/presence.h — the actor that owns Redis.
 *
 *  Live presence and typing indicators with TTLs, heartbeats, and the
 *  periodic copy to PostgreSQL live here. It keeps one hiredis connection,
 *  pings Redis every second, reconnects when it is lost, and reports
 *  Redis's health to the gateways (GET /readyz).
 */
#ifndef PARLEY_PRESENCE_H
#define PARLEY_PRESENCE_H

#include "actor.h"

extern const actor_def_t presence_actor;

/* Liveness across nodes: every user shard beats for its connected users
   every PRESENCE_BEAT_MS; presence keeps presence:live:<user> for
   PRESENCE_LIVE_TTL seconds. A user whose record says "connected" for
   longer than that without a key has lost their node: the
   cleanup-expired-presence job takes them offline. */
#define PRESENCE_BEAT_MS   30000
#define PRESENCE_LIVE_TTL  90

/* Parses redis://host[:port][/db] into its parts; 0 or -1. */
int presence_parse_url (const char *url, char *host, size_t host_size, int *port,
                        int *db);

#endif
