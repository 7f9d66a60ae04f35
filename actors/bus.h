/*  actors/bus.h — the ZeroMQ side door (API.md §4).
 *
 *  Owns the events PUB socket (events_endpoint): every committed room event
 *  is published as [topic "room.<id>", msgpack envelope]. A high-water mark
 *  keeps a slow subscriber from slowing Parley: past it, ZeroMQ drops.
 */
#ifndef PARLEY_BUS_H
#define PARLEY_BUS_H

#include "actor.h"

extern const actor_def_t bus_actor;

#endif
