/*  actors/presence.c — Redis: connection, health. State: the redisContext. */
#include "presence.h"
#include "log.h"

#include <hiredis/hiredis.h>

#define PRESENCE_TICK_MS  250
#define PRESENCE_PING_MS  1000

typedef struct {
    redisContext *redis;
    zhashx_t *typing;        /* "room user" -> deadline (monotonic ms, boxed) */
    int64_t next_ping;
    char host[256];
    int port;
    int db;
    bool healthy;
    bool reported;
} presence_t;

int
presence_parse_url (const char *url, char *host, size_t host_size, int *port, int *db)
{
    if (strncmp (url, "redis://", 8) != 0)
        return -1;
    const char *p = url + 8;
    const char *at = strchr (p, '@');        /* redis://[:password@]host... */
    if (at)
        p = at + 1;
    size_t len = strcspn (p, ":/");
    if (len == 0 || len >= host_size)
        return -1;
    memcpy (host, p, len);
    host[len] = '\0';
    p += len;
    *port = 6379;
    *db = 0;
    if (*p == ':') {
        char *end;
        long n = strtol (p + 1, &end, 10);
        if (end == p + 1 || n < 1 || n > 65535)
            return -1;
        *port = (int) n;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long n = strtol (p + 1, &end, 10);
        if (*end || n < 0)
            return -1;
        *db = (int) n;
    }
    return 0;
}

static void
s_report (actor_t *self, presence_t *p, bool ok, const char *detail)
{
    if (p->reported && p->healthy == ok)
        return;
    p->healthy = ok;
    p->reported = true;
    envelope_t *env = envelope_new (ENVELOPE_HEALTH);
    envelope_set_body (env, json_pack ("{s:s s:b s:s}", "store", "redis", "ok", ok,
                                       "detail", detail ? detail : ""));
    actor_send_gateways (self, env);
    envelope_destroy (&env);
    if (ok)
        log_info (actor_name (self), "Redis is reachable at %s:%d", p->host, p->port);
    else
        log_warn (actor_name (self), "Redis is unreachable: %s", detail);
}

/* Runs a command and reports whether Redis answered without error. */
static bool
s_command_ok (presence_t *p, const char *command)
{
    redisReply *reply = redisCommand (p->redis, command);
    bool ok = reply && reply->type != REDIS_REPLY_ERROR;
    if (reply)
        freeReplyObject (reply);
    return ok;
}

static int
s_connect (presence_t *p, char *error, size_t error_size)
{
    if (p->redis)
        redisFree (p->redis);
    struct timeval timeout = { 1, 0 };
    p->redis = redisConnectWithTimeout (p->host, p->port, timeout);
    if (!p->redis || p->redis->err) {
        snprintf (error, error_size, "cannot connect to Redis at %s:%d (redis_url): %s",
                  p->host, p->port, p->redis ? p->redis->errstr : "out of memory");
        if (p->redis)
            redisFree (p->redis);
        p->redis = NULL;
        return -1;
    }
    redisSetTimeout (p->redis, timeout);
    char select[32];
    snprintf (select, sizeof select, "SELECT %d", p->db);
    if (!s_command_ok (p, select)) {
        snprintf (error, error_size, "Redis refused database %d (redis_url)", p->db);
        return -1;
    }
    return 0;
}

static int
s_start (actor_t *self, char *error, size_t error_size)
{
    presence_t *p = calloc (1, sizeof *p);
    if (!p)
        return -1;
    actor_set_state (self, p);
    p->typing = zhashx_new ();
    zhashx_set_destructor (p->typing, (zhashx_destructor_fn *) zstr_free);
    if (presence_parse_url (actor_config (self)->redis_url, p->host, sizeof p->host,
                            &p->port, &p->db) != 0) {
        snprintf (error, error_size, "redis_url: not a redis://host:port/db URL");
        return -1;
    }
    if (s_connect (p, error, error_size) != 0)
        return -1;
    s_report (self, p, true, NULL);
    return 0;
}

/* --- typing indicators ------------------------------------------------- */

/* Tells the room's connections (but the typer's) that `user` types or not. */
static void
s_typing_event (actor_t *self, const char *room, const char *user, bool is_typing)
{
    char ts[32];
    log_timestamp (ts, sizeof ts);
    json_t *event = json_pack ("{s:s s:s s:s s:b s:s}", "type", "typing", "room", room,
                               "user", user, "is_typing", is_typing, "ts", ts);
    char *payload = json_dumps (event, JSON_COMPACT);
    json_decref (event);
    envelope_t *env = envelope_new (ENVELOPE_ROOM_EPHEMERAL);
    snprintf (env->room, sizeof env->room, "%s", room);
    envelope_set_body (env, json_pack ("{s:s s:s s:s}", "event", "typing", "payload",
                                       payload, "except", user));
    free (payload);
    actor_send_gateways (self, env);
    envelope_destroy (&env);
}

/* Redis holds typing:<room>:<user> with the TTL, for every node and REST. */
static void
s_typing_redis (presence_t *p, const char *room, const char *user, int64_t ttl)
{
    if (!p->redis || p->redis->err)
        return;
    redisReply *reply = ttl > 0
        ? redisCommand (p->redis, "SET typing:%s:%s 1 EX %lld", room, user, (long long) ttl)
        : redisCommand (p->redis, "DEL typing:%s:%s", room, user);
    if (reply)
        freeReplyObject (reply);
}

static void
s_on_typing (actor_t *self, presence_t *p, envelope_t *env)
{
    bool is_typing = json_is_true (json_object_get (env->body, "is_typing"));
    char key[160];
    snprintf (key, sizeof key, "%s %s", env->room, env->user);
    int64_t *deadline = zhashx_lookup (p->typing, key);
    int64_t ttl = actor_config (self)->typing_ttl;
    s_typing_redis (p, env->room, env->user, is_typing ? ttl : 0);
    if (is_typing) {
        if (!deadline) {
            deadline = malloc (sizeof *deadline);
            zhashx_insert (p->typing, key, deadline);
            s_typing_event (self, env->room, env->user, true);
        }
        *deadline = zclock_mono () + ttl * 1000;
    }
    else if (deadline) {
        zhashx_delete (p->typing, key);
        s_typing_event (self, env->room, env->user, false);
    }
}

/* Typing that was not renewed within typing_ttl stops for everyone. */
static void
s_typing_expire (actor_t *self, presence_t *p)
{
    int64_t now = zclock_mono ();
    zlistx_t *keys = zhashx_keys (p->typing);
    for (const char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
        int64_t *deadline = zhashx_lookup (p->typing, key);
        if (*deadline > now)
            continue;
        char room[80], user[80];
        if (sscanf (key, "%79s %79s", room, user) == 2)
            s_typing_event (self, room, user, false);
        zhashx_delete (p->typing, key);
    }
    zlistx_destroy (&keys);
}

static void
s_tick (actor_t *self)
{
    presence_t *p = actor_state (self);
    s_typing_expire (self, p);
    if (zclock_mono () < p->next_ping)
        return;
    p->next_ping = zclock_mono () + PRESENCE_PING_MS;
    char error[300] = "";
    if (p->redis && !p->redis->err && s_command_ok (p, "PING")) {
        s_report (self, p, true, NULL);
        return;
    }
    if (s_connect (p, error, sizeof error) == 0 && s_command_ok (p, "PING"))
        s_report (self, p, true, NULL);
    else
        s_report (self, p, false, error[0] ? error : "no answer to PING");
}

static void
s_handle (actor_t *self, envelope_t **batch, size_t count)
{
    presence_t *p = actor_state (self);
    for (size_t i = 0; i < count; i++)
        if (batch[i]->type == ENVELOPE_TYPING && batch[i]->room[0] && batch[i]->user[0])
            s_on_typing (self, p, batch[i]);
}

static void
s_stop (actor_t *self)
{
    presence_t *p = actor_state (self);
    if (!p)
        return;
    if (p->redis)
        redisFree (p->redis);
    zhashx_destroy (&p->typing);
    free (p);
    actor_set_state (self, NULL);
}

const actor_def_t presence_actor = {
    .kind = "presence",
    .batch_max = 64,
    .tick_ms = PRESENCE_TICK_MS,
    .start = s_start,
    .handle = s_handle,
    .tick = s_tick,
    .stop = s_stop,
};
