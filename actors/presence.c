/*  actors/presence.c — Redis: connection, health. State: the redisContext. */
#include "presence.h"
#include "log.h"

#include <hiredis/hiredis.h>

typedef struct {
    redisContext *redis;
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

static void
s_tick (actor_t *self)
{
    presence_t *p = actor_state (self);
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
    (void) self, (void) batch, (void) count;   /* presence commands: see API.md §3 */
}

static void
s_stop (actor_t *self)
{
    presence_t *p = actor_state (self);
    if (!p)
        return;
    if (p->redis)
        redisFree (p->redis);
    free (p);
    actor_set_state (self, NULL);
}

const actor_def_t presence_actor = {
    .kind = "presence",
    .batch_max = 64,
    .tick_ms = 1000,
    .start = s_start,
    .handle = s_handle,
    .tick = s_tick,
    .stop = s_stop,
};
