/*  gateway/ws.c — WebSocket connections: authentication, subscriptions,
 *  ordered delivery, coalescing, back-pressure, commands. See ws.h. */
#include "ws.h"
#include "log.h"
#include "ratelimit.h"
#include "token.h"

#define WS_FRAME_MAX     (64 * 1024)        /* API.md §3: larger closes 1009  */
#define WS_AUTH_WAIT_US  (5 * LWS_US_PER_SEC)
#define WS_COALESCE_MAX  (256 * 1024)       /* most bytes one frame coalesces */
#define WS_BACKLOG_MAX   64                 /* commands held before "ready"    */

/* An encoded event, shared by every connection it is queued on. */
typedef struct {
    int refs;
    bool ephemeral;
    size_t len;
    char data[];
} frame_t;

typedef struct room_subs_t room_subs_t;

/* One room a connection receives: a subscription. It sits in two arrays,
   its connection's (conn->subs) and its room's (room_subs_t), so a room
   event walks the room's subscriptions with no lookup per connection. */
typedef struct {
    ws_conn_t *conn;
    room_subs_t *room;       /* the room's subscriptions on this gateway    */
    uint32_t slot;           /* this one's index in room->subs              */
    bool resuming;           /* a resume is replaying: live events wait     */
    int64_t seq;             /* the last seq this connection got            */
    zlistx_t *held;          /* frames (with seq) waiting for the replay    */
} sub_t;

/* The subscriptions to one room on this gateway (gw->rooms: id -> this). */
struct room_subs_t {
    sub_t **subs;
    uint32_t count, cap;
    char id[];
};

typedef struct {
    int64_t seq;
    frame_t *frame;
} held_t;

struct ws_conn_t {
    gateway_t *gw;
    struct lws *wsi;
    /* Kept small: an idle connection costs this, its lws state and its
       index entries. Lists and buffers are made when first needed. */
    char id[24];
    char user[40];           /* "" until authenticated                       */
    char *base;              /* http://Host, for links in answers            */
    void *user_handle;       /* its place in gw->users[user]                 */
    bool msgpack;            /* subprotocol parley.msgpack                   */
    bool ready;              /* authenticated and subscribed                 */
    int close_code;          /* to close with at the next writeable          */
    sub_t **subs;            /* its rooms (few: found by a linear search)    */
    uint32_t subs_count, subs_cap;
    frame_t **queue;         /* a ring of frames waiting to be written       */
    uint32_t queue_head, queue_count, queue_cap;
    size_t queued;           /* their bytes                                  */
    size_t held;             /* bytes of live events held during resumes     */
    char *rx;                /* a message being reassembled from fragments   */
    size_t rx_len;
    zlistx_t *backlog;       /* commands (json_t) received before ready      */
    zlistx_t *early;         /* frame_t for the user that came before ready  */
    json_t *resume_next;     /* the next page of a resume: {rooms, ref}, sent
                                once the queue has drained                   */
    zlistx_t *typing;        /* rooms this connection said it types in       */
};

/* A command waiting for its operation's answer. */
typedef struct {
    char conn[24];
    char type[32];           /* the command                                  */
    const char *ack_key;     /* key of the answer in the ack, or NULL        */
    json_t *ref;             /* echoed; may be NULL                          */
    json_t *rooms;           /* resume: the rooms it replays; else NULL      */
} ws_request_t;

typedef struct {
    const char *type;
    const char *op;
    const char *method;
    const char *id_field;    /* body field that becomes the path id          */
    const char *ack_key;
    bool is_send;            /* rate limited                                  */
} ws_command_t;

static const ws_command_t s_commands[] = {
    { "message.send",    "messages.create",    "POST",  NULL,      "message",  true },
    { "message.edit",    "messages.update",    "PATCH", "message", "message",  false },
    { "message.delete",  "messages.delete",    "DELETE","message", NULL,       false },
    { "read",            "rooms.mark_read",    "POST",  "room",    NULL,       false },
    { "reaction.add",    "reactions.create",   "POST",  NULL,      "reaction", false },
    { "reaction.remove", "reactions.remove",   "POST",  NULL,      NULL,       false },
    { "presence.set",    "presence.me_update", "PATCH", NULL,      "presence", false },
    { "resume",          "ws.resume",          "POST",  NULL,      NULL,       false },
    { NULL, NULL, NULL, NULL, NULL, false }
};

/* --- frames ------------------------------------------------------------- */

static frame_t *
s_frame_new (const void *data, size_t len, bool ephemeral)
{
    frame_t *frame = malloc (sizeof *frame + len + 1);
    if (!frame)
        return NULL;
    frame->refs = 1;
    frame->ephemeral = ephemeral;
    frame->len = len;
    memcpy (frame->data, data, len);
    frame->data[len] = '\0';
    return frame;
}

static void
s_frame_unref (frame_t **frame_p)
{
    if (*frame_p && --(*frame_p)->refs == 0)
        free (*frame_p);
    *frame_p = NULL;
}

/* The frame of `text` (a JSON object) for a connection's format: the JSON
   frame itself, or its msgpack form (made once, kept in *mp). */
static frame_t *
s_frame_for (ws_conn_t *conn, frame_t *json, frame_t **mp)
{
    if (!conn->msgpack)
        return json;
    if (!*mp) {
        json_t *value = json_loadb (json->data, json->len, 0, NULL);
        char *data = NULL;
        size_t size = 0;
        if (value && envelope_json_to_msgpack (value, &data, &size) == 0)
            *mp = s_frame_new (data, size, json->ephemeral);
        free (data);
        json_decref (value);
    }
    return *mp;
}

/* --- the queue: a ring of frame pointers, grown by doubling --------------- */

static int
s_queue_push (ws_conn_t *conn, frame_t *frame)
{
    if (conn->queue_count == conn->queue_cap) {
        uint32_t cap = conn->queue_cap ? conn->queue_cap * 2 : 8;
        frame_t **ring = malloc (cap * sizeof *ring);
        if (!ring)
            return -1;
        for (uint32_t i = 0; i < conn->queue_count; i++)
            ring[i] = conn->queue[(conn->queue_head + i) % conn->queue_cap];
        free (conn->queue);
        conn->queue = ring;
        conn->queue_cap = cap;
        conn->queue_head = 0;
    }
    conn->queue[(conn->queue_head + conn->queue_count++) % conn->queue_cap] = frame;
    return 0;
}

static frame_t *
s_queue_at (ws_conn_t *conn, uint32_t i)
{
    return conn->queue[(conn->queue_head + i) % conn->queue_cap];
}

static frame_t *
s_queue_pop (ws_conn_t *conn)
{
    if (!conn->queue_count)
        return NULL;
    frame_t *frame = conn->queue[conn->queue_head];
    conn->queue_head = (conn->queue_head + 1) % conn->queue_cap;
    if (--conn->queue_count == 0 && conn->queue_cap > 64) {
        /* a burst is over: give its ring back */
        free (conn->queue);
        conn->queue = NULL;
        conn->queue_cap = conn->queue_head = 0;
    }
    return frame;
}

/* --- sending ------------------------------------------------------------ */

static void
s_close (ws_conn_t *conn, int code)
{
    if (conn->close_code)
        return;
    conn->close_code = code;
    lws_callback_on_writable (conn->wsi);
    /* a consumer that cannot take the close frame is cut off anyway */
    lws_set_timeout (conn->wsi, PENDING_TIMEOUT_CLOSE_SEND, 2);
}

static int s_write_queued (ws_conn_t *conn);
static void s_resume_next (ws_conn_t *conn);
static json_int_t s_resume_budget (ws_conn_t *conn);
static const ws_command_t *s_command (const char *type);

/* Writes what the socket takes right now, until `limit` bytes or fewer are
   queued. One inbox drain can queue a whole persister batch (64 acks and
   64 events of up to 10 000 characters each) before any writeable
   callback: a burst the socket accepts is not a slow consumer. */
static void
s_flush_to (ws_conn_t *conn, size_t limit)
{
    while (conn->queued > limit && !conn->close_code && !lws_send_pipe_choked (conn->wsi))
        if (s_write_queued (conn) != 0) {
            s_close (conn, 1011);
            return;
        }
}

/* Queues a frame (takes a reference). Under pressure ephemeral frames are
   dropped first; past the bound the connection is closed with 1013. */
static void
s_enqueue (ws_conn_t *conn, frame_t *frame)
{
    if (!frame || conn->close_code)
        return;
    size_t bound = (size_t) conn->gw->config->ws_queue_max;
    size_t limit = frame->ephemeral ? bound / 2 : bound;
    if (conn->queued + frame->len > limit)
        s_flush_to (conn, frame->len > limit ? 0 : limit - frame->len);
    if (conn->close_code)
        return;
    if (frame->ephemeral && conn->queued + frame->len > bound / 2) {
        metrics_add (conn->gw->metrics, "ws_ephemeral_dropped_total", 1);
        return;
    }
    if (conn->queued + frame->len > bound) {
        metrics_add (conn->gw->metrics, "ws_slow_consumers_closed_total", 1);
        log_info (conn->gw->name, "connection %s of user %s cannot keep up: closing 1013",
                  conn->id, conn->user);
        s_close (conn, 1013);
        return;
    }
    if (s_queue_push (conn, frame) != 0)
        return;
    frame->refs++;
    conn->queued += frame->len;
    if (conn->queue_count == 1)      /* already asked for when not empty */
        lws_callback_on_writable (conn->wsi);
}

/* Queues a one-off JSON object for this connection (takes `event`). */
static void
s_send_json (ws_conn_t *conn, json_t *event)
{
    char *text = json_dumps (event, JSON_COMPACT);
    json_decref (event);
    if (!text)
        return;
    frame_t *json = s_frame_new (text, strlen (text), false), *mp = NULL;
    free (text);
    s_enqueue (conn, s_frame_for (conn, json, &mp));
    s_frame_unref (&json);
    s_frame_unref (&mp);
}

static void
s_send_error (ws_conn_t *conn, json_t *ref, const char *code, const char *detail)
{
    json_t *event = json_pack ("{s:s s:O s:s s:s}", "type", "error", "ref",
                               ref ? ref : json_null (), "code", code, "detail", detail);
    s_send_json (conn, event);
}

/* Writes the head of the queue: one frame, or an array of several
   (coalesced). 0, or -1 when the connection failed. */
static int
s_write_queued (ws_conn_t *conn)
{
    struct lws *wsi = conn->wsi;
    size_t count = 0, bytes = 0;
    for (uint32_t i = 0; i < conn->queue_count; i++) {
        frame_t *f = s_queue_at (conn, i);
        if (count && bytes + f->len > WS_COALESCE_MAX)
            break;
        count++;
        bytes += f->len;
    }
    if (!count)
        return 0;
    size_t size = LWS_PRE + bytes + count + 8;
    unsigned char *buf = malloc (size);
    if (!buf)
        return -1;
    unsigned char *p = buf + LWS_PRE;
    if (count > 1) {
        if (conn->msgpack) {                 /* array 16/32 header */
            if (count < 16)
                *p++ = (unsigned char) (0x90 | count);
            else {
                *p++ = 0xdd;
                for (int shift = 24; shift >= 0; shift -= 8)
                    *p++ = (unsigned char) (count >> shift);
            }
        }
        else
            *p++ = '[';
    }
    for (size_t i = 0; i < count; i++) {
        frame_t *f = s_queue_pop (conn);
        if (i && !conn->msgpack)
            *p++ = ',';
        memcpy (p, f->data, f->len);
        p += f->len;
        conn->queued -= f->len;
        s_frame_unref (&f);
    }
    if (count > 1 && !conn->msgpack)
        *p++ = ']';
    size_t len = (size_t) (p - buf - LWS_PRE);
    int written = lws_write (wsi, buf + LWS_PRE, len,
                             conn->msgpack ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
    free (buf);
    if (written < (int) len)
        return -1;
    metrics_add (conn->gw->metrics, "ws_frames_out_total", 1);
    metrics_add (conn->gw->metrics, "ws_events_out_total", (int64_t) count);
    if (conn->queue_count)
        lws_callback_on_writable (wsi);
    return 0;
}

int
ws_on_writeable (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    (void) gw;
    ws_conn_t *conn = pss->conn;
    if (!conn)
        return 0;
    if (conn->close_code) {
        lws_close_reason (wsi, (enum lws_close_status) conn->close_code, NULL, 0);
        return -1;
    }
    if (s_write_queued (conn) != 0)
        return -1;
    if (conn->resume_next && !conn->queue_count)
        s_resume_next (conn);
    return 0;
}

/* --- indexes ------------------------------------------------------------ */

static void
s_list_destructor (void **item)
{
    zlistx_destroy ((zlistx_t **) item);
}

static void
s_room_subs_destructor (void **item)
{
    room_subs_t *room = *item;
    if (room) {
        free (room->subs);
        free (room);
    }
    *item = NULL;
}

void
ws_indexes_new (gateway_t *gw)
{
    gw->ws_pending = zhashx_new ();
    gw->conns = zhashx_new ();
    gw->users = zhashx_new ();
    zhashx_set_destructor (gw->users, s_list_destructor);
    gw->rooms = zhashx_new ();
    zhashx_set_destructor (gw->rooms, s_room_subs_destructor);
}

static void
s_request_free (ws_request_t **req_p)
{
    if (*req_p) {
        json_decref ((*req_p)->ref);
        json_decref ((*req_p)->rooms);
        free (*req_p);
    }
    *req_p = NULL;
}

void
ws_indexes_destroy (gateway_t *gw)
{
    if (gw->ws_pending) {
        for (ws_request_t *req = zhashx_first (gw->ws_pending); req;
             req = zhashx_next (gw->ws_pending))
            s_request_free (&req);
    }
    zhashx_destroy (&gw->ws_pending);
    zhashx_destroy (&gw->conns);
    zhashx_destroy (&gw->users);
    zhashx_destroy (&gw->rooms);
}

static zlistx_t *
s_list_require (zhashx_t *index, const char *key)
{
    zlistx_t *list = zhashx_lookup (index, key);
    if (!list) {
        list = zlistx_new ();
        zhashx_insert (index, key, list);
    }
    return list;
}

static void
s_list_remove (zhashx_t *index, const char *key, void *handle)
{
    zlistx_t *list = zhashx_lookup (index, key);
    if (!list || !handle)
        return;
    zlistx_detach (list, handle);
    if (zlistx_size (list) == 0)
        zhashx_delete (index, key);
}

/* Grows an array of pointers to hold one more; 0 or -1. */
static int
s_array_reserve (void ***items, uint32_t count, uint32_t *cap)
{
    if (count < *cap)
        return 0;
    uint32_t grown = *cap ? *cap * 2 : 4;
    void **bigger = realloc (*items, grown * sizeof *bigger);
    if (!bigger)
        return -1;
    *items = bigger;
    *cap = grown;
    return 0;
}

/* `conn`'s subscription to `room`, or NULL. */
static sub_t *
s_sub_find (ws_conn_t *conn, const char *room)
{
    for (uint32_t i = 0; i < conn->subs_count; i++)
        if (strcmp (conn->subs[i]->room->id, room) == 0)
            return conn->subs[i];
    return NULL;
}

/* Subscribes `conn` to `room`; it receives events with seq > `after`. */
static sub_t *
s_subscribe (ws_conn_t *conn, const char *room, int64_t after)
{
    sub_t *sub = s_sub_find (conn, room);
    if (sub)
        return sub;
    room_subs_t *subs = zhashx_lookup (conn->gw->rooms, room);
    if (!subs) {
        size_t len = strlen (room);
        subs = calloc (1, sizeof *subs + len + 1);
        if (!subs)
            return NULL;
        memcpy (subs->id, room, len + 1);
        zhashx_insert (conn->gw->rooms, room, subs);
    }
    sub = calloc (1, sizeof *sub);
    if (!sub
        || s_array_reserve ((void ***) &subs->subs, subs->count, &subs->cap) != 0
        || s_array_reserve ((void ***) &conn->subs, conn->subs_count, &conn->subs_cap) != 0) {
        free (sub);
        if (subs->count == 0)
            zhashx_delete (conn->gw->rooms, room);
        return NULL;
    }
    sub->conn = conn;
    sub->room = subs;
    sub->seq = after;
    sub->slot = subs->count;
    subs->subs[subs->count++] = sub;
    conn->subs[conn->subs_count++] = sub;
    return sub;
}

static void
s_sub_release_held (ws_conn_t *conn, sub_t *sub)
{
    held_t *held;
    while (sub->held && (held = zlistx_detach (sub->held, NULL))) {
        conn->held -= held->frame->len;
        s_frame_unref (&held->frame);
        free (held);
    }
    zlistx_destroy (&sub->held);
}

/* Ends a subscription: out of both arrays (the last one takes its place). */
static void
s_unsubscribe_sub (ws_conn_t *conn, sub_t *sub)
{
    room_subs_t *room = sub->room;
    sub_t *last = room->subs[--room->count];
    room->subs[sub->slot] = last;
    last->slot = sub->slot;
    if (room->count == 0)
        zhashx_delete (conn->gw->rooms, room->id);     /* frees room */
    for (uint32_t i = 0; i < conn->subs_count; i++)
        if (conn->subs[i] == sub) {
            conn->subs[i] = conn->subs[--conn->subs_count];
            break;
        }
    s_sub_release_held (conn, sub);
    free (sub);
}

static void
s_unsubscribe (ws_conn_t *conn, const char *room)
{
    sub_t *sub = s_sub_find (conn, room);
    if (sub)
        s_unsubscribe_sub (conn, sub);
}

/* --- connection life ---------------------------------------------------- */

int
ws_on_confirm_upgrade (gateway_t *gw, struct lws *wsi)
{
    (void) gw;
    char uri[64] = "";
    lws_hdr_copy (wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
    return strcmp (uri, "/ws/") == 0 || strcmp (uri, "/ws") == 0 ? 0 : -1;
}

/* Sends an operation for a connection; the answer comes to ws_on_response.
   Returns the pending request (owned by gw->ws_pending), or NULL. */
static ws_request_t *
s_send_op (ws_conn_t *conn, const ws_command_t *command, json_t *params, json_t *body,
           json_t *ref)
{
    json_t *auth = json_pack ("{s:s}", "user", conn->user);
    gw_op_request_t req = { .op = command->op, .method = command->method, .path = "/ws/",
                            .base = conn->base, .params = params, .body = body,
                            .auth = auth };
    char id[ENVELOPE_ID_MAX + 1];
    int rc = http_send_op (conn->gw, &req, id, sizeof id);
    json_decref (auth);
    if (rc != 0) {
        s_send_error (conn, ref, "unavailable", "The service is unavailable; retry later.");
        return NULL;
    }
    ws_request_t *pending = calloc (1, sizeof *pending);
    snprintf (pending->conn, sizeof pending->conn, "%s", conn->id);
    snprintf (pending->type, sizeof pending->type, "%s", command->type);
    pending->ack_key = command->ack_key;
    pending->ref = ref ? json_incref (ref) : NULL;
    zhashx_insert (conn->gw->ws_pending, id, pending);
    return pending;
}

static const ws_command_t s_hello = { "hello", "ws.rooms", "GET", NULL, NULL, false };
static const ws_command_t s_session = { "session", "auth.me", "GET", NULL, NULL, false };

/* The caller is known: index the connection, tell the user shard, load rooms. */
static void
s_authenticated (ws_conn_t *conn, const char *user)
{
    gateway_t *gw = conn->gw;
    snprintf (conn->user, sizeof conn->user, "%s", user);
    conn->user_handle = zlistx_add_end (s_list_require (gw->users, user), conn);
    lws_set_timer_usecs (conn->wsi, LWS_SET_TIMER_USEC_CANCEL);
    envelope_t *env = envelope_new (ENVELOPE_CONN_OPEN);
    snprintf (env->user, sizeof env->user, "%s", user);
    char to[48];
    mailbox_shard_name (to, sizeof to, "user", user, gw->users_shards);
    mailbox_send (gw->mailbox, to, env);
    envelope_destroy (&env);
    s_send_op (conn, &s_hello, NULL, NULL, NULL);
}

/* What the handshake carried, copied while its headers still exist: lws
   drops them on upgrade, before ESTABLISHED. Kept as the wsi's opaque data. */
#define WS_HANDSHAKE_MAGIC 0x50574853u

typedef struct {
    uint32_t magic;          /* other wsis (adopted inbox fds) hold other data */
    char token[2048];
    char session[256];
    char base[300];
} ws_handshake_t;

int
ws_on_filter (gateway_t *gw, struct lws *wsi)
{
    ws_handshake_t *hs = calloc (1, sizeof *hs);
    if (!hs)
        return -1;
    hs->magic = WS_HANDSHAKE_MAGIC;
    char arg[sizeof hs->token + 8];
    const char *token = lws_get_urlarg_by_name (wsi, "token=", arg, sizeof arg);
    snprintf (hs->token, sizeof hs->token, "%s", token ? token : "");
    size_t max = sizeof hs->session;
    if (lws_hdr_total_length (wsi, WSI_TOKEN_HTTP_COOKIE) <= 0
        || lws_http_cookie_get (wsi, "sessionid", hs->session, &max) != 0)
        hs->session[0] = '\0';
    http_base_url (gw, wsi, hs->base, sizeof hs->base);
    lws_set_opaque_user_data (wsi, hs);
    return 0;
}

void
ws_on_destroy (struct lws *wsi)
{
    ws_handshake_t *hs = lws_get_opaque_user_data (wsi);
    if (hs && hs->magic == WS_HANDSHAKE_MAGIC) {
        free (hs);
        lws_set_opaque_user_data (wsi, NULL);
    }
}

int
ws_on_established (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    ws_conn_t *conn = calloc (1, sizeof *conn);
    if (!conn)
        return -1;
    conn->gw = gw;
    conn->wsi = wsi;
    snprintf (conn->id, sizeof conn->id, "c%llu", (unsigned long long) ++gw->next_conn);
    const struct lws_protocols *protocol = lws_get_protocol (wsi);
    conn->msgpack = protocol && strcmp (protocol->name, "parley.msgpack") == 0;
    ws_handshake_t *hs = lws_get_opaque_user_data (wsi);
    if (hs && hs->magic != WS_HANDSHAKE_MAGIC)
        hs = NULL;
    lws_set_opaque_user_data (wsi, NULL);
    conn->base = strdup (hs ? hs->base : "");
    if (!conn->base) {
        free (hs);
        free (conn);
        return -1;
    }
    pss->conn = conn;
    zhashx_insert (gw->conns, conn->id, conn);
    metrics_add (gw->metrics, "ws_connections_open", 1);

    if (hs && hs->token[0]) {
        char user[TOKEN_ID_SIZE];
        int rc = token_verify (gw->config->jwt_secret, hs->token, "access", user, NULL);
        free (hs);
        if (rc != 0)
            s_close (conn, 4401);
        else
            s_authenticated (conn, user);
        return 0;
    }
    if (hs && hs->session[0]) {
        /* the persister knows sessions: ask it, as REST does */
        json_t *auth = json_pack ("{s:s}", "session", hs->session);
        gw_op_request_t req = { .op = s_session.op, .method = "GET", .path = "/ws/",
                                .base = conn->base, .auth = auth };
        char id[ENVELOPE_ID_MAX + 1];
        if (http_send_op (gw, &req, id, sizeof id) == 0) {
            ws_request_t *pending = calloc (1, sizeof *pending);
            snprintf (pending->conn, sizeof pending->conn, "%s", conn->id);
            snprintf (pending->type, sizeof pending->type, "%s", s_session.type);
            zhashx_insert (gw->ws_pending, id, pending);
        }
        json_decref (auth);
    }
    free (hs);
    lws_set_timer_usecs (wsi, WS_AUTH_WAIT_US);
    return 0;
}

int
ws_on_timer (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    (void) gw, (void) wsi;
    if (pss->conn && !pss->conn->user[0])
        s_close (pss->conn, 4401);
    return 0;
}

static void
s_send_typing (ws_conn_t *conn, const char *room, bool is_typing)
{
    envelope_t *env = envelope_new (ENVELOPE_TYPING);
    snprintf (env->user, sizeof env->user, "%s", conn->user);
    snprintf (env->room, sizeof env->room, "%s", room);
    envelope_set_body (env, json_pack ("{s:b}", "is_typing", is_typing));
    mailbox_send (conn->gw->mailbox, "presence.0", env);
    envelope_destroy (&env);
}

void
ws_on_closed (gateway_t *gw, gw_session_t *pss)
{
    ws_conn_t *conn = pss->conn;
    if (!conn)
        return;
    pss->conn = NULL;
    if (conn->user[0]) {
        for (char *room = conn->typing ? zlistx_first (conn->typing) : NULL; room;
             room = zlistx_next (conn->typing))
            s_send_typing (conn, room, false);
        envelope_t *env = envelope_new (ENVELOPE_CONN_CLOSE);
        snprintf (env->user, sizeof env->user, "%s", conn->user);
        char to[48];
        mailbox_shard_name (to, sizeof to, "user", conn->user, gw->users_shards);
        mailbox_send (gw->mailbox, to, env);
        envelope_destroy (&env);
        s_list_remove (gw->users, conn->user, conn->user_handle);
    }
    while (conn->subs_count)
        s_unsubscribe_sub (conn, conn->subs[conn->subs_count - 1]);
    free (conn->subs);
    frame_t *frame;
    while ((frame = s_queue_pop (conn)))
        s_frame_unref (&frame);
    free (conn->queue);
    json_t *command;
    while (conn->backlog && (command = zlistx_detach (conn->backlog, NULL)))
        json_decref (command);
    zlistx_destroy (&conn->backlog);
    while (conn->early && (frame = zlistx_detach (conn->early, NULL)))
        s_frame_unref (&frame);
    zlistx_destroy (&conn->early);
    json_decref (conn->resume_next);
    zlistx_destroy (&conn->typing);
    free (conn->rx);
    free (conn->base);
    zhashx_delete (gw->conns, conn->id);
    metrics_add (gw->metrics, "ws_connections_open", -1);
    free (conn);
}

/* --- commands ----------------------------------------------------------- */

static void s_handle_command (ws_conn_t *conn, json_t *command);
static void s_resume_abort (ws_conn_t *conn, json_t *rooms);

static void
s_handle_typing (ws_conn_t *conn, json_t *command, json_t *ref, bool is_typing)
{
    const char *room = json_string_value (json_object_get (command, "room"));
    if (!room || !s_sub_find (conn, room)) {
        s_send_error (conn, ref, "not_found", "Not found.");
        return;
    }
    if (is_typing && !conn->typing) {
        conn->typing = zlistx_new ();
        zlistx_set_destructor (conn->typing, (zlistx_destructor_fn *) zstr_free);
        zlistx_set_duplicator (conn->typing, (zlistx_duplicator_fn *) strdup);
        zlistx_set_comparator (conn->typing, (zlistx_comparator_fn *) strcmp);
    }
    if (is_typing && !zlistx_find (conn->typing, (void *) room))
        zlistx_add_end (conn->typing, (void *) room);
    else if (!is_typing && conn->typing && zlistx_find (conn->typing, (void *) room))
        zlistx_delete (conn->typing, zlistx_cursor (conn->typing));
    s_send_typing (conn, room, is_typing);
}

static void
s_handle_auth (ws_conn_t *conn, json_t *command, json_t *ref)
{
    char user[TOKEN_ID_SIZE];
    const char *token = json_string_value (json_object_get (command, "token"));
    if (conn->user[0]) {
        s_send_error (conn, ref, "invalid", "Already authenticated.");
        return;
    }
    if (!token || token_verify (conn->gw->config->jwt_secret, token, "access", user, NULL)) {
        s_close (conn, 4401);
        return;
    }
    s_authenticated (conn, user);
}

/* Runs an operation-backed command (message.send, read, ...). */
static void
s_handle_op (ws_conn_t *conn, const ws_command_t *c, json_t *command, json_t *ref)
{
    if (c->is_send) {
        double retry = 0;
        if (ratelimit_take (conn->gw->buckets, conn->user, conn->gw->config, &retry) != 0) {
            s_send_error (conn, ref, "rate_limited", "Request was throttled.");
            return;
        }
    }
    json_t *params = json_object ();
    if (c->id_field) {
        json_t *id = json_object_get (command, c->id_field);
        if (!json_is_string (id) || !routes_is_uuid (json_string_value (id))) {
            char detail[96];
            snprintf (detail, sizeof detail, "%s: Must be a valid UUID.", c->id_field);
            s_send_error (conn, ref, "invalid", detail);
            json_decref (params);
            return;
        }
        json_object_set (params, "id", id);
    }
    json_t *resuming = NULL;
    if (strcmp (c->type, "resume") == 0) {
        /* live events of these rooms wait until their replay is done */
        resuming = json_object ();
        const char *room;
        json_t *last;
        json_object_foreach (json_object_get (command, "rooms"), room, last) {
            sub_t *sub = s_sub_find (conn, room);
            if (sub && json_is_integer (last) && json_integer_value (last) >= 0
                && !sub->resuming) {
                sub->seq = json_integer_value (last);
                sub->resuming = true;
                sub->held = zlistx_new ();
                json_object_set_new (resuming, room, json_true ());
            }
        }
    }
    if (resuming)
        json_object_set_new (command, "budget", json_integer (s_resume_budget (conn)));
    ws_request_t *pending = s_send_op (conn, c, params, command, ref);
    if (resuming && pending)
        pending->rooms = resuming;
    else if (resuming) {
        s_resume_abort (conn, resuming);
        json_decref (resuming);
    }
    json_decref (params);
}

static void
s_handle_command (ws_conn_t *conn, json_t *command)
{
    json_t *ref = json_object_get (command, "ref");
    const char *type = json_string_value (json_object_get (command, "type"));
    if (!type) {
        s_send_error (conn, ref, "invalid", "A command is an object with a \"type\".");
        return;
    }
    if (strcmp (type, "auth") == 0) {
        s_handle_auth (conn, command, ref);
        return;
    }
    if (!conn->ready) {
        if (!conn->backlog)
            conn->backlog = zlistx_new ();
        if (zlistx_size (conn->backlog) < WS_BACKLOG_MAX)
            zlistx_add_end (conn->backlog, json_incref (command));
        else
            s_send_error (conn, ref, "not_ready", "Not authenticated yet.");
        return;
    }
    if (strcmp (type, "ping") == 0) {
        s_send_json (conn, json_pack ("{s:s s:O}", "type", "pong", "ref",
                                      ref ? ref : json_null ()));
        return;
    }
    if (strcmp (type, "typing.start") == 0 || strcmp (type, "typing.stop") == 0) {
        s_handle_typing (conn, command, ref, strcmp (type, "typing.start") == 0);
        return;
    }
    for (const ws_command_t *c = s_commands; c->type; c++)
        if (strcmp (c->type, type) == 0) {
            s_handle_op (conn, c, command, ref);
            return;
        }
    s_send_error (conn, ref, "unknown_type", "Unknown command type.");
}

/* Parses one complete client message (text JSON or msgpack binary). */
static void
s_handle_message (ws_conn_t *conn, const char *data, size_t len, bool binary)
{
    json_t *command = NULL;
    if (binary) {
        envelope_err_t err;
        command = envelope_msgpack_to_json (data, len, &err);
    }
    else
        command = json_loadb (data, len, 0, NULL);
    if (!json_is_object (command)) {
        json_decref (command);
        s_send_error (conn, NULL, "invalid",
                      binary ? "A frame holds one msgpack map." : "A frame holds one JSON object.");
        return;
    }
    metrics_add (conn->gw->metrics, "ws_commands_total", 1);
    s_handle_command (conn, command);
    json_decref (command);
}

int
ws_on_receive (gateway_t *gw, struct lws *wsi, gw_session_t *pss, const void *data,
               size_t len)
{
    (void) gw;
    ws_conn_t *conn = pss->conn;
    if (!conn || conn->close_code)
        return 0;
    if (conn->rx_len + len > WS_FRAME_MAX) {
        lws_close_reason (wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
        return -1;
    }
    bool complete = lws_is_final_fragment (wsi) && !lws_remaining_packet_payload (wsi);
    if (complete && conn->rx_len == 0) {
        /* the usual case, a message in one piece: read where lws has it */
        s_handle_message (conn, data, len, lws_frame_is_binary (wsi));
        return 0;
    }
    /* lws hands a message over in pieces of at most rx_buffer_size (and a
       client may fragment it): reassemble, up to WS_FRAME_MAX */
    char *grown = realloc (conn->rx, conn->rx_len + len + 1);
    if (!grown)
        return -1;
    conn->rx = grown;
    memcpy (conn->rx + conn->rx_len, data, len);
    conn->rx_len += len;
    if (!complete)
        return 0;
    s_handle_message (conn, conn->rx, conn->rx_len, lws_frame_is_binary (wsi));
    free (conn->rx);                 /* no buffer kept between messages */
    conn->rx = NULL;
    conn->rx_len = 0;
    return 0;
}

/* --- answers from the actors -------------------------------------------- */

static const char *
s_error_code (int status)
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
s_error_detail (json_t *body, char *out, size_t size)
{
    const char *detail = json_string_value (json_object_get (body, "detail"));
    if (detail) {
        snprintf (out, size, "%s", detail);
        return;
    }
    const char *field;
    json_t *messages;
    json_object_foreach (body, field, messages) {
        snprintf (out, size, "%s: %s", field,
                  json_is_array (messages) ? json_string_value (json_array_get (messages, 0))
                                           : "invalid");
        return;
    }
    snprintf (out, size, "The request failed.");
}

static void
s_enqueue_event_text (ws_conn_t *conn, const char *text, size_t len, bool ephemeral)
{
    frame_t *json = s_frame_new (text, len, ephemeral), *mp = NULL;
    s_enqueue (conn, s_frame_for (conn, json, &mp));
    s_frame_unref (&json);
    s_frame_unref (&mp);
}

/* The connection is subscribed to its rooms: it is ready for commands. */
static void
s_on_hello (ws_conn_t *conn, json_t *body)
{
    const char *room;
    json_t *last;
    json_object_foreach (json_object_get (body, "rooms"), room, last)
        s_subscribe (conn, room, json_integer_value (last));
    conn->ready = true;
    s_send_json (conn, json_pack ("{s:s s:s}", "type", "ready", "user", conn->user));
    frame_t *frame;
    while (conn->early && (frame = zlistx_detach (conn->early, NULL))) {
        s_enqueue (conn, frame);
        s_frame_unref (&frame);
    }
    zlistx_destroy (&conn->early);
    json_t *command;
    while (conn->ready && !conn->close_code && conn->backlog
           && (command = zlistx_detach (conn->backlog, NULL))) {
        s_handle_command (conn, command);
        json_decref (command);
    }
    if (conn->backlog && !zlistx_size (conn->backlog))
        zlistx_destroy (&conn->backlog);
}

/* Ends a room's replay: live events that waited are delivered in order. */
static void
s_resume_done (ws_conn_t *conn, sub_t *sub)
{
    held_t *held;
    while (sub->held && (held = zlistx_detach (sub->held, NULL))) {
        conn->held -= held->frame->len;
        if (held->seq > sub->seq) {
            s_enqueue (conn, held->frame);
            sub->seq = held->seq;
        }
        s_frame_unref (&held->frame);
        free (held);
    }
    zlistx_destroy (&sub->held);
    sub->resuming = false;
}

/* Bytes of events one resume page may carry: half the queue bound (the
   operation caps it at 512 KiB), so a page fits a reading client's queue. */
static json_int_t
s_resume_budget (ws_conn_t *conn)
{
    return (json_int_t) (conn->gw->config->ws_queue_max / 2);
}

/* Asks for the next page of a resume (conn->resume_next). */
static void
s_resume_next (ws_conn_t *conn)
{
    json_t *next = conn->resume_next;
    conn->resume_next = NULL;
    if (!next)
        return;
    json_t *rooms = json_object_get (next, "rooms");
    json_t *ref = json_object_get (next, "ref");
    json_t *command = json_pack ("{s:s s:O s:I}", "type", "resume", "rooms", rooms,
                                 "budget", (json_int_t) s_resume_budget (conn));
    json_t *params = json_object ();
    ws_request_t *req = s_send_op (conn, s_command ("resume"), params, command,
                                   json_is_null (ref) ? NULL : ref);
    if (req)
        req->rooms = json_incref (rooms);
    else
        s_resume_abort (conn, rooms);
    json_decref (params);
    json_decref (command);
    json_decref (next);
}

/* A resume failed: the rooms it held deliver live events again (the
   client got an error and resumes again). */
static void
s_resume_abort (ws_conn_t *conn, json_t *rooms)
{
    const char *room;
    json_t *value;
    json_object_foreach (rooms, room, value) {
        sub_t *sub = s_sub_find (conn, room);
        if (sub && sub->resuming)
            s_resume_done (conn, sub);
    }
}

/* Replays one room's missed events; returns true when more remain. */
static bool
s_resume_room (ws_conn_t *conn, const char *room, json_t *result)
{
    sub_t *sub = s_sub_find (conn, room);
    if (!sub)
        return false;
    json_t *truncated = json_object_get (result, "truncated");
    if (truncated) {
        s_send_json (conn, json_pack ("{s:s s:s s:O s:O}", "type", "resume.truncated",
                                      "room", room,
                                      "from_seq", json_object_get (truncated, "from_seq"),
                                      "to_seq", json_object_get (truncated, "to_seq")));
        sub->seq = json_integer_value (json_object_get (truncated, "to_seq"));
    }
    size_t i;
    json_t *event;
    json_array_foreach (json_object_get (result, "events"), i, event) {
        int64_t seq = json_integer_value (json_object_get (event, "seq"));
        if (seq <= sub->seq)
            continue;
        char *text = json_dumps (event, JSON_COMPACT);
        s_enqueue_event_text (conn, text, strlen (text), false);
        free (text);
        sub->seq = seq;
    }
    if (json_is_true (json_object_get (result, "more")))
        return true;
    s_resume_done (conn, sub);
    return false;
}

static const ws_command_t *
s_command (const char *type)
{
    for (const ws_command_t *c = s_commands; c->type; c++)
        if (strcmp (c->type, type) == 0)
            return c;
    return NULL;
}

static void
s_on_resume (ws_conn_t *conn, ws_request_t *req, json_t *body)
{
    json_t *again = json_object ();
    const char *room;
    json_t *result;
    json_object_foreach (json_object_get (body, "rooms"), room, result)
        if (s_resume_room (conn, room, result))
            json_object_set_new (again, room,
                                 json_integer (s_sub_find (conn, room)->seq));
    if (json_object_size (again)) {
        /* the next page once this one is written: a replay never queues
           more than one page (WS_RESUME_BUDGET) for a client that reads */
        if (conn->resume_next)             /* another resume's next page */
            s_resume_next (conn);
        conn->resume_next = json_pack ("{s:o s:O}", "rooms", again,
                                       "ref", req->ref ? req->ref : json_null ());
        if (conn->queue_count)
            lws_callback_on_writable (conn->wsi);
        else
            s_resume_next (conn);
        return;
    }
    json_decref (again);
    s_send_json (conn, json_pack ("{s:s s:O}", "type", "ack", "ref",
                                  req->ref ? req->ref : json_null ()));
}

static void
s_on_command_answer (ws_conn_t *conn, ws_request_t *req, int status, json_t *body)
{
    if (status >= 400) {
        char detail[512];
        s_error_detail (body, detail, sizeof detail);
        s_send_error (conn, req->ref, s_error_code (status), detail);
        return;
    }
    json_t *ack = json_pack ("{s:s s:O}", "type", "ack", "ref", req->ref ? req->ref : json_null ());
    if (req->ack_key && body)
        json_object_set (ack, req->ack_key, body);
    else if (json_is_object (body))
        json_object_update_missing (ack, body);
    s_send_json (conn, ack);
}

bool
ws_on_response (gateway_t *gw, envelope_t *env)
{
    ws_request_t *req = zhashx_lookup (gw->ws_pending, env->re);
    if (!req)
        return false;
    zhashx_delete (gw->ws_pending, env->re);
    ws_conn_t *conn = zhashx_lookup (gw->conns, req->conn);
    int status = (int) json_integer_value (json_object_get (env->body, "status"));
    const char *text = json_string_value (json_object_get (env->body, "json"));
    json_t *body = text ? json_loads (text, JSON_DECODE_ANY, NULL) : NULL;
    if (conn && !conn->close_code) {
        if (strcmp (req->type, "session") == 0) {
            const char *user = json_string_value (json_object_get (body, "id"));
            if (status == 200 && user)
                s_authenticated (conn, user);
            else
                s_close (conn, 4401);
        }
        else if (strcmp (req->type, "hello") == 0) {
            if (status == 200)
                s_on_hello (conn, body);
            else
                s_close (conn, 1011);
        }
        else if (strcmp (req->type, "resume") == 0 && status == 200)
            s_on_resume (conn, req, body);
        else if (strcmp (req->type, "resume") == 0) {
            if (req->rooms)
                s_resume_abort (conn, req->rooms);
            s_on_command_answer (conn, req, status, body);
        }
        else
            s_on_command_answer (conn, req, status, body);
    }
    json_decref (body);
    s_request_free (&req);
    return true;
}

/* --- fan-out ------------------------------------------------------------ */

/* Subscribes every ready connection of `user` to `room` from `after`. */
static void
s_subscribe_user (gateway_t *gw, const char *user, const char *room, int64_t after)
{
    zlistx_t *conns = zhashx_lookup (gw->users, user);
    for (ws_conn_t *conn = conns ? zlistx_first (conns) : NULL; conn;
         conn = zlistx_next (conns))
        if (conn->ready)
            s_subscribe (conn, room, after);
}

static void
s_unsubscribe_user (gateway_t *gw, const char *user, const char *room)
{
    zlistx_t *conns = zhashx_lookup (gw->users, user);
    for (ws_conn_t *conn = conns ? zlistx_first (conns) : NULL; conn;
         conn = zlistx_next (conns))
        s_unsubscribe (conn, room);
}

/* Membership events change who receives the room, before/after delivery. */
static void
s_membership (gateway_t *gw, const char *room, const char *type, int64_t seq,
              const char *payload, bool before)
{
    bool created = strcmp (type, "room.created") == 0;
    bool joined = strcmp (type, "room.member_joined") == 0;
    bool left = strcmp (type, "room.member_left") == 0;
    if (!(created || joined || left) || before == left)
        return;
    json_t *event = json_loads (payload, 0, NULL);
    if (created) {
        size_t i;
        json_t *user;
        json_array_foreach (json_object_get (json_object_get (event, "room_info"),
                                             "participants"), i, user)
            s_subscribe_user (gw, json_string_value (user), room, seq - 1);
    }
    else {
        const char *user = json_string_value (json_object_get (event, "user"));
        if (user && joined)
            s_subscribe_user (gw, user, room, seq - 1);
        else if (user)
            s_unsubscribe_user (gw, user, room);
    }
    json_decref (event);
}

/* Keeps a live event while the room replays. What is held counts against
   the queue bound too: a client too slow to finish its resume is cut off. */
static void
s_hold (ws_conn_t *conn, sub_t *sub, int64_t seq, frame_t *frame)
{
    if (!frame || conn->close_code)
        return;
    if (conn->queued + conn->held + frame->len > (size_t) conn->gw->config->ws_queue_max) {
        metrics_add (conn->gw->metrics, "ws_slow_consumers_closed_total", 1);
        log_info (conn->gw->name, "connection %s of user %s cannot keep up with its resume:"
                  " closing 1013", conn->id, conn->user);
        s_close (conn, 1013);
        return;
    }
    held_t *held = calloc (1, sizeof *held);
    if (!held)
        return;
    held->seq = seq;
    held->frame = frame;
    frame->refs++;
    conn->held += frame->len;
    zlistx_add_end (sub->held, held);
}

void
ws_on_room_event (gateway_t *gw, envelope_t *env)
{
    const char *type = json_string_value (json_object_get (env->body, "event"));
    const char *payload = json_string_value (json_object_get (env->body, "payload"));
    int64_t seq = json_integer_value (json_object_get (env->body, "seq"));
    if (!type || !payload)
        return;
    s_membership (gw, env->room, type, seq, payload, true);
    room_subs_t *room = zhashx_lookup (gw->rooms, env->room);
    frame_t *json = s_frame_new (payload, strlen (payload), false), *mp = NULL;
    /* enqueueing never unsubscribes (a close happens in a later callback):
       the array stays as it is during the walk */
    for (uint32_t i = 0; room && i < room->count; i++) {
        sub_t *sub = room->subs[i];
        ws_conn_t *conn = sub->conn;
        if (seq <= sub->seq)
            continue;              /* already had it: no duplicates */
        frame_t *frame = s_frame_for (conn, json, &mp);
        if (sub->resuming) {
            s_hold (conn, sub, seq, frame);
            continue;
        }
        s_enqueue (conn, frame);
        sub->seq = seq;
    }
    s_frame_unref (&json);
    s_frame_unref (&mp);
    s_membership (gw, env->room, type, seq, payload, false);
}

/* Delivers an ephemeral frame to one connection, unless it is `except`'s.
   A connection still loading its rooms gets it right after "ready" (its
   own presence going online, a notification, arrive in that window). */
static void
s_deliver_ephemeral (ws_conn_t *conn, frame_t *json, frame_t **mp, const char *except)
{
    if (except && strcmp (conn->user, except) == 0)
        return;
    frame_t *frame = s_frame_for (conn, json, mp);
    if (conn->ready)
        s_enqueue (conn, frame);
    else if (frame) {
        if (!conn->early)
            conn->early = zlistx_new ();
        if (zlistx_size (conn->early) < WS_BACKLOG_MAX) {
            frame->refs++;
            zlistx_add_end (conn->early, frame);
        }
    }
}

void
ws_on_room_ephemeral (gateway_t *gw, envelope_t *env)
{
    const char *payload = json_string_value (json_object_get (env->body, "payload"));
    const char *except = json_string_value (json_object_get (env->body, "except"));
    if (!payload)
        return;
    frame_t *json = s_frame_new (payload, strlen (payload), true), *mp = NULL;
    room_subs_t *room = zhashx_lookup (gw->rooms, env->room);
    for (uint32_t i = 0; room && i < room->count; i++)
        s_deliver_ephemeral (room->subs[i]->conn, json, &mp, except);
    s_frame_unref (&json);
    s_frame_unref (&mp);
}

void
ws_on_user_event (gateway_t *gw, envelope_t *env)
{
    const char *payload = json_string_value (json_object_get (env->body, "payload"));
    if (!payload)
        return;
    frame_t *json = s_frame_new (payload, strlen (payload), true), *mp = NULL;
    size_t i;
    json_t *user;
    json_array_foreach (json_object_get (env->body, "users"), i, user) {
        zlistx_t *conns = json_string_value (user)
                          ? zhashx_lookup (gw->users, json_string_value (user)) : NULL;
        for (ws_conn_t *conn = conns ? zlistx_first (conns) : NULL; conn;
             conn = zlistx_next (conns))
            s_deliver_ephemeral (conn, json, &mp, NULL);
    }
    s_frame_unref (&json);
    s_frame_unref (&mp);
}
