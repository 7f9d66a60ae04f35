/*  actors/user.h — user shards: the hosts of Parley's user actors.
 *
 *  user.0 .. user.N-1 each host many users (user id hashed to a shard). A
 *  user actor aggregates the user's WebSocket connections across every
 *  gateway and device: the first connection makes the user online; when the
 *  last one has been gone for presence_grace seconds the user goes offline
 *  (last_seen set, online time added). A reconnect within the grace period
 *  changes nothing, so a flaky network does not flap presence.
 *  Every PRESENCE_BEAT_MS the shard tells presence which users it hosts
 *  (Redis keys with a TTL), so a node that dies leaves no user online for
 *  long: the cleanup-expired-presence job takes them offline.
 *  State per user: open connections and the offline deadline.
 */
#ifndef PARLEY_USER_H
#define PARLEY_USER_H

#include "actor.h"

extern const actor_def_t user_actor;

#endif
