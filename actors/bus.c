/*  actors/bus.c — the ZeroMQ side door (API.md §4, docs/zeromq.md).
 *
 *  State: the events PUB socket, the inject ROUTER socket, the ZAP handler
 *  (a REP socket, only with CURVE) and its allow-list, the inject commands
 *  waiting for a persister's answer, and the assistant user's id.
 *
 *  Inject: each command becomes the REST operation it stands for, sent to a
 *  persister as an HTTP_REQUEST with auth {user, service: true}; the answer
 *  (HTTP_RESPONSE, `re` = our request id) becomes the reply envelope to the
 *  ROUTER peer. The bus never waits: the pending map holds each command's
 *  routing frames until its answer comes, or until it times out.
 *
 *  Events: room events (from the room shards, in seq order), room-scoped
 *  ephemeral events (typing from presence, message.delta from here) and
 *  user events (from the persisters) are published as [topic, envelope].
 */
#include "bus.h"
#include "log.h"

#include <ctype.h>

#define BUS_SNDHWM          100000    /* PUB: past it ZeroMQ drops, Parley never waits */
#define BUS_INJECT_HWM      100000
#define BUS_INJECT_BATCH    512       /* commands read per wake-up                      */
#define BUS_PENDING_MAX     100000    /* commands in flight; past it: unavailable       */
#define BUS_PENDING_MS      30000     /* a persister that does not answer in time       */
#define BUS_TICK_MS         1000
#define BUS_ZAP_ENDPOINT    "inproc://zeromq.zap.01"

/* An inject command waiting for its operation's answer. */
typedef struct {
    zframe_t *identity;            /* the ROUTER peer                              */
    bool delimited;                /* a REQ peer: answer with the empty delimiter  */
    char re[ENVELOPE_ID_MAX + 1];  /* the command's id                             */
    envelope_type_t type;
    char room[ENVELOPE_ID_MAX + 1];
    int64_t deadline;
} s_pending_t;

/* What a command maps to (API.md §4). */
typedef struct {
    envelope_type_t type;
    const char *op;
    const char *method;
    bool needs_room;               /* `room` header required, put in the body    */
    bool answers_id;               /* the reply carries the created object's id  */
} s_command_t;

static const s_command_t s_commands[] = {
    { ENVELOPE_MESSAGE_SEND,  "messages.create",    "POST",  true,  true },
    { ENVELOPE_MESSAGE_DELTA, "inject.delta",       "POST",  true,  false },
    { ENVELOPE_PRESENCE_SET,  "presence.me_update", "PATCH", false, false },
    { ENVELOPE_NOTIFY,        "inject.notify",      "POST",  false, true },
    { ENVELOPE_ROOM_CREATE,   "rooms.create",       "POST",  false, true },
    { ENVELOPE_INVALID, NULL, NULL, false, false }
};

typedef struct {
    zsock_t *events;               /* PUB                                         */
    zsock_t *inject;               /* ROUTER                                      */
    zsock_t *zap;                  /* REP, ZAP handler, with CURVE only           */
    zhashx_t *allowed;             /* Z85 public keys CURVE admits; empty: any    */
    zhashx_t *pending;             /* our HTTP_REQUEST id -> s_pending_t          */
    int persisters;
    char base[300];                /* links in answers and events: public_url or
                                      the gateway's own address                   */
    char assistant[40];            /* the assistant user's id, "" until known     */
    char assistant_request[ENVELOPE_ID_MAX + 1];
    int64_t assistant_asked;
} bus_t;

static void
s_pending_free (void **item)
{
    s_pending_t *pending = *item;
    if (pending) {
        zframe_destroy (&pending->identity);
        free (pending);
    }
    *item = NULL;
}

/* --- publishing ------------------------------------------------------------ */

/* Publishes `event` (a §3 event object) on `topic` as an envelope of the
   event's type. Never blocks: past the high-water mark ZeroMQ drops. */
static void
s_publish (actor_t *self, bus_t *bus, const char *topic, const json_t *event,
           const char *room, const char *user)
{
    const char *name = json_string_value (json_object_get (event, "type"));
    envelope_type_t type = envelope_type_from_name (name);
    envelope_t *env = type == ENVELOPE_INVALID ? NULL : envelope_new (type);
    char *data = NULL;
    size_t size = 0;
    envelope_err_t err = ENVELOPE_ERR_UNKNOWN_TYPE;
    if (env) {
        snprintf (env->room, sizeof env->room, "%s", room ? room : "");
        snprintf (env->user, sizeof env->user, "%s", user ? user : "");
        envelope_set_body (env, json_incref ((json_t *) event));   /* read only */
        envelope_encode (env, &data, &size, &err);
    }
    if (data) {
        void *sock = zsock_resolve (bus->events);
        if (zmq_send (sock, topic, strlen (topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0
            || zmq_send (sock, data, size, ZMQ_DONTWAIT) < 0)
            actor_figure_add (self, "events_dropped", 1);
        else
            actor_figure_add (self, "events_published", 1);
    }
    else {
        log_debug (actor_name (self), "cannot publish %s event on %s: %s",
                   name ? name : "untyped", topic, envelope_err_string (err));
        actor_figure_add (self, "events_unpublishable", 1);
    }
    free (data);
    envelope_destroy (&env);
}

/* A committed room event: room.<id>, and ai.<id> for new messages of ai
   rooms (with the assistant as `user`, the account to answer as). */
static void
s_on_room_event (actor_t *self, bus_t *bus, envelope_t *env)
{
    const char *text = json_string_value (json_object_get (env->body, "payload"));
    json_t *event = text ? json_loads (text, 0, NULL) : NULL;
    if (!event)
        return;
    char topic[96];
    snprintf (topic, sizeof topic, "room.%s", env->room);
    s_publish (self, bus, topic, event, env->room, NULL);
    const char *room_type = json_string_value (json_object_get (env->body, "room_type"));
    const char *type = json_string_value (json_object_get (env->body, "event"));
    if (room_type && streq (room_type, "ai") && type && streq (type, "message.new")) {
        snprintf (topic, sizeof topic, "ai.%s", env->room);
        s_publish (self, bus, topic, event, env->room, bus->assistant);
    }
    json_decref (event);
}

/* A room-scoped ephemeral event (typing): room.<id>. */
static void
s_on_room_ephemeral (actor_t *self, bus_t *bus, envelope_t *env)
{
    const char *text = json_string_value (json_object_get (env->body, "payload"));
    json_t *event = text ? json_loads (text, 0, NULL) : NULL;
    if (!event)
        return;
    char topic[96];
    snprintf (topic, sizeof topic, "room.%s", env->room);
    s_publish (self, bus, topic, event, env->room, NULL);
    json_decref (event);
}

/* The push envelope for one recipient of a notification event. */
static void
s_publish_push (actor_t *self, bus_t *bus, const json_t *event, const char *user)
{
    json_t *notification = json_object_get (event, "notification");
    if (!json_is_object (notification))
        return;
    json_t *push = json_pack ("{s:s s:O}", "type", "push", "notification", notification);
    const char *fields[] = { "title", "text" };
    for (size_t i = 0; i < 2; i++)
        if (json_is_string (json_object_get (notification, fields[i])))
            json_object_set (push, fields[i], json_object_get (notification, fields[i]));
    char topic[96];
    snprintf (topic, sizeof topic, "push.%s", user);
    const char *room = json_string_value (json_object_get (notification, "room"));
    s_publish (self, bus, topic, push, room, user);
    json_decref (push);
}

/* An ephemeral event for users: user.<id> for each, push.<id> for those
   marked for push. */
static void
s_on_user_event (actor_t *self, bus_t *bus, envelope_t *env)
{
    const char *text = json_string_value (json_object_get (env->body, "payload"));
    json_t *event = text ? json_loads (text, 0, NULL) : NULL;
    if (!event)
        return;
    const char *room = json_string_value (json_object_get (event, "room"));
    size_t i;
    json_t *user;
    json_array_foreach (json_object_get (env->body, "users"), i, user) {
        const char *id = json_string_value (user);
        if (!id)
            continue;
        char topic[96];
        snprintf (topic, sizeof topic, "user.%s", id);
        s_publish (self, bus, topic, event, room, id);
    }
    json_array_foreach (json_object_get (env->body, "push"), i, user)
        if (json_is_string (user))
            s_publish_push (self, bus, event, json_string_value (user));
    json_decref (event);
}

/* --- inject: replies ---------------------------------------------------- */

/* Sends a reply envelope (body taken) to a ROUTER peer. */
static void
s_reply (actor_t *self, bus_t *bus, zframe_t *identity, bool delimited, const char *re,
         json_t *body)
{
    envelope_t *env = envelope_new (ENVELOPE_REPLY);
    if (!env) {
        json_decref (body);
        return;
    }
    snprintf (env->re, sizeof env->re, "%s", re ? re : "");
    envelope_set_body (env, body);
    char *data = NULL;
    size_t size = 0;
    envelope_err_t err;
    if (envelope_encode (env, &data, &size, &err) == 0) {
        zmsg_t *msg = zmsg_new ();
        zmsg_append (msg, &(zframe_t *) { zframe_dup (identity) });
        if (delimited)
            zmsg_addmem (msg, NULL, 0);
        zmsg_addmem (msg, data, size);
        /* ROUTER drops what it cannot route or queue: never blocks */
        zmsg_send (&msg, bus->inject);
        zmsg_destroy (&msg);
        actor_figure_add (self, "inject_replies", 1);
    }
    else
        log_error (actor_name (self), "cannot encode a reply: %s", envelope_err_string (err));
    free (data);
    envelope_destroy (&env);
}

static void
s_reply_error (actor_t *self, bus_t *bus, zframe_t *identity, bool delimited,
               const char *re, const char *code, const char *detail)
{
    actor_figure_add (self, "inject_errors", 1);
    s_reply (self, bus, identity, delimited, re,
             json_pack ("{s:b s:n s:s s:s}", "ok", 0, "id", "code", code, "detail", detail));
}

/* The code of a REST status, as WebSocket errors name them. */
static const char *
s_status_code (int status)
{
    switch (status) {
    case 400: return "invalid";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 409: return "conflict";
    case 413: return "too_large";
    case 429: return "rate_limited";
    default:  return status >= 500 ? "unavailable" : "error";
    }
}

/* "detail", or the first field error as "field: message". */
static void
s_error_detail (const json_t *body, char *out, size_t size)
{
    const char *detail = json_string_value (json_object_get (body, "detail"));
    const char *field;
    json_t *messages;
    snprintf (out, size, "%s", detail ? detail : "The command failed.");
    if (!detail)
        json_object_foreach ((json_t *) body, field, messages) {
            const char *first = json_string_value (json_array_get (messages, 0));
            snprintf (out, size, "%s: %s", field, first ? first : "invalid");
            break;
        }
}

/* A delta the persister accepted: to the room's sockets and room.<id>. */
static void
s_deliver_delta (actor_t *self, bus_t *bus, const char *room, json_t *event)
{
    char *payload = json_dumps (event, JSON_COMPACT);
    envelope_t *env = envelope_new (ENVELOPE_ROOM_EPHEMERAL);
    if (payload && env) {
        snprintf (env->room, sizeof env->room, "%s", room);
        envelope_set_body (env, json_pack ("{s:s s:s}", "event", "message.delta",
                                           "payload", payload));
        actor_send_gateways (self, env);
    }
    envelope_destroy (&env);
    free (payload);
    char topic[96];
    snprintf (topic, sizeof topic, "room.%s", room);
    s_publish (self, bus, topic, event, room, NULL);
}

/* The answer of an inject command's operation. */
static void
s_on_answer (actor_t *self, bus_t *bus, s_pending_t *pending, envelope_t *env)
{
    int status = (int) json_integer_value (json_object_get (env->body, "status"));
    const char *text = json_string_value (json_object_get (env->body, "json"));
    json_t *answer = text ? json_loads (text, JSON_DECODE_ANY, NULL) : NULL;
    if (status >= 200 && status < 300) {
        const s_command_t *c = s_commands;
        while (c->op && c->type != pending->type)
            c++;
        const char *id = c->answers_id ? json_string_value (json_object_get (answer, "id"))
                                       : NULL;
        if (pending->type == ENVELOPE_MESSAGE_DELTA && json_is_object (answer))
            s_deliver_delta (self, bus, pending->room, answer);
        s_reply (self, bus, pending->identity, pending->delimited, pending->re,
                 id ? json_pack ("{s:b s:s}", "ok", 1, "id", id)
                    : json_pack ("{s:b s:n}", "ok", 1, "id"));
        actor_figure_add (self, "inject_ok", 1);
    }
    else {
        char detail[512];
        s_error_detail (answer, detail, sizeof detail);
        json_t *body = json_pack ("{s:b s:n s:s s:s}", "ok", 0, "id", "code",
                                  s_status_code (status), "detail", detail);
        if (json_is_object (answer) && !json_object_get (answer, "detail"))
            json_object_set (body, "errors", answer);    /* REST's field errors */
        actor_figure_add (self, "inject_errors", 1);
        s_reply (self, bus, pending->identity, pending->delimited, pending->re, body);
    }
    json_decref (answer);
}

/* --- inject: commands --------------------------------------------------- */

/* Sends a command's operation to a persister and remembers the peer. */
static void
s_run_command (actor_t *self, bus_t *bus, const s_command_t *c, envelope_t *cmd,
               zframe_t *identity, bool delimited)
{
    if (zhashx_size (bus->pending) >= BUS_PENDING_MAX) {
        s_reply_error (self, bus, identity, delimited, cmd->id, "unavailable",
                       "Too many commands in flight; retry later.");
        return;
    }
    json_t *body = json_deep_copy (cmd->body);
    if (c->needs_room)
        json_object_set_new (body, "room", json_string (cmd->room));
    envelope_t *env = envelope_new (ENVELOPE_HTTP_REQUEST);
    snprintf (env->from, sizeof env->from, "%s", actor_name (self));
    envelope_set_body (env, json_pack ("{s:s s:s s:s s:s s:{} s:{} s:o s:{s:s s:b}}",
                                       "op", c->op, "method", c->method, "path", "/zmq/",
                                       "base", bus->base,
                                       "params", "query", "body", body, "auth",
                                       "user", cmd->user, "service", 1));
    char to[48];
    mailbox_shard_name (to, sizeof to, "persister", cmd->room[0] ? cmd->room : cmd->user,
                        bus->persisters);
    if (actor_send (self, to, env) != 0)
        s_reply_error (self, bus, identity, delimited, cmd->id, "unavailable",
                       "The service is unavailable; retry later.");
    else {
        s_pending_t *pending = calloc (1, sizeof *pending);
        pending->identity = zframe_dup (identity);
        pending->delimited = delimited;
        pending->type = cmd->type;
        pending->deadline = zclock_mono () + BUS_PENDING_MS;
        snprintf (pending->re, sizeof pending->re, "%s", cmd->id);
        snprintf (pending->room, sizeof pending->room, "%s", cmd->room);
        zhashx_insert (bus->pending, env->id, pending);
    }
    envelope_destroy (&env);
}

/* Is `text` a canonical 8-4-4-4-12 hex UUID? */
static bool
s_is_uuid (const char *text)
{
    if (strlen (text) != 36)
        return false;
    for (int i = 0; i < 36; i++)
        if ((i == 8 || i == 13 || i == 18 || i == 23) ? text[i] != '-'
                                                      : !isxdigit ((unsigned char) text[i]))
            return false;
    return true;
}

/* Checks the headers a command needs; 0, or -1 after replying. */
static int
s_check_headers (actor_t *self, bus_t *bus, const s_command_t *c, envelope_t *cmd,
                 zframe_t *identity, bool delimited)
{
    const char *name = envelope_type_name (c->type);
    char detail[128] = "";
    const char *code = "missing";
    if (!cmd->user[0])
        snprintf (detail, sizeof detail, "user: required for %s", name);
    else if (c->needs_room && !cmd->room[0])
        snprintf (detail, sizeof detail, "room: required for %s", name);
    else {
        code = "wrong_type";
        if (!s_is_uuid (cmd->user))
            snprintf (detail, sizeof detail, "user: must be a user id (UUID)");
        else if (c->needs_room && !s_is_uuid (cmd->room))
            snprintf (detail, sizeof detail, "room: must be a room id (UUID)");
        else
            return 0;
    }
    s_reply_error (self, bus, identity, delimited, cmd->id, code, detail);
    return -1;
}

/* One message from a ROUTER peer: [identity, ("",) envelope]. */
static void
s_on_inject_message (actor_t *self, bus_t *bus, zmsg_t *msg)
{
    zframe_t *identity = zmsg_pop (msg);
    zframe_t *frame = zmsg_pop (msg);
    bool delimited = frame && zframe_size (frame) == 0 && zmsg_size (msg) > 0;
    if (delimited) {
        zframe_destroy (&frame);
        frame = zmsg_pop (msg);
    }
    actor_figure_add (self, "inject_received", 1);
    if (!identity || !frame || zmsg_size (msg) > 0) {
        if (identity)
            s_reply_error (self, bus, identity, delimited, "", "malformed",
                           "A message holds one envelope frame.");
    }
    else {
        envelope_err_t err;
        char detail[160] = "";
        envelope_t *cmd = envelope_decode (zframe_data (frame), zframe_size (frame), &err,
                                           detail, sizeof detail);
        const s_command_t *c = s_commands;
        while (cmd && c->op && c->type != cmd->type)
            c++;
        if (!cmd) {
            char id[ENVELOPE_ID_MAX + 1];
            envelope_peek_id (zframe_data (frame), zframe_size (frame), id, sizeof id);
            s_reply_error (self, bus, identity, delimited, id, envelope_err_code (err),
                           detail[0] ? detail : envelope_err_string (err));
        }
        else if (!c->op)
            s_reply_error (self, bus, identity, delimited, cmd->id, "unknown_type",
                           "type: not an inject command (message.send, message.delta,"
                           " presence.set, notify, room.create)");
        else if (s_check_headers (self, bus, c, cmd, identity, delimited) == 0)
            s_run_command (self, bus, c, cmd, identity, delimited);
        envelope_destroy (&cmd);
    }
    zframe_destroy (&identity);
    zframe_destroy (&frame);
}

/* The ROUTER is readable: a bounded batch, so the inbox stays served. */
static void
s_on_inject (actor_t *self, zsock_t *sock)
{
    bus_t *bus = actor_state (self);
    for (int i = 0; i < BUS_INJECT_BATCH && (zsock_events (sock) & ZMQ_POLLIN); i++) {
        zmsg_t *msg = zmsg_recv (sock);
        if (!msg)
            break;
        s_on_inject_message (self, bus, msg);
        zmsg_destroy (&msg);
    }
}

/* --- CURVE: the ZAP handler (RFC 27) ------------------------------------ */

/* Answers one ZAP request: 200 for a CURVE client on the allow-list. */
static void
s_on_zap (actor_t *self, zsock_t *sock)
{
    bus_t *bus = actor_state (self);
    zmsg_t *request = zmsg_recv (sock);
    if (!request)
        return;
    char *version = zmsg_popstr (request);
    char *sequence = zmsg_popstr (request);
    char *domain = zmsg_popstr (request);
    char *address = zmsg_popstr (request);
    zframe_t *routing = zmsg_pop (request);
    char *mechanism = zmsg_popstr (request);
    zframe_t *key = zmsg_pop (request);
    char client[41] = "";
    if (key && zframe_size (key) == 32)
        zmq_z85_encode (client, zframe_data (key), 32);
    bool ok = mechanism && streq (mechanism, "CURVE") && client[0]
              && (zhashx_size (bus->allowed) == 0 || zhashx_lookup (bus->allowed, client));
    if (!ok) {
        log_warn (actor_name (self), "refused a %s client from %s (key %s)",
                  mechanism ? mechanism : "?", address ? address : "?",
                  client[0] ? client : "none");
        actor_figure_add (self, "curve_refused", 1);
    }
    zmsg_t *reply = zmsg_new ();
    zmsg_addstr (reply, "1.0");
    zmsg_addstr (reply, sequence ? sequence : "");
    zmsg_addstr (reply, ok ? "200" : "400");
    zmsg_addstr (reply, ok ? "OK" : "Unknown client key");
    zmsg_addstr (reply, ok ? client : "");
    zmsg_addmem (reply, NULL, 0);
    zmsg_send (&reply, sock);
    zstr_free (&version);
    zstr_free (&sequence);
    zstr_free (&domain);
    zstr_free (&address);
    zstr_free (&mechanism);
    zframe_destroy (&routing);
    zframe_destroy (&key);
    zmsg_destroy (&request);
}

/* With curve_secret_key: the ZAP handler, the allow-list, both sockets as
   CURVE servers. 0, or -1 with `error`. */
static int
s_curve_setup (actor_t *self, bus_t *bus, char *error, size_t error_size)
{
    const config_t *config = actor_config (self);
    char public_key[41];
    if (zmq_curve_public (public_key, config->curve_secret_key) != 0) {
        snprintf (error, error_size, "curve_secret_key: not a Z85 CURVE secret key");
        return -1;
    }
    for (const char *p = config->curve_allowed_clients; *p; ) {
        p += strspn (p, " ,");
        size_t length = strcspn (p, " ,");
        if (length == 40) {
            char key[41];
            snprintf (key, sizeof key, "%.*s", (int) length, p);
            zhashx_insert (bus->allowed, key, (void *) "allowed");
        }
        p += length;
    }
    bus->zap = zsock_new (ZMQ_REP);
    if (!bus->zap || zsock_bind (bus->zap, BUS_ZAP_ENDPOINT) != 0) {
        snprintf (error, error_size, "cannot bind the ZAP handler: %s",
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    actor_watch (self, bus->zap, s_on_zap);
    zsock_t *socks[] = { bus->inject, bus->events };
    for (size_t i = 0; i < 2; i++) {
        zsock_set_zap_domain (socks[i], "parley");
        zsock_set_curve_server (socks[i], 1);
        zsock_set_curve_secretkey (socks[i], config->curve_secret_key);
    }
    if (zhashx_size (bus->allowed) == 0)
        log_warn (actor_name (self), "CURVE on, curve_allowed_clients empty: any client"
                  " that knows the server key is admitted");
    log_info (actor_name (self), "CURVE on: server public key %s, %zu client key(s) allowed",
              public_key, zhashx_size (bus->allowed));
    return 0;
}

/* --- the actor ---------------------------------------------------------- */

/* Asks a persister for the assistant user's id (created if missing). */
static void
s_ask_assistant (actor_t *self, bus_t *bus)
{
    envelope_t *env = envelope_new (ENVELOPE_HTTP_REQUEST);
    snprintf (env->from, sizeof env->from, "%s", actor_name (self));
    envelope_set_body (env, json_pack ("{s:s s:s s:s s:s s:{} s:{} s:{}}", "op",
                                       "inject.assistant", "method", "POST", "path", "/zmq/",
                                       "base", "", "params", "query", "auth"));
    snprintf (bus->assistant_request, sizeof bus->assistant_request, "%s", env->id);
    bus->assistant_asked = zclock_mono ();
    char to[48];
    mailbox_shard_name (to, sizeof to, "persister", "assistant", bus->persisters);
    actor_send (self, to, env);
    envelope_destroy (&env);
}

static void
s_on_response (actor_t *self, bus_t *bus, envelope_t *env)
{
    if (streq (env->re, bus->assistant_request)) {
        const char *text = json_string_value (json_object_get (env->body, "json"));
        json_t *answer = text ? json_loads (text, 0, NULL) : NULL;
        const char *id = json_string_value (json_object_get (answer, "id"));
        if (id) {
            snprintf (bus->assistant, sizeof bus->assistant, "%s", id);
            log_info (actor_name (self), "assistant user %s is %s",
                      actor_config (self)->assistant_username, id);
        }
        bus->assistant_request[0] = '\0';
        json_decref (answer);
        return;
    }
    s_pending_t *pending = zhashx_lookup (bus->pending, env->re);
    if (pending) {
        s_on_answer (self, bus, pending, env);
        zhashx_delete (bus->pending, env->re);
    }
}

static int
s_bind (zsock_t *sock, const char *setting, const char *endpoint, char *error,
        size_t error_size)
{
    if (zsock_bind (sock, "%s", endpoint) >= 0)
        return 0;
    snprintf (error, error_size, "cannot bind %s %s: %s", setting, endpoint,
              zmq_strerror (zmq_errno ()));
    return -1;
}

static int
s_start (actor_t *self, char *error, size_t error_size)
{
    const config_t *config = actor_config (self);
    bus_t *bus = calloc (1, sizeof *bus);
    if (!bus)
        return -1;
    actor_set_state (self, bus);
    bus->pending = zhashx_new ();
    zhashx_set_destructor (bus->pending, s_pending_free);
    bus->allowed = zhashx_new ();
    bus->persisters = actor_shard_count (config, "persister");
    bus->events = zsock_new (ZMQ_PUB);
    bus->inject = zsock_new (ZMQ_ROUTER);
    if (!bus->events || !bus->inject)
        return -1;
    zsock_set_sndhwm (bus->events, BUS_SNDHWM);
    zsock_set_linger (bus->events, 0);
    zsock_set_rcvhwm (bus->inject, BUS_INJECT_HWM);
    zsock_set_sndhwm (bus->inject, BUS_INJECT_HWM);
    zsock_set_linger (bus->inject, 0);
    /* a peer sending more than twice the largest envelope is cut off;
       up to that, an envelope too large gets its too_large reply */
    zsock_set_maxmsgsize (bus->inject, 2 * ENVELOPE_MAX_BYTES);
    snprintf (bus->base, sizeof bus->base, "%s", config->public_url);
    if (!bus->base[0])
        snprintf (bus->base, sizeof bus->base, "http://%s:%lld", config->http_host,
                  (long long) config->http_port);
    if (config->curve_secret_key[0] && s_curve_setup (self, bus, error, error_size) != 0)
        return -1;
    if (s_bind (bus->events, "events_endpoint", config->events_endpoint, error, error_size)
        || s_bind (bus->inject, "inject_endpoint", config->inject_endpoint, error, error_size))
        return -1;
    actor_watch (self, bus->inject, s_on_inject);
    s_ask_assistant (self, bus);
    log_info (actor_name (self), "inject on %s, events on %s%s", config->inject_endpoint,
              config->events_endpoint, config->curve_secret_key[0] ? " (CURVE)" : "");
    return 0;
}

static void
s_handle (actor_t *self, envelope_t **batch, size_t count)
{
    bus_t *bus = actor_state (self);
    for (size_t i = 0; i < count; i++) {
        envelope_t *env = batch[i];
        switch (env->type) {
        case ENVELOPE_ROOM_EVENT:
            if (env->room[0])
                s_on_room_event (self, bus, env);
            break;
        case ENVELOPE_ROOM_EPHEMERAL:
            if (env->room[0])
                s_on_room_ephemeral (self, bus, env);
            break;
        case ENVELOPE_USER_EVENT:
            s_on_user_event (self, bus, env);
            break;
        case ENVELOPE_HTTP_RESPONSE:
            s_on_response (self, bus, env);
            break;
        default:
            break;
        }
    }
}

/* Commands whose persister never answered; the assistant asked again. */
static void
s_tick (actor_t *self)
{
    bus_t *bus = actor_state (self);
    int64_t now = zclock_mono ();
    zlistx_t *ids = zhashx_keys (bus->pending);
    for (const char *id = zlistx_first (ids); id; id = zlistx_next (ids)) {
        s_pending_t *pending = zhashx_lookup (bus->pending, id);
        if (pending->deadline > now)
            continue;
        s_reply_error (self, bus, pending->identity, pending->delimited, pending->re,
                       "unavailable", "No answer in time; the command may not be applied.");
        zhashx_delete (bus->pending, id);
    }
    zlistx_destroy (&ids);
    if (!bus->assistant[0] && now - bus->assistant_asked > 5000)
        s_ask_assistant (self, bus);
}

static void
s_stop (actor_t *self)
{
    bus_t *bus = actor_state (self);
    if (!bus)
        return;
    zsock_destroy (&bus->inject);
    zsock_destroy (&bus->events);
    zsock_destroy (&bus->zap);
    zhashx_destroy (&bus->pending);
    zhashx_destroy (&bus->allowed);
    free (bus);
    actor_set_state (self, NULL);
}

const actor_def_t bus_actor = {
    .kind = "bus",
    .batch_max = 256,
    .tick_ms = BUS_TICK_MS,
    .start = s_start,
    .handle = s_handle,
    .tick = s_tick,
    .stop = s_stop,
};
