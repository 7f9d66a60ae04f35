/*  actors/room.h — room shards: the hosts of Parley's room actors.
 *
 *  room.0 .. room.N-1 each host many rooms (room id hashed to a shard). A
 *  room receives its committed events from the persisters, puts them in seq
 *  order (two persisters may commit one room's events and answer in any
 *  order), and fans each out once: to the gateways, which own the sockets,
 *  and to the bus (ZeroMQ event socket). State per room: the next seq to
 *  deliver and the events waiting for an earlier one.
 */
#ifndef PARLEY_ROOM_H
#define PARLEY_ROOM_H

#include "actor.h"

extern const actor_def_t room_actor;

#endif
