/*  actors/user.c — user shards: connections and presence across devices. */
#include "user.h"
#include "log.h"
#include "presence.h"

#define USER_BEAT_CHUNK 1000    /* users per PRESENCE_BEAT envelope */

typedef struct {
    int connections;
    int64_t offline_at;     /* monotonic ms when the grace ends; 0 = none */
} user_t;

typedef struct {
    zhashx_t *users;        /* user id -> user_t */
    int64_t next_beat;      /* monotonic ms of the next liveness beat */
} shard_t;

static void
s_user_free (void **item)
{
    free (*item);
    *item = NULL;
}

static int
s_start (actor_t *self, char *error, size_t error_size)
{
    (void) error, (void) error_size;
    shard_t *shard = calloc (1, sizeof *shard);
    if (!shard)
        return -1;
    shard->users = zhashx_new ();
    zhashx_set_destructor (shard->users, s_user_free);
    actor_set_state (self, shard);
    return 0;
}

/* Asks a persister to run presence.online / presence.offline for `user`;
   the answer comes back here and needs nothing more. */
static void
s_presence_op (actor_t *self, const char *user, const char *op)
{
    envelope_t *env = envelope_new (ENVELOPE_HTTP_REQUEST);
    snprintf (env->from, sizeof env->from, "%s", actor_name (self));
    envelope_set_body (env, json_pack ("{s:s s:s s:s s:s s:{} s:{} s:{s:s}}", "op", op,
                                       "method", "POST", "path", "/internal/presence",
                                       "base", "", "params", "query", "auth", "user", user));
    char to[48];
    mailbox_shard_name (to, sizeof to, "persister", user,
                        actor_shard_count (actor_config (self), "persister"));
    actor_send (self, to, env);
    envelope_destroy (&env);
}

/* Tells presence that `users` (taken) are live here for PRESENCE_LIVE_TTL
   seconds, or gone (ttl 0): Redis then knows who is connected anywhere. */
static void
s_beat (actor_t *self, json_t *users, int ttl)
{
    envelope_t *env = envelope_new (ENVELOPE_PRESENCE_BEAT);
    envelope_set_body (env, json_pack ("{s:o s:i}", "users", users, "ttl", ttl));
    actor_send (self, "presence.0", env);
    envelope_destroy (&env);
}

/* Every PRESENCE_BEAT_MS: a beat for every user hosted here (connected,
   or within the grace period). */
static void
s_beat_all (actor_t *self, shard_t *shard)
{
    json_t *users = json_array ();
    for (user_t *user = zhashx_first (shard->users); user; user = zhashx_next (shard->users)) {
        json_array_append_new (users, json_string (zhashx_cursor (shard->users)));
        if (json_array_size (users) == USER_BEAT_CHUNK) {
            s_beat (self, users, PRESENCE_LIVE_TTL);
            users = json_array ();
        }
    }
    if (json_array_size (users))
        s_beat (self, users, PRESENCE_LIVE_TTL);
    else
        json_decref (users);
}

static void
s_on_open (actor_t *self, shard_t *shard, const char *id)
{
    user_t *user = zhashx_lookup (shard->users, id);
    if (!user) {
        user = calloc (1, sizeof *user);
        zhashx_insert (shard->users, id, user);
    }
    bool was_away = user->connections == 0 && user->offline_at == 0;
    user->connections++;
    user->offline_at = 0;           /* back within the grace period */
    if (was_away) {
        s_presence_op (self, id, "presence.online");
        s_beat (self, json_pack ("[s]", id), PRESENCE_LIVE_TTL);
    }
}

static void
s_on_close (actor_t *self, shard_t *shard, const char *id)
{
    user_t *user = zhashx_lookup (shard->users, id);
    if (!user || user->connections == 0)
        return;
    if (--user->connections == 0) {
        int64_t grace = actor_config (self)->presence_grace * 1000;
        user->offline_at = zclock_mono () + (grace > 0 ? grace : 1);
    }
}

static void
s_handle (actor_t *self, envelope_t **batch, size_t count)
{
    shard_t *shard = actor_state (self);
    for (size_t i = 0; i < count; i++) {
        envelope_t *env = batch[i];
        if (env->type == ENVELOPE_CONN_OPEN && env->user[0])
            s_on_open (self, shard, env->user);
        else if (env->type == ENVELOPE_CONN_CLOSE && env->user[0])
            s_on_close (self, shard, env->user);
        else if (env->type == ENVELOPE_HTTP_RESPONSE) {
            int status = (int) json_integer_value (json_object_get (env->body, "status"));
            if (status >= 400)
                log_warn (actor_name (self), "presence change failed with %d", status);
        }
    }
}

/* Users whose grace period ended go offline. */
static void
s_tick (actor_t *self)
{
    shard_t *shard = actor_state (self);
    int64_t now = zclock_mono ();
    zlistx_t *ids = zhashx_keys (shard->users);
    for (const char *id = zlistx_first (ids); id; id = zlistx_next (ids)) {
        user_t *user = zhashx_lookup (shard->users, id);
        if (user->connections == 0 && user->offline_at && now >= user->offline_at) {
            s_presence_op (self, id, "presence.offline");
            s_beat (self, json_pack ("[s]", id), 0);
            zhashx_delete (shard->users, id);
        }
    }
    zlistx_destroy (&ids);
    if (now >= shard->next_beat) {
        shard->next_beat = now + PRESENCE_BEAT_MS;
        s_beat_all (self, shard);
    }
}

static void
s_stop (actor_t *self)
{
    shard_t *shard = actor_state (self);
    if (!shard)
        return;
    zhashx_destroy (&shard->users);
    free (shard);
    actor_set_state (self, NULL);
}

const actor_def_t user_actor = {
    .kind = "user",
    .batch_max = 256,
    .tick_ms = 250,
    .start = s_start,
    .handle = s_handle,
    .tick = s_tick,
    .stop = s_stop,
};
