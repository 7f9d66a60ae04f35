/*  actors/bus.c — events PUB socket. State: the PUB socket. */
#include "bus.h"
#include "log.h"

#define BUS_SNDHWM 100000

typedef struct {
    zsock_t *events;
} bus_t;

static int
s_start (actor_t *self, char *error, size_t error_size)
{
    bus_t *bus = calloc (1, sizeof *bus);
    if (!bus)
        return -1;
    actor_set_state (self, bus);
    bus->events = zsock_new (ZMQ_PUB);
    zsock_set_sndhwm (bus->events, BUS_SNDHWM);
    zsock_set_linger (bus->events, 0);
    const char *endpoint = actor_config (self)->events_endpoint;
    if (zsock_bind (bus->events, "%s", endpoint) < 0) {
        snprintf (error, error_size, "cannot bind events_endpoint %s: %s", endpoint,
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    log_info (actor_name (self), "publishing events on %s", endpoint);
    return 0;
}

static void
s_publish (bus_t *bus, const char *topic, const envelope_t *env)
{
    char *data = NULL;
    size_t size = 0;
    envelope_err_t err;
    if (envelope_encode (env, &data, &size, &err) != 0)
        return;
    zmq_send (zsock_resolve (bus->events), topic, strlen (topic), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (zsock_resolve (bus->events), data, size, ZMQ_DONTWAIT);
    free (data);
}

static void
s_handle (actor_t *self, envelope_t **batch, size_t count)
{
    bus_t *bus = actor_state (self);
    for (size_t i = 0; i < count; i++) {
        if (batch[i]->type != ENVELOPE_ROOM_EVENT)
            continue;
        char topic[96];
        snprintf (topic, sizeof topic, "room.%s", batch[i]->room);
        s_publish (bus, topic, batch[i]);
        actor_figure_add (self, "events_published", 1);
    }
}

static void
s_stop (actor_t *self)
{
    bus_t *bus = actor_state (self);
    if (!bus)
        return;
    zsock_destroy (&bus->events);
    free (bus);
    actor_set_state (self, NULL);
}

const actor_def_t bus_actor = {
    .kind = "bus",
    .batch_max = 256,
    .start = s_start,
    .handle = s_handle,
    .stop = s_stop,
};
