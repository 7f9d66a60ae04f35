/*  actors/ops/ws.c — operations behind WebSocket connections (API.md §3):
 *  the rooms a new connection subscribes to, resume from the room event log,
 *  reaction.remove by emoji, and live presence as connections come and go
 *  (called by the user shards, never routed from REST). */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#define WS_RESUME_MAX_BEHIND 5000          /* API.md §3: resume.truncated   */
#define WS_RESUME_BUDGET     (512 * 1024)  /* bytes of events per answer    */
#define WS_RESUME_BUDGET_MIN (4 * 1024)
#define WS_RESUME_BATCH      "500"

/* {rooms: {room id: last_seq}} for the caller's rooms. */
static int
s_rooms (op_t *op)
{
    const char *params[] = { op->user_id };
    json_t *rooms = op_query_json (op,
        "SELECT coalesce(json_object_agg(r.id, r.last_seq), '{}'::json)"
        "  FROM room_participants p JOIN rooms r ON r.id = p.room_id"
        " WHERE p.user_id = $1::uuid", 1, params);
    if (!rooms)
        return -1;
    op_reply (op, 200, json_pack ("{s:o}", "rooms", rooms));
    return 0;
}

/* Replays one room after `after`: events up to the byte budget, or a
   truncation notice past WS_RESUME_MAX_BEHIND. */
static int
s_resume_room (op_t *op, const char *room, long long after, size_t *budget, json_t *out)
{
    char last_text[32] = "";
    const char *params[] = { room, op->user_id };
    int found = op_query_text (op,
        "SELECT r.last_seq FROM rooms r JOIN room_participants p ON p.room_id = r.id"
        " WHERE r.id = $1::uuid AND p.user_id = $2::uuid", 2, params, last_text,
        sizeof last_text);
    if (found < 0)
        return -1;
    if (!found) {
        json_object_set_new (out, room, json_pack ("{s:[] s:s}", "events", "error", "not_found"));
        return 0;
    }
    long long last = atoll (last_text);
    if (last - after > WS_RESUME_MAX_BEHIND) {
        json_object_set_new (out, room, json_pack ("{s:[] s:{s:I s:I}}", "events",
            "truncated", "from_seq", (json_int_t) after + 1, "to_seq", (json_int_t) last));
        return 0;
    }
    char after_text[32];
    snprintf (after_text, sizeof after_text, "%lld", after);
    const char *q[] = { room, after_text };
    PGresult *res = op_exec (op,
        "SELECT payload::text FROM room_events WHERE room_id = $1::uuid AND seq > $2::bigint"
        " ORDER BY seq LIMIT " WS_RESUME_BATCH, 2, q);
    if (!res)
        return -1;
    json_t *events = json_array ();
    int rows = PQntuples (res), used = 0;
    for (; used < rows && (*budget > 0 || used == 0); used++) {
        size_t len = (size_t) PQgetlength (res, used, 0);
        json_array_append_new (events, json_loads (PQgetvalue (res, used, 0), 0, NULL));
        *budget = len > *budget ? 0 : *budget - len;
    }
    bool more = used < rows || rows == atoi (WS_RESUME_BATCH);
    PQclear (res);
    json_object_set_new (out, room, json_pack ("{s:o s:b}", "events", events, "more", more));
    return 0;
}

/* resume {rooms: {room id: last_seq}, budget?} -> {rooms: {room id: {events,
   more?, truncated?, error?}}}; the gateway asks again while `more`. The
   gateway may ask for smaller pages (`budget` bytes, e.g. to stay within a
   small ws_queue_max); never larger than WS_RESUME_BUDGET. */
static int
s_resume (op_t *op)
{
    json_t *rooms = op->body ? json_object_get (op->body, "rooms") : NULL;
    if (!json_is_object (rooms)) {
        op_field_error (op, "rooms", "Expected a map of room id to last seq.");
        return 0;
    }
    json_t *out = json_object ();
    json_int_t asked = json_integer_value (json_object_get (op->body, "budget"));
    size_t budget = asked >= WS_RESUME_BUDGET_MIN && asked < WS_RESUME_BUDGET
                    ? (size_t) asked : WS_RESUME_BUDGET;
    const char *room;
    json_t *last;
    json_object_foreach (rooms, room, last) {
        if (!op_is_uuid (room) || !json_is_integer (last) || json_integer_value (last) < 0) {
            json_decref (out);
            op_field_error (op, "rooms", "Expected a map of room id to last seq.");
            return 0;
        }
        if (s_resume_room (op, room, json_integer_value (last), &budget, out) != 0) {
            json_decref (out);
            return -1;
        }
    }
    op_reply (op, 200, json_pack ("{s:o}", "rooms", out));
    return 0;
}

/* reaction.remove {message, emoji}: deletes the caller's reaction. */
static int
s_reaction_remove (op_t *op)
{
    const char *message = NULL, *emoji = NULL;
    if (op_body_uuid (op, "message", &message) < 0 || op_body_string (op, "emoji", &emoji) < 0)
        return 0;
    if (!message || !emoji) {
        op_field_error (op, message ? "emoji" : "message", "This field is required.");
        return 0;
    }
    const char *params[] = { message, op->user_id, emoji };
    json_t *event = op_query_json (op,
        "WITH r AS (DELETE FROM reactions WHERE message_id = $1::uuid"
        "           AND user_id = $2::uuid AND emoji = $3 RETURNING *)"
        " SELECT parley_reaction_event(r, 'reaction.removed', $2::uuid) FROM r", 3, params);
    if (!event)
        return -1;
    if (json_is_null (event)) {
        json_decref (event);
        op_not_found (op);
        return 0;
    }
    op_room_event (op, json_string_value (json_object_get (event, "room")),
                   json_integer_value (json_object_get (event, "seq")), "reaction.removed",
                   json_incref (event));
    op_reply (op, 200, json_pack ("{s:O}", "reaction", json_object_get (event, "reaction")));
    json_decref (event);
    return 0;
}

int
ops_presence_broadcast (op_t *op)
{
    const char *params[] = { op->user_id };
    json_t *result = op_query_json (op,
        "SELECT json_build_object("
        "  'presence', parley_presence_json(p, NULL),"
        "  'users', (SELECT json_agg(DISTINCT o.user_id) FROM room_participants m"
        "             JOIN room_participants o ON o.room_id = m.room_id"
        "            WHERE m.user_id = p.user_id),"
        "  'ts', parley_ts(now()))"
        "  FROM presence p WHERE p.user_id = $1::uuid", 1, params);
    if (!result)
        return -1;
    json_t *users = json_object_get (result, "users");
    if (!json_is_array (users) || json_array_size (users) == 0)
        users = json_pack ("[s]", op->user_id);
    else
        json_incref (users);
    op_user_event (op, users, "presence",
                   json_pack ("{s:s s:O s:O}", "type", "presence", "ts",
                              json_object_get (result, "ts"), "presence",
                              json_object_get (result, "presence")));
    json_decref (result);
    return 0;
}

/* The user's first connection opened: offline becomes online. */
static int
s_presence_online (op_t *op)
{
    const char *params[] = { op->user_id };
    long changed = op_command (op,
        "UPDATE presence SET online_since = coalesce(online_since, now())"
        " WHERE user_id = $1::uuid", 1, params);
    if (changed < 0)
        return -1;
    PGresult *res = op_exec (op,
        "SELECT parley_presence_set($1::uuid, 'online', NULL, NULL)"
        "  FROM presence WHERE user_id = $1::uuid AND status = 'offline'", 1, params);
    if (!res)
        return -1;
    bool went_online = PQntuples (res) > 0;
    PQclear (res);
    op_reply (op, 200, json_pack ("{s:b}", "changed", went_online));
    return went_online ? ops_presence_broadcast (op) : 0;
}

/* The user's last connection has been gone for the grace period. */
static int
s_presence_offline (op_t *op)
{
    const char *params[] = { op->user_id };
    if (op_command (op,
            "UPDATE presence SET total_online_time = total_online_time"
            "   + coalesce(extract(epoch FROM now() - online_since)::bigint, 0),"
            "   online_since = NULL WHERE user_id = $1::uuid", 1, params) < 0)
        return -1;
    PGresult *res = op_exec (op,
        "SELECT parley_presence_set($1::uuid, 'offline', NULL, NULL) FROM presence"
        " WHERE user_id = $1::uuid AND status IN ('online', 'away', 'busy')", 1, params);
    if (!res)
        return -1;
    bool went_offline = PQntuples (res) > 0;
    PQclear (res);
    op_reply (op, 200, json_pack ("{s:b}", "changed", went_offline));
    return went_offline ? ops_presence_broadcast (op) : 0;
}

const op_def_t ops_ws[] = {
    { "ws.rooms", s_rooms, false },
    { "ws.resume", s_resume, false },
    { "reactions.remove", s_reaction_remove, false },
    { "presence.online", s_presence_online, false },
    { "presence.offline", s_presence_offline, false },
    { NULL, NULL, false }
};
