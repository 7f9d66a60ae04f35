/*  actors/ops/inject.c — the operations only the ZeroMQ inject reaches
 *  (API.md §4; the bus maps the other commands to REST operations).
 *
 *  No route leads here from REST: the bus sends these as HTTP_REQUEST
 *  envelopes with auth {"user", "service": true} (the persister checks the
 *  user exists).
 *
 *  - inject.delta: checks one streaming chunk (message.delta) and answers
 *    200 with the ephemeral event the bus then delivers and publishes. The
 *    acting user must participate in the room, which must be an `ai` room
 *    (400 naming `room` otherwise) that is not archived (403); an invisible
 *    room is 404. Nothing is written.
 *  - inject.notify: a `system` notification for the user (the recipient):
 *    title (1-255 characters) and text (0-10 000), optional room and
 *    message, each visible to the recipient (404 otherwise; a message
 *    outside the given room is 400). 201 with the notification, the
 *    `notification` event for the user's sockets and user.<id>, and a push
 *    envelope on push.<id> when their push_enabled (then pushed_at is set).
 *    System notifications ignore mentions_only and muted rooms: a trusted
 *    service decided to tell this user. A second notify about the same
 *    message for the same user answers 200 with the first (the unique index
 *    of 001_core.sql) and sends nothing.
 *  - inject.assistant: the assistant user's id (config assistant_username),
 *    created when missing, as rooms.create does for ai rooms; the bus asks
 *    at start (API.md §2.1: "created at first start").
 */
#include "ops.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define S_TITLE_MAX  255
#define S_TEXT_MAX   10000
#define S_STREAM_MAX 255

static size_t
s_chars (const char *text)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        n += (*p & 0xC0) != 0x80;
    return n;
}

/* A required string of `min`..`max` characters. 1 ok, 0 answered 400. */
static int
s_body_text (op_t *op, const char *field, size_t min, size_t max, const char **out)
{
    int rc = op_body_string (op, field, out);
    if (rc == 0)
        op_field_error (op, field, "This field is required.");
    if (rc <= 0)
        return 0;
    size_t n = s_chars (*out);
    if (n < min || n > max) {
        char message[64];
        snprintf (message, sizeof message, "Must be %zu-%zu characters.", min, max);
        op_field_error (op, field, message);
        return 0;
    }
    return 1;
}

/* --- inject.delta --------------------------------------------------------- */

/* The room as the acting user may stream into it: 1 ok, 0 answered. */
static int
s_delta_room (op_t *op, const char *room, char *ts, size_t ts_size)
{
    const char *params[] = { room, op->user_id };
    PGresult *res = op_exec (op,
        "SELECT r.room_type, r.is_archived, parley_ts (clock_timestamp ()) FROM rooms r"
        "  JOIN room_participants p ON p.room_id = r.id AND p.user_id = $2::uuid"
        " WHERE r.id = $1::uuid", 2, params);
    if (!res)
        return -1;
    int rc = 1;
    if (PQntuples (res) == 0) {
        op_not_found (op);
        rc = 0;
    }
    else if (strcmp (PQgetvalue (res, 0, 0), "ai") != 0) {
        op_field_error (op, "room", "message.delta streams into ai rooms only.");
        rc = 0;
    }
    else if (PQgetvalue (res, 0, 1)[0] == 't') {
        op_detail (op, 403, "This room is archived.");
        rc = 0;
    }
    else
        snprintf (ts, ts_size, "%s", PQgetvalue (res, 0, 2));
    PQclear (res);
    return rc;
}

/* {room, stream_id, seq_in_stream, text} -> 200 the message.delta event. */
static int
s_delta (op_t *op)
{
    const char *room, *stream_id, *text;
    long long seq = -1;
    int rc = op_body_uuid (op, "room", &room);
    if (rc == 0)
        op_field_error (op, "room", "This field is required.");
    if (rc <= 0 || !s_body_text (op, "stream_id", 1, S_STREAM_MAX, &stream_id)
        || !s_body_text (op, "text", 0, S_TEXT_MAX, &text))
        return 0;
    rc = op_body_int (op, "seq_in_stream", &seq);
    if (rc <= 0 || seq < 0) {
        if (rc >= 0)
            op_field_error (op, "seq_in_stream", "A non-negative integer is required.");
        return 0;
    }
    char ts[40] = "";
    rc = s_delta_room (op, room, ts, sizeof ts);
    if (rc <= 0)
        return rc;
    op_reply (op, 200, json_pack ("{s:s s:s s:s s:I s:s s:s}", "type", "message.delta",
                                  "room", room, "stream_id", stream_id,
                                  "seq_in_stream", (json_int_t) seq, "text", text,
                                  "ts", ts));
    return 0;
}

/* --- inject.notify -------------------------------------------------------- */

/* Checks room and message against the recipient; fills `room` from the
   message when only it was given. 1 ok, 0 answered, -1 failed. */
static int
s_notify_refs (op_t *op, const char **room, const char *message, char *room_buf,
               size_t room_size)
{
    op_access_t access;
    if (message) {
        if (op_message_access (op, message, false, &access) < 0)
            return -1;
        if (access.role == OP_ROLE_NONE) {
            op_not_found (op);
            return 0;
        }
        if (*room && strcasecmp (*room, access.room) != 0) {
            op_field_error (op, "message", "The message is not in this room.");
            return 0;
        }
        snprintf (room_buf, room_size, "%s", access.room);
        *room = room_buf;
        return 1;
    }
    if (!*room)
        return 1;
    if (op_room_access (op, *room, false, &access) < 0)
        return -1;
    if (access.role == OP_ROLE_NONE) {
        op_not_found (op);
        return 0;
    }
    return 1;
}

#define S_NOTIFY_SQL                                                               \
    "WITH s AS (SELECT coalesce ((SELECT push_enabled FROM notification_settings"   \
    "                              WHERE user_id = $1::uuid), true) AS push),"      \
    " n AS (INSERT INTO notifications (user_id, kind, room_id, message_id, title,"  \
    "                                  text, pushed_at)"                            \
    "       SELECT $1::uuid, 'system', $2::uuid, $3::uuid, $4, $5,"                 \
    "              CASE WHEN s.push THEN now () END FROM s"                         \
    "       ON CONFLICT (user_id, message_id, kind) WHERE message_id IS NOT NULL"    \
    "       DO NOTHING RETURNING *)"                                                \
    "SELECT jsonb_build_object ('notification', parley_notification_json (n),"      \
    "                           'push', n.pushed_at IS NOT NULL,"                   \
    "                           'ts', parley_ts (now ())) FROM n"

/* The recipient's earlier system notification about `message`: 200. */
static int
s_notify_existing (op_t *op, const char *message)
{
    const char *params[] = { op->user_id, message };
    json_t *found = op_query_json (op,
        "SELECT parley_notification_json (n) FROM notifications n"
        " WHERE n.user_id = $1::uuid AND n.message_id = $2::uuid AND n.kind = 'system'",
        2, params);
    if (!found)
        return -1;
    op_reply (op, 200, found);
    return 0;
}

/* {title, text, room?, message?} for `user` -> 201 the notification. */
static int
s_notify (op_t *op)
{
    const char *title, *text, *room = NULL, *message = NULL;
    char room_buf[40];
    if (!s_body_text (op, "title", 1, S_TITLE_MAX, &title)
        || !s_body_text (op, "text", 0, S_TEXT_MAX, &text)
        || op_body_uuid (op, "room", &room) < 0
        || op_body_uuid (op, "message", &message) < 0)
        return 0;
    int rc = s_notify_refs (op, &room, message, room_buf, sizeof room_buf);
    if (rc <= 0)
        return rc;
    const char *params[] = { op->user_id, room, message, title, text };
    json_t *made = op_query_json (op, S_NOTIFY_SQL, 5, params);
    if (!made)
        return -1;
    if (json_is_null (made)) {            /* the same message again */
        json_decref (made);
        return s_notify_existing (op, message);
    }
    json_t *notification = json_object_get (made, "notification");
    op_reply (op, 201, json_incref (notification));
    op_user_event (op, json_pack ("[s]", op->user_id), "notification",
                   json_pack ("{s:s s:O s:O}", "type", "notification",
                              "ts", json_object_get (made, "ts"),
                              "notification", notification));
    if (json_is_true (json_object_get (made, "push")))
        op_user_event_push (op, json_pack ("[s]", op->user_id));
    json_decref (made);
    return 0;
}

/* --- inject.assistant ----------------------------------------------------- */

/* -> 200 {"id"} of the assistant user, created when missing. */
static int
s_assistant (op_t *op)
{
    const char *params[] = { op->config->assistant_username };
    if (op_command (op,
            "INSERT INTO users (username, display_name, password_hash)"
            " VALUES ($1, 'Assistant', '!') ON CONFLICT (username) DO NOTHING",
            1, params) < 0)
        return -1;
    char id[40];
    if (op_query_text (op, "SELECT id FROM users WHERE username = $1", 1, params, id,
                       sizeof id) != 1)
        return -1;
    op_reply (op, 200, json_pack ("{s:s}", "id", id));
    return 0;
}

const op_def_t ops_inject[] = {
    { "inject.delta",     s_delta,     false },
    { "inject.notify",    s_notify,    false },
    { "inject.assistant", s_assistant, true },
    { NULL, NULL, false }
};
