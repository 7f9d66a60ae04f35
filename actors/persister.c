/*  actors/persister.c — PostgreSQL, group commit, operation dispatch.
 *  State: one PGconn and its prepared-statement cache (op_conn_t). */
#include "persister.h"
#include "log.h"
#include "migrate.h"
#include "ops.h"
#include "ops_internal.h"

#define PERSISTER_PROBE_MS 1000

static const char s_unavailable[] =
    "The database is unavailable; the request was not applied.";

typedef struct {
    op_conn_t conn;
    bool healthy;              /* last probe or batch succeeded */
    bool reported;             /* health sent at least once     */
} persister_t;

/* --- connection ----------------------------------------------------------- */

/* PostgreSQL's notices go through Parley's log, not straight to stderr. */
static void
s_notice (void *arg, const char *message)
{
    (void) arg;
    char line[512];
    snprintf (line, sizeof line, "%s", message);
    line[strcspn (line, "\n")] = '\0';
    log_info ("persister", "PostgreSQL: %s", line);
}

static int
s_connect (actor_t *self, persister_t *p, char *error, size_t error_size)
{
    op_conn_reset (&p->conn);
    p->conn.pg = PQconnectdb (actor_config (self)->pg_dsn);
    if (PQstatus (p->conn.pg) != CONNECTION_OK) {
        snprintf (error, error_size, "cannot connect to PostgreSQL (pg_dsn): %s",
                  PQerrorMessage (p->conn.pg));
        char *nl = strchr (error, '\n');
        if (nl)
            *nl = '\0';
        PQfinish (p->conn.pg);
        p->conn.pg = NULL;
        return -1;
    }
    PQsetNoticeProcessor (p->conn.pg, s_notice, NULL);
    /* UTF-8 whatever the database's encoding: JSON text from PostgreSQL is
       passed through to clients unparsed (op_reply_text) */
    PGresult *res = PQexec (p->conn.pg, "SET TIME ZONE 'UTC'; SET client_encoding = 'UTF8'");
    PQclear (res);
    return 0;
}

static void
s_report_health (actor_t *self, persister_t *p, bool ok, const char *detail)
{
    if (actor_index (self) != 0 || (p->reported && p->healthy == ok))
        return;
    p->healthy = ok;
    p->reported = true;
    envelope_t *env = envelope_new (ENVELOPE_HEALTH);
    envelope_set_body (env, json_pack ("{s:s s:b s:s}", "store", "postgresql",
                                       "ok", ok, "detail", detail ? detail : ""));
    actor_send_gateways (self, env);
    envelope_destroy (&env);
    if (ok)
        log_info (actor_name (self), "PostgreSQL is reachable");
    else
        log_warn (actor_name (self), "PostgreSQL is unreachable: %s", detail);
}

static int
s_start (actor_t *self, char *error, size_t error_size)
{
    persister_t *p = calloc (1, sizeof *p);
    if (!p)
        return -1;
    op_conn_init (&p->conn);
    actor_set_state (self, p);
    if (s_connect (self, p, error, error_size) != 0)
        return -1;
    if (actor_index (self) == 0) {
        int applied = migrate_apply (p->conn.pg, error, error_size);
        if (applied < 0)
            return -1;
        log_info (actor_name (self), "schema up to date (%d migration(s) applied)", applied);
    }
    s_report_health (self, p, true, NULL);
    return 0;
}

static void
s_stop (actor_t *self)
{
    persister_t *p = actor_state (self);
    if (!p)
        return;
    op_conn_reset (&p->conn);
    op_conn_fini (&p->conn);
    free (p);
    actor_set_state (self, NULL);
}

/* Probes the connection when idle; reconnects when it broke. */
static void
s_tick (actor_t *self)
{
    persister_t *p = actor_state (self);
    char error[512] = "";
    if (!p->conn.pg || PQstatus (p->conn.pg) != CONNECTION_OK) {
        if (s_connect (self, p, error, sizeof error) != 0) {
            s_report_health (self, p, false, error);
            return;
        }
    }
    PGresult *res = PQexec (p->conn.pg, "SELECT 1");
    bool ok = PQresultStatus (res) == PGRES_TUPLES_OK;
    PQclear (res);
    if (!ok && PQstatus (p->conn.pg) != CONNECTION_OK) {
        snprintf (error, sizeof error, "%s", PQerrorMessage (p->conn.pg));
        op_conn_reset (&p->conn);
    }
    s_report_health (self, p, ok, error);
}

/* --- one batch ------------------------------------------------------------ */

static bool
s_exec_simple (persister_t *p, const char *sql)
{
    PGresult *res = PQexec (p->conn.pg, sql);
    bool ok = PQresultStatus (res) == PGRES_COMMAND_OK;
    PQclear (res);
    return ok;
}

/* COMMIT; true only when it committed (in a failed transaction PostgreSQL
   answers COMMIT with ROLLBACK, and no error). */
static bool
s_commit (persister_t *p)
{
    PGresult *res = PQexec (p->conn.pg, "COMMIT");
    bool ok = PQresultStatus (res) == PGRES_COMMAND_OK
              && strcmp (PQcmdStatus (res), "COMMIT") == 0;
    PQclear (res);
    return ok;
}

/* Fills op from a request envelope; false when the envelope is unusable. */
static bool
s_op_from_envelope (actor_t *self, persister_t *p, envelope_t *env, op_t *op)
{
    json_t *b = env->body;
    *op = (op_t) {
        .conn = &p->conn,
        .config = actor_config (self),
        .name = json_string_value (json_object_get (b, "op")),
        .method = json_string_value (json_object_get (b, "method")),
        .path = json_string_value (json_object_get (b, "path")),
        .base = json_string_value (json_object_get (b, "base")),
        .params = json_object_get (b, "params"),
        .query = json_object_get (b, "query"),
        .body = json_object_get (b, "body"),
        .auth = json_object_get (b, "auth"),
        .internal = json_object_get (b, "internal"),
        .status = 500,
    };
    if (!op->base)
        op->base = "";
    if (json_is_null (op->body))
        op->body = NULL;
    return op->name && op->method && op->path;
}

/* Resolves the caller from a JWT subject or a session cookie. */
static int
s_authenticate (op_t *op, const op_def_t *def)
{
    const char *user = json_string_value (json_object_get (op->auth, "user"));
    const char *session = json_string_value (json_object_get (op->auth, "session"));
    if (user && op_is_uuid (user))
        snprintf (op->user_id, sizeof op->user_id, "%s", user);
    else if (session) {
        const char *params[] = { session };
        int found = op_query_text (op,
            "SELECT user_id FROM sessions WHERE id = $1 AND revoked_at IS NULL"
            " AND expires_at > now()", 1, params, op->user_id, sizeof op->user_id);
        if (found < 0)
            return -1;
    }
    if (op->user_id[0] && op_is_service (op)) {
        /* the inject names any id: it must be a user (a JWT's is) */
        const char *params[] = { op->user_id };
        char found[8];
        int rc = op_query_text (op, "SELECT 'yes' FROM users WHERE id = $1::uuid", 1,
                                params, found, sizeof found);
        if (rc <= 0) {
            if (rc == 0)
                op_detail (op, 404, "Unknown user.");
            return rc;
        }
    }
    if (!op->user_id[0] && !def->anonymous) {
        op_detail (op, 401, session ? "Invalid session."
                                    : "Authentication credentials were not provided.");
        op_header (op, "WWW-Authenticate", "Bearer realm=\"api\"");
    }
    return 0;
}

/* Operations that write nothing, emit no event and take no lock (each was
   read for that): the persister runs them outside the batch's transaction,
   without a savepoint, and answers them at once. The gateway sends GETs to
   any persister (gateway/http.c), so a page read waits for no room's
   writes. */
static const char *const s_read_only[] = {
    "rooms.list", "rooms.retrieve", "rooms.messages", "rooms.events",
    "messages.list", "messages.retrieve", "messages.history", "messages.thread",
    "reads.list", "reads.retrieve", "reactions.list", "reactions.retrieve",
    "auth.me", "users.list", "notifications.list", "ws.rooms", NULL
};

static bool
s_is_read_only (const char *name)
{
    for (int i = 0; s_read_only[i]; i++)
        if (strcmp (s_read_only[i], name) == 0)
            return true;
    return false;
}

/* Runs a read-only operation (s_read_only) outside any transaction:
   each statement sees what was committed when it started, as under READ
   COMMITTED inside one, and a failed statement spoils nothing else. */
static void
s_run_read (persister_t *p, op_t *op, const op_def_t *def)
{
    int rc = s_authenticate (op, def);
    if (rc == 0 && op->status == 500)
        rc = def->fn (op);
    if (rc < 0) {
        log_error ("persister", "%s failed: %s", op->name, PQerrorMessage (p->conn.pg));
        op_detail (op, 503, s_unavailable);
    }
}

/* Forgets what an operation answered and recorded, for a fresh run. */
static void
s_op_clear (op_t *op)
{
    op_reply (op, 500, NULL);
    json_decref (op->headers);
    op->headers = NULL;
    json_decref (op->events);
    op->events = NULL;
    json_decref (op->user_events);
    op->user_events = NULL;
    op->user_id[0] = '\0';
}

/* Runs one operation inside the batch's transaction, under the savepoint
   "op". The savepoint is clean, or holds the changes of the operations
   before this one with their release pending (conn.renew_savepoint: the
   RELEASE SAVEPOINT op and the fresh SAVEPOINT op go with this operation's
   first statement, in the same round trip — op_exec). When the operation
   succeeds its changes stand and the renewal is pending again. When it
   fails (status >= 400 or a database error) its changes are rolled back
   to the savepoint, which then serves the next operation clean; an
   operation that failed before any statement changed nothing and leaves
   the renewal pending. A unique violation the operation did not expect (a
   concurrent writer on another connection committed the same key first: a
   message's client_id in another room) runs it once more from the
   savepoint: it now sees the winner's row. */
static void
s_run_op (persister_t *p, op_t *op)
{
    const op_def_t *def = ops_lookup (op->name);
    if (!def) {
        op_not_found (op);
        return;
    }
    for (int attempt = 0;; attempt++) {
        int rc = s_authenticate (op, def);
        if (rc == 0 && op->status == 500)
            rc = def->fn (op);
        if (rc == 0 && op->status < 400) {
            p->conn.renew_savepoint = true;
            return;
        }
        bool again = rc < 0 && attempt == 0 && strcmp (op_sqlstate (op), "23505") == 0;
        if (rc < 0 && !again) {
            log_error ("persister", "%s failed: %s", op->name, PQerrorMessage (p->conn.pg));
            op_detail (op, 503, s_unavailable);
        }
        json_decref (op->events);
        op->events = NULL;
        json_decref (op->user_events);
        op->user_events = NULL;
        if (p->conn.renew_savepoint)
            return;                     /* no statement ran: nothing to undo */
        if (!s_exec_simple (p, "ROLLBACK TO SAVEPOINT op")) {
            if (op->status < 400)
                op_detail (op, 503, s_unavailable);
            return;
        }
        if (!again)
            return;
        log_info ("persister", "%s: a concurrent writer took the same key; running it again",
                  op->name);
        s_op_clear (op);
    }
}

/* Sends the committed events of one op to the room shards (and the
   ephemeral ones to the gateways, which own the sockets). */
static void
s_send_events (actor_t *self, op_t *op)
{
    int shards = actor_shard_count (actor_config (self), "room");
    size_t i;
    json_t *event;
    json_array_foreach (op->events, i, event) {
        const char *room = json_string_value (json_object_get (event, "room"));
        envelope_t *env = envelope_new (ENVELOPE_ROOM_EVENT);
        snprintf (env->room, sizeof env->room, "%s", room);
        char *payload = json_dumps (json_object_get (event, "payload"), JSON_COMPACT);
        envelope_set_body (env, json_pack ("{s:O s:O s:s}",
            "seq", json_object_get (event, "seq"),
            "event", json_object_get (event, "type"), "payload", payload));
        free (payload);
        if (json_object_get (event, "room_type"))
            json_object_set (env->body, "room_type", json_object_get (event, "room_type"));
        char to[48];
        mailbox_shard_name (to, sizeof to, "room", room, shards);
        actor_send (self, to, env);
        envelope_destroy (&env);
    }
    json_array_foreach (op->user_events, i, event) {
        envelope_t *env = envelope_new (ENVELOPE_USER_EVENT);
        char *payload = json_dumps (json_object_get (event, "payload"), JSON_COMPACT);
        envelope_set_body (env, json_pack ("{s:O s:s s:O}",
            "event", json_object_get (event, "type"), "payload", payload,
            "users", json_object_get (event, "users")));
        free (payload);
        if (json_object_get (event, "push"))
            json_object_set (env->body, "push", json_object_get (event, "push"));
        actor_send_gateways (self, env);
        actor_send (self, "bus.0", env);       /* user.<id> and push.<id> */
        envelope_destroy (&env);
    }
}

static void
s_send_response (actor_t *self, envelope_t *request, op_t *op)
{
    envelope_t *env = envelope_new (ENVELOPE_HTTP_RESPONSE);
    snprintf (env->re, sizeof env->re, "%s", request->id);
    json_t *body = json_object ();
    json_object_set_new (body, "status", json_integer (op->status));
    if (op->response_text)     /* rendered by PostgreSQL (UTF-8): as it is */
        json_object_set_new (body, "json", json_stringn_nocheck (op->response_text,
                                                                  op->response_len));
    else if (op->response) {
        char *text = json_dumps (op->response, JSON_COMPACT | JSON_ENCODE_ANY);
        json_object_set_new (body, "json", text ? json_string_nocheck (text)
                                                : json_string ("null"));
        free (text);
    }
    if (op->headers)
        json_object_set (body, "headers", op->headers);
    envelope_set_body (env, body);
    if (request->from[0])
        actor_send (self, request->from, env);
    envelope_destroy (&env);
}

static void
s_op_free (op_t *op)
{
    json_decref (op->response);
    free (op->response_text);
    json_decref (op->headers);
    json_decref (op->events);
    json_decref (op->user_events);
}

/* --- one writer per room ------------------------------------------------- */

/* Operations that change a room's timeline but name a message or reaction,
   not the room: the gateway cannot tell their room, so it may pick any
   persister. Each is forwarded to the persister that owns the room, so all
   of a room's events are committed by one actor and reach the room shard in
   seq order. (`key` is where the id comes from: the path or the body.) */
static const struct {
    const char *op;
    const char *key;
    const char *sql;
} s_room_of[] = {
    { "messages.update",  "params", "SELECT room_id FROM messages WHERE id = $1::uuid" },
    { "messages.delete",  "params", "SELECT room_id FROM messages WHERE id = $1::uuid" },
    { "messages.pin",     "params", "SELECT room_id FROM messages WHERE id = $1::uuid" },
    { "messages.unpin",   "params", "SELECT room_id FROM messages WHERE id = $1::uuid" },
    { "reactions.create", "body",   "SELECT room_id FROM messages WHERE id = $1::uuid" },
    { "reactions.remove", "body",   "SELECT room_id FROM messages WHERE id = $1::uuid" },
    { "reactions.update", "params", "SELECT m.room_id FROM reactions r JOIN messages m"
                                    " ON m.id = r.message_id WHERE r.id = $1::uuid" },
    { "reactions.delete", "params", "SELECT m.room_id FROM reactions r JOIN messages m"
                                    " ON m.id = r.message_id WHERE r.id = $1::uuid" },
    { NULL, NULL, NULL }
};

/* Forwards `env` to the persister owning its room and returns true, or
   returns false when it runs here. */
static bool
s_forward_to_owner (actor_t *self, persister_t *p, envelope_t *env)
{
    const char *op = json_string_value (json_object_get (env->body, "op"));
    int workers = actor_shard_count (actor_config (self), "persister");
    if (!op || workers < 2 || !p->conn.pg)
        return false;
    for (int i = 0; s_room_of[i].op; i++) {
        if (strcmp (s_room_of[i].op, op) != 0)
            continue;
        json_t *from = json_object_get (env->body, strcmp (s_room_of[i].key, "params") == 0
                                                       ? "params" : "body");
        const char *id = json_string_value (json_object_get (from, strcmp (s_room_of[i].key,
                                                             "params") == 0 ? "id" : "message"));
        if (!id || !op_is_uuid (id))
            return false;
        const char *params[] = { id };
        PGresult *res = PQexecParams (p->conn.pg, s_room_of[i].sql, 1, NULL, params, NULL,
                                      NULL, 0);
        char owner[48] = "";
        if (PQresultStatus (res) == PGRES_TUPLES_OK && PQntuples (res) == 1)
            mailbox_shard_name (owner, sizeof owner, "persister", PQgetvalue (res, 0, 0),
                                workers);
        PQclear (res);
        if (!owner[0] || strcmp (owner, actor_name (self)) == 0)
            return false;
        actor_figure_add (self, "forwarded", 1);
        return actor_send (self, owner, env) == 0;
    }
    return false;
}

/* Runs a batch's writes in one transaction, one savepoint per operation at
   no round trip of its own (BEGIN with the first SAVEPOINT, each RELEASE
   with the next SAVEPOINT sent with the next operation's first statement,
   a rolled-back savepoint serving again, COMMIT releasing the last); then,
   only after COMMIT, sends their events and answers. */
static void
s_commit_writes (actor_t *self, persister_t *p, envelope_t **batch, op_t *ops,
                 const bool *usable, size_t count, bool connected)
{
    bool in_tx = connected && PQstatus (p->conn.pg) == CONNECTION_OK
                 && s_exec_simple (p, "BEGIN; SAVEPOINT op");
    p->conn.renew_savepoint = false;
    for (size_t i = 0; i < count; i++) {
        if (!usable[i])
            continue;
        if (in_tx)
            s_run_op (p, &ops[i]);
        else
            op_detail (&ops[i], 503, s_unavailable);
    }
    p->conn.renew_savepoint = false;
    bool committed = in_tx && s_commit (p);
    if (in_tx && !committed)
        log_error (actor_name (self), "COMMIT failed: %s", PQerrorMessage (p->conn.pg));
    for (size_t i = 0; i < count; i++) {
        if (!usable[i])
            continue;
        if (!committed && ops[i].status < 400)
            op_detail (&ops[i], 503, s_unavailable);
        if (committed)
            s_send_events (self, &ops[i]);
        s_send_response (self, batch[i], &ops[i]);
        s_op_free (&ops[i]);
    }
    actor_figure_add (self, "batches", 1);
}

static void
s_handle (actor_t *self, envelope_t **batch, size_t count)
{
    persister_t *p = actor_state (self);
    op_t ops[count];
    bool usable[count];
    bool connected = p->conn.pg && PQstatus (p->conn.pg) == CONNECTION_OK;
    size_t writes = 0;
    for (size_t i = 0; i < count; i++) {
        usable[i] = batch[i]->type == ENVELOPE_HTTP_REQUEST
                    && !s_forward_to_owner (self, p, batch[i])
                    && s_op_from_envelope (self, p, batch[i], &ops[i]);
        if (!usable[i])
            continue;
        /* reads first, outside the transaction, answered at once: they
           wait for no write and no COMMIT (they see only committed rows) */
        const op_def_t *def = ops_lookup (ops[i].name);
        if (!def || !s_is_read_only (def->name)) {
            writes++;
            continue;
        }
        if (connected)
            s_run_read (p, &ops[i], def);
        else
            op_detail (&ops[i], 503, s_unavailable);
        s_send_response (self, batch[i], &ops[i]);
        s_op_free (&ops[i]);
        usable[i] = false;
    }
    if (writes)
        s_commit_writes (self, p, batch, ops, usable, count, connected);
    if (p->conn.pg && PQstatus (p->conn.pg) != CONNECTION_OK) {
        op_conn_reset (&p->conn);
        s_report_health (self, p, false, "connection lost");
    }
}

const actor_def_t persister_actor = {
    .kind = "persister",
    .batch_from_config = true,
    .tick_ms = PERSISTER_PROBE_MS,
    .start = s_start,
    .handle = s_handle,
    .tick = s_tick,
    .stop = s_stop,
};
