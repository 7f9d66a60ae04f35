/*  actors/presence.c — Redis: connection, health, typing indicators, live
 *  presence keys and the Redis side of the scheduled jobs. State: the
 *  redisContext and this node's typing deadlines. */
#include "presence.h"
#include "log.h"

#include <hiredis/hiredis.h>

#define PRESENCE_TICK_MS  250
#define PRESENCE_PING_MS  1000
#define PRESENCE_TYPING_SET "typing:active"
#define PRESENCE_LIVE_KEY   "presence:live:"
#define PRESENCE_SWEEP_BATCH 500

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
    actor_send (self, "bus.0", env);          /* published on room.<id> */
    envelope_destroy (&env);
}

/* Redis holds typing:<room>:<user> with the TTL, for every node and REST,
   and the sorted set typing:active of "<room>:<user>" scored by the
   deadline (ms since the epoch): entries left there past their deadline
   were never stopped (their node died), and the
   cleanup-expired-typing-indicators job sweeps them (s_typing_sweep). */
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
    reply = ttl > 0
        ? redisCommand (p->redis, "ZADD " PRESENCE_TYPING_SET " %lld %s:%s",
                        (long long) (zclock_time () + ttl * 1000), room, user)
        : redisCommand (p->redis, "ZREM " PRESENCE_TYPING_SET " %s:%s", room, user);
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
        if (sscanf (key, "%79s %79s", room, user) == 2) {
            s_typing_event (self, room, user, false);
            s_typing_redis (p, room, user, 0);
        }
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

/* --- liveness and scheduled jobs (API.md §2.9) ------------------------- */

static bool
s_redis_up (presence_t *p)
{
    return p->redis && !p->redis->err;
}

/* PRESENCE_BEAT {users, ttl}: presence:live:<user> for ttl seconds, or
   deleted with ttl 0 (the user went offline on that node). Pipelined. */
static void
s_on_beat (presence_t *p, envelope_t *env)
{
    if (!s_redis_up (p))
        return;
    long long ttl = json_integer_value (json_object_get (env->body, "ttl"));
    size_t i, sent = 0;
    json_t *user;
    json_array_foreach (json_object_get (env->body, "users"), i, user) {
        const char *id = json_string_value (user);
        if (!id || strlen (id) > 64)
            continue;
        if (ttl > 0)
            redisAppendCommand (p->redis, "SET " PRESENCE_LIVE_KEY "%s 1 EX %lld", id, ttl);
        else
            redisAppendCommand (p->redis, "DEL " PRESENCE_LIVE_KEY "%s", id);
        sent++;
    }
    for (size_t k = 0; k < sent; k++) {
        redisReply *reply = NULL;
        if (redisGetReply (p->redis, (void **) &reply) != REDIS_OK)
            break;
        freeReplyObject (reply);
    }
}

/* Answers a JOB_RUN. Takes `result` (may be NULL). */
static void
s_job_reply (actor_t *self, envelope_t *request, bool ok, long long items,
             const char *error, json_t *result)
{
    envelope_t *env = envelope_new (ENVELOPE_JOB_DONE);
    snprintf (env->re, sizeof env->re, "%s", request->id);
    json_t *body = json_pack ("{s:b s:I}", "ok", ok, "items", (json_int_t) items);
    if (error)
        json_object_set_new (body, "error", json_string (error));
    if (result)
        json_object_set_new (body, "result", result);
    envelope_set_body (env, body);
    if (request->from[0])
        actor_send (self, request->from, env);
    envelope_destroy (&env);
}

/* typing.sweep: typing:active entries past their deadline (1 s of slack)
   whose typing key is gone were never stopped: tell the room and drop
   them. Returns the number swept, or -1 when Redis failed. */
static long long
s_typing_sweep (actor_t *self, presence_t *p)
{
    long long swept = 0;
    for (;;) {
        redisReply *list = redisCommand (p->redis, "ZRANGEBYSCORE " PRESENCE_TYPING_SET
                                         " -inf %lld LIMIT 0 %d",
                                         (long long) (zclock_time () - 1000),
                                         PRESENCE_SWEEP_BATCH);
        if (!list || list->type != REDIS_REPLY_ARRAY) {
            if (list)
                freeReplyObject (list);
            return -1;
        }
        size_t removed = 0;
        for (size_t i = 0; i < list->elements; i++) {
            char room[80], user[80];
            const char *member = list->element[i]->str;
            if (!member || sscanf (member, "%79[^:]:%79s", room, user) != 2)
                continue;
            redisReply *exists = redisCommand (p->redis, "EXISTS typing:%s", member);
            bool live = exists && exists->type == REDIS_REPLY_INTEGER && exists->integer > 0;
            if (exists)
                freeReplyObject (exists);
            if (live)
                continue;          /* renewed meanwhile: its deadline moves on */
            redisReply *rem = redisCommand (p->redis, "ZREM " PRESENCE_TYPING_SET " %s", member);
            bool mine = rem && rem->type == REDIS_REPLY_INTEGER && rem->integer > 0;
            if (rem)
                freeReplyObject (rem);
            if (!mine)
                continue;          /* another node swept it */
            char key[170];
            snprintf (key, sizeof key, "%s %s", room, user);
            zhashx_delete (p->typing, key);
            s_typing_event (self, room, user, false);
            removed++;
        }
        bool full = list->elements == PRESENCE_SWEEP_BATCH;
        freeReplyObject (list);
        swept += (long long) removed;
        if (!full || removed == 0)
            return swept;
    }
}

/* presence.filter {users}: the ones without a live key. */
static json_t *
s_presence_filter (presence_t *p, json_t *users)
{
    json_t *expired = json_array ();
    size_t i;
    json_t *user;
    json_array_foreach (users, i, user) {
        const char *id = json_string_value (user);
        if (id && strlen (id) <= 64)
            redisAppendCommand (p->redis, "EXISTS " PRESENCE_LIVE_KEY "%s", id);
    }
    json_array_foreach (users, i, user) {
        const char *id = json_string_value (user);
        if (!id || strlen (id) > 64)
            continue;
        redisReply *reply = NULL;
        if (redisGetReply (p->redis, (void **) &reply) != REDIS_OK) {
            json_decref (expired);
            return NULL;
        }
        if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
            json_array_append (expired, user);
        freeReplyObject (reply);
    }
    return expired;
}

/* presence.live {cursor}: one SCAN step over the live keys. */
static json_t *
s_presence_live (presence_t *p, const char *cursor)
{
    redisReply *reply = redisCommand (p->redis, "SCAN %s MATCH " PRESENCE_LIVE_KEY "* COUNT 1000",
                                      cursor && *cursor ? cursor : "0");
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_ARRAY) {
        if (reply)
            freeReplyObject (reply);
        return NULL;
    }
    json_t *users = json_array ();
    redisReply *keys = reply->element[1];
    size_t prefix = strlen (PRESENCE_LIVE_KEY);
    for (size_t i = 0; i < keys->elements; i++)
        if (keys->element[i]->str && strlen (keys->element[i]->str) > prefix)
            json_array_append_new (users, json_string (keys->element[i]->str + prefix));
    json_t *result = json_pack ("{s:o s:s}", "users", users, "cursor",
                                reply->element[0]->str);
    freeReplyObject (reply);
    return result;
}

/* JOB_RUN from the scheduler: the Redis side of a scheduled job. */
static void
s_on_job (actor_t *self, presence_t *p, envelope_t *env)
{
    const char *job = json_string_value (json_object_get (env->body, "job"));
    json_t *args = json_object_get (env->body, "args");
    if (!s_redis_up (p)) {
        s_job_reply (self, env, false, 0, "Redis is unavailable", NULL);
        return;
    }
    if (streq (job, "typing.sweep")) {
        long long swept = s_typing_sweep (self, p);
        s_job_reply (self, env, swept >= 0, swept < 0 ? 0 : swept,
                     swept < 0 ? "Redis failed during the sweep" : NULL, NULL);
    }
    else if (streq (job, "presence.filter")) {
        json_t *expired = s_presence_filter (p, json_object_get (args, "users"));
        s_job_reply (self, env, expired != NULL, 0, expired ? NULL : "Redis failed",
                     expired ? json_pack ("{s:o}", "expired", expired) : NULL);
    }
    else if (streq (job, "presence.live")) {
        json_t *result = s_presence_live (p, json_string_value (json_object_get (args,
                                                                                 "cursor")));
        s_job_reply (self, env, result != NULL, 0, result ? NULL : "Redis failed", result);
    }
    else
        s_job_reply (self, env, false, 0, "unknown job", NULL);
}

static void
s_handle (actor_t *self, envelope_t **batch, size_t count)
{
    presence_t *p = actor_state (self);
    for (size_t i = 0; i < count; i++) {
        if (batch[i]->type == ENVELOPE_TYPING && batch[i]->room[0] && batch[i]->user[0])
            s_on_typing (self, p, batch[i]);
        else if (batch[i]->type == ENVELOPE_PRESENCE_BEAT)
            s_on_beat (p, batch[i]);
        else if (batch[i]->type == ENVELOPE_JOB_RUN)
            s_on_job (self, p, batch[i]);
    }
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
