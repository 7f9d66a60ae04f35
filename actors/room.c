/*  actors/room.c — room shards: per-room ordering and fan-out. */
#include "room.h"
#include "log.h"

/* How long a room waits for a missing seq before delivering past it; a gap
   can only come from a transaction that committed on another node (its
   events reach clients through resume from PostgreSQL). */
#define ROOM_GAP_WAIT_MS 2000
#define ROOM_IDLE_MS     (10 * 60 * 1000)

typedef struct {
    int64_t next_seq;        /* 0: not known yet (first event sets it)  */
    zlistx_t *waiting;       /* envelopes with seq > next_seq, by seq    */
    int64_t waiting_since;
    int64_t last_used;
} room_t;

typedef struct {
    zhashx_t *rooms;         /* room id -> room_t */
} shard_t;

static int64_t
s_now (void)
{
    return zclock_mono ();
}

static void
s_room_free (void **item)
{
    room_t *room = *item;
    if (room) {
        envelope_t *env;
        while ((env = zlistx_detach (room->waiting, NULL)))
            envelope_destroy (&env);
        zlistx_destroy (&room->waiting);
        free (room);
    }
    *item = NULL;
}

static int
s_start (actor_t *self, char *error, size_t error_size)
{
    (void) error, (void) error_size;
    shard_t *shard = calloc (1, sizeof *shard);
    if (!shard)
        return -1;
    shard->rooms = zhashx_new ();
    zhashx_set_destructor (shard->rooms, s_room_free);
    actor_set_state (self, shard);
    return 0;
}

static int64_t
s_seq (envelope_t *env)
{
    return json_integer_value (json_object_get (env->body, "seq"));
}

/* Fans one event out: the gateways own the sockets, the bus publishes. */
static void
s_deliver (actor_t *self, room_t *room, envelope_t *env)
{
    actor_send_gateways (self, env);
    actor_send (self, "bus.0", env);
    room->next_seq = s_seq (env) + 1;
    actor_figure_add (self, "events_delivered", 1);
}

/* Delivers the waiting events that are now in order. */
static void
s_flush (actor_t *self, room_t *room, bool force)
{
    envelope_t *env;
    while ((env = zlistx_first (room->waiting))) {
        int64_t seq = s_seq (env);
        if (seq < room->next_seq) {          /* a duplicate */
            env = zlistx_detach_cur (room->waiting);
            envelope_destroy (&env);
            continue;
        }
        if (seq != room->next_seq && !force)
            break;
        env = zlistx_detach_cur (room->waiting);
        s_deliver (self, room, env);
        envelope_destroy (&env);
        force = false;
    }
    room->waiting_since = zlistx_size (room->waiting) ? s_now () : 0;
}

static int
s_compare_seq (const void *a, const void *b)
{
    int64_t x = s_seq ((envelope_t *) a), y = s_seq ((envelope_t *) b);
    return x < y ? -1 : x > y;
}

static void
s_on_event (actor_t *self, shard_t *shard, envelope_t *env)
{
    room_t *room = zhashx_lookup (shard->rooms, env->room);
    if (!room) {
        room = calloc (1, sizeof *room);
        room->waiting = zlistx_new ();
        zlistx_set_comparator (room->waiting, s_compare_seq);
        zhashx_insert (shard->rooms, env->room, room);
    }
    room->last_used = s_now ();
    int64_t seq = s_seq (env);
    if (room->next_seq == 0 || seq == room->next_seq) {
        s_deliver (self, room, env);
        s_flush (self, room, false);
    }
    else if (seq > room->next_seq) {
        /* keep a copy: the runtime destroys the batch after handle */
        envelope_t *copy = envelope_new (env->type);
        snprintf (copy->room, sizeof copy->room, "%s", env->room);
        envelope_set_body (copy, json_incref (env->body));
        zlistx_insert (room->waiting, copy, true);
        if (!room->waiting_since)
            room->waiting_since = s_now ();
    }
}

static void
s_handle (actor_t *self, envelope_t **batch, size_t count)
{
    shard_t *shard = actor_state (self);
    for (size_t i = 0; i < count; i++)
        if (batch[i]->type == ENVELOPE_ROOM_EVENT && batch[i]->room[0])
            s_on_event (self, shard, batch[i]);
}

/* Delivers past gaps that waited too long; forgets idle rooms. */
static void
s_tick (actor_t *self)
{
    shard_t *shard = actor_state (self);
    int64_t now = s_now ();
    zlistx_t *ids = zhashx_keys (shard->rooms);
    for (const char *id = zlistx_first (ids); id; id = zlistx_next (ids)) {
        room_t *room = zhashx_lookup (shard->rooms, id);
        if (room->waiting_since && now - room->waiting_since > ROOM_GAP_WAIT_MS) {
            log_warn (actor_name (self), "room %s: seq %lld did not arrive, delivering past it",
                      id, (long long) room->next_seq);
            s_flush (self, room, true);
        }
        else if (!zlistx_size (room->waiting) && now - room->last_used > ROOM_IDLE_MS)
            zhashx_delete (shard->rooms, id);
    }
    zlistx_destroy (&ids);
}

static void
s_stop (actor_t *self)
{
    shard_t *shard = actor_state (self);
    if (!shard)
        return;
    zhashx_destroy (&shard->rooms);
    free (shard);
    actor_set_state (self, NULL);
}

const actor_def_t room_actor = {
    .kind = "room",
    .batch_max = 256,
    .tick_ms = 500,
    .start = s_start,
    .handle = s_handle,
    .tick = s_tick,
    .stop = s_stop,
};
