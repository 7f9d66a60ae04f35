/*  actors/ops/receipts.c — read receipts (API.md §2.3) and reactions
 *  (§2.4): reads.* and reactions.*.
 *
 *  A receipt or reaction is visible when its message is (op_message_access:
 *  the caller's rooms and public group rooms); anything else is 404. Only
 *  participants create them (403 for a visible public room), and only the
 *  owner changes or deletes one (403 for others who can see it).
 *
 *  Receipts raise room_participants.last_read_seq by trigger (001_core.sql)
 *  and are announced as the ephemeral `read.receipt` user event to the
 *  room's participants. Reactions are room events (reaction.added /
 *  reaction.removed, parley_reaction_event) written under the room's row
 *  lock, taken first as for every room write (see ops.h).
 *
 *  Choices where API.md is silent (see docs/messages.md):
 *  - Lists without ?message= or ?room= cover the caller's rooms; naming an
 *    invisible message or room answers 404. Receipts are listed oldest
 *    first (read_at), reactions oldest first (created_at).
 *  - A receipt may be created for any visible message (a tombstone too),
 *    also in an archived room; no room event.
 *  - Reactions: not on deleted messages (400) nor in archived rooms (403).
 *    PUT needs `emoji`, PATCH without it changes nothing; a new emoji is
 *    reaction.removed (old) then reaction.added (new), same id, created_at
 *    reset; an emoji the caller already has on that message is 400.
 *    Deleting one's own reaction works after leaving a public room;
 *    changing it needs participation.
 */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#define S_EMOJI_MAX_BYTES 64

/* Loads the receipt or reaction `id` (sql: message_id, user_id[, emoji]
   of row $1) and the caller's access to its message (`lock`: locking the
   room, for writers). 1 visible, 0 answered 404, -1 failed. */
static int
s_load (op_t *op, const char *sql, bool lock, op_access_t *access, char owner[40],
        char *emoji)
{
    const char *params[] = { op_param (op, "id") };
    PGresult *res = op_exec (op, sql, 1, params);
    if (!res)
        return -1;
    char message[40] = "";
    if (PQntuples (res) == 1) {
        snprintf (message, sizeof message, "%s", PQgetvalue (res, 0, 0));
        snprintf (owner, 40, "%s", PQgetvalue (res, 0, 1));
        if (emoji)
            snprintf (emoji, S_EMOJI_MAX_BYTES + 1, "%s", PQgetvalue (res, 0, 2));
    }
    PQclear (res);
    if (!message[0]) {
        op_not_found (op);
        return 0;
    }
    if (op_message_access (op, message, lock, access) < 0)
        return -1;
    if (access->role == OP_ROLE_NONE) {
        op_not_found (op);
        return 0;
    }
    return 1;
}

/* The message named by the body (required): 1 found and the caller may
   write to its room (participant), 0 answered (400/403/404), -1 failed. */
static int
s_body_message (op_t *op, bool lock, const char **message, op_access_t *access)
{
    int rc = op_body_uuid (op, "message", message);
    if (rc == 0)
        op_field_error (op, "message", "This field is required.");
    if (rc <= 0)
        return 0;
    if (op_message_access (op, *message, lock, access) < 0)
        return -1;
    if (access->role == OP_ROLE_NONE) {
        op_not_found (op);
        return 0;
    }
    if (access->role == OP_ROLE_VISITOR) {
        op_detail (op, 403, "You must join this room first.");
        return 0;
    }
    return 1;
}

/* Answers `status` with the single JSON value `sql` ($1 = id) returns. */
static int
s_reply_json (op_t *op, int status, const char *sql, const char *id)
{
    const char *params[] = { id };
    int rc = op_query_reply (op, status, sql, 1, params);   /* the text as it is */
    if (rc == 0)
        op_reply (op, status, json_null ());
    return rc < 0 ? -1 : 0;
}

/* A list's conditions (WHERE text) and parameters; $1 is the caller. */
typedef struct {
    char where[512];
    const char *params[8];
    int n;
} s_filter_t;

static void
s_filter_add (s_filter_t *f, const char *condition, const char *value)
{
    f->params[f->n++] = value;
    size_t used = strlen (f->where);
    snprintf (f->where + used, sizeof f->where - used, condition, f->n);
}

/* ?message= and ?room= (404 when invisible), else the caller's rooms;
   ?user=. The row is `x`, its message `m`. 1 ok, 0 answered, -1 failed. */
static int
s_scope (op_t *op, s_filter_t *f)
{
    const char *message = NULL, *room = NULL, *user = NULL;
    if (op_query_uuid (op, "message", &message) < 0 || op_query_uuid (op, "room", &room) < 0
        || op_query_uuid (op, "user", &user) < 0)
        return 0;
    op_access_t access;
    if (message) {
        if (op_message_access (op, message, false, &access) < 0)
            return -1;
        if (access.role == OP_ROLE_NONE) {
            op_not_found (op);
            return 0;
        }
        s_filter_add (f, " AND x.message_id = $%d::uuid", message);
    }
    if (room) {
        if (op_room_access (op, room, false, &access) < 0)
            return -1;
        if (access.role == OP_ROLE_NONE) {
            op_not_found (op);
            return 0;
        }
        s_filter_add (f, " AND m.room_id = $%d::uuid", room);
    }
    if (!message && !room)
        s_filter_add (f, " AND m.room_id IN (SELECT p.room_id FROM room_participants p"
                         " WHERE p.user_id = $%d::uuid)", op->user_id);
    if (user)
        s_filter_add (f, " AND x.user_id = $%d::uuid", user);
    return 1;
}

/* Lists `what` (reads|reactions) rendered by `render`, filtered by s_scope,
   ordered by `order`. */
static int
s_list (op_t *op, const char *what, const char *render, const char *order)
{
    s_filter_t f = { .n = 0 };
    int rc = s_scope (op, &f);
    if (rc <= 0)
        return rc;
    char count_sql[1024], list_sql[1200];
    snprintf (count_sql, sizeof count_sql, "SELECT count(*) FROM %s x"
              " JOIN messages m ON m.id = x.message_id WHERE true%s", what, f.where);
    snprintf (list_sql, sizeof list_sql, "SELECT %s (x) FROM %s x"
              " JOIN messages m ON m.id = x.message_id WHERE true%s"
              " ORDER BY %s LIMIT $%d OFFSET $%d",
              render, what, f.where, order, f.n + 1, f.n + 2);
    return op_list (op, count_sql, list_sql, f.n, f.params);
}

/* --- reads ---------------------------------------------------------------- */

#define S_READ_LOAD_SQL "SELECT message_id, user_id FROM reads WHERE id = $1::uuid"
#define S_READ_JSON_SQL "SELECT parley_read_json (x) FROM reads x WHERE x.id = $1::uuid"

/* GET reads/ */
static int
s_reads_list (op_t *op)
{
    return s_list (op, "reads", "parley_read_json", "x.read_at, x.id");
}

#define S_READ_INSERT_SQL                                                          \
    "WITH x AS (INSERT INTO reads (message_id, user_id, room_id)"                  \
    "           VALUES ($1::uuid, $2::uuid, $3::uuid)"                             \
    "           ON CONFLICT (message_id, user_id) DO NOTHING RETURNING *)"         \
    "SELECT parley_read_json (x),"                                                 \
    "       jsonb_build_object ('type', 'read.receipt', 'room', x.room_id,"        \
    "                           'ts', parley_ts (now ()), 'message', x.message_id,"\
    "                           'user', x.user_id, 'read_at', parley_ts (x.read_at)),"\
    "       (SELECT jsonb_agg (p.user_id) FROM room_participants p"                \
    "         WHERE p.room_id = x.room_id)"                                        \
    "  FROM x"

/* POST reads/ {"message"} — 201, or 200 with the existing receipt. */
static int
s_reads_create (op_t *op)
{
    const char *message;
    op_access_t access;
    int rc = s_body_message (op, false, &message, &access);
    if (rc <= 0)
        return rc;
    const char *params[] = { message, op->user_id, access.room };
    PGresult *res = op_exec (op, S_READ_INSERT_SQL, 3, params);
    if (!res)
        return -1;
    if (PQntuples (res) == 0) {
        PQclear (res);
        json_t *existing = op_query_json (op, "SELECT parley_read_json (x) FROM reads x"
            " WHERE x.message_id = $1::uuid AND x.user_id = $2::uuid", 2, params);
        if (!existing)
            return -1;
        op_reply (op, 200, existing);
        return 0;
    }
    op_reply (op, 201, json_loads (PQgetvalue (res, 0, 0), 0, NULL));
    op_user_event (op, json_loads (PQgetvalue (res, 0, 2), 0, NULL), "read.receipt",
                   json_loads (PQgetvalue (res, 0, 1), 0, NULL));
    PQclear (res);
    return 0;
}

/* GET reads/{id}/ */
static int
s_reads_retrieve (op_t *op)
{
    op_access_t access;
    char owner[40];
    int rc = s_load (op, S_READ_LOAD_SQL, false, &access, owner, NULL);
    return rc <= 0 ? rc : s_reply_json (op, 200, S_READ_JSON_SQL, op_param (op, "id"));
}

/* PUT/PATCH reads/{id}/ — one's own: changes nothing. */
static int
s_reads_update (op_t *op)
{
    op_access_t access;
    char owner[40];
    int rc = s_load (op, S_READ_LOAD_SQL, false, &access, owner, NULL);
    if (rc <= 0)
        return rc;
    if (strcmp (owner, op->user_id) != 0) {
        op_detail (op, 403, "You may only change your own receipts.");
        return 0;
    }
    return s_reply_json (op, 200, S_READ_JSON_SQL, op_param (op, "id"));
}

/* DELETE reads/{id}/ — one's own (the trigger lowers last_read_seq). */
static int
s_reads_delete (op_t *op)
{
    op_access_t access;
    char owner[40];
    int rc = s_load (op, S_READ_LOAD_SQL, false, &access, owner, NULL);
    if (rc <= 0)
        return rc;
    if (strcmp (owner, op->user_id) != 0) {
        op_detail (op, 403, "You may only delete your own receipts.");
        return 0;
    }
    const char *params[] = { op_param (op, "id") };
    if (op_command (op, "DELETE FROM reads WHERE id = $1::uuid", 1, params) < 0)
        return -1;
    op_reply (op, 204, NULL);
    return 0;
}

/* --- reactions ------------------------------------------------------------ */

#define S_REACTION_LOAD_SQL \
    "SELECT message_id, user_id, emoji FROM reactions WHERE id = $1::uuid"
#define S_REACTION_JSON_SQL \
    "SELECT parley_reaction_json (x) FROM reactions x WHERE x.id = $1::uuid"

/* 1-64 bytes of UTF-8 without whitespace or control characters. */
static bool
s_emoji_valid (const char *emoji)
{
    size_t bytes = strlen (emoji);
    if (bytes < 1 || bytes > S_EMOJI_MAX_BYTES)
        return false;
    uint32_t cp;
    size_t len;
    while ((len = op_utf8_decode (emoji, &cp)) > 0) {
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)
            || op_unicode_is_space (cp))
            return false;
        emoji += len;
    }
    return true;
}

/* Reads `emoji`: 1 present and valid, 0 absent (400 when `required`),
   -1 answered 400. */
static int
s_read_emoji (op_t *op, bool required, const char **emoji)
{
    int rc = op_body_string (op, "emoji", emoji);
    if (rc == 0 && required) {
        op_field_error (op, "emoji", "This field is required.");
        return -1;
    }
    if (rc == 1 && !s_emoji_valid (*emoji)) {
        op_field_error (op, "emoji", "Enter 1-64 bytes without whitespace or"
                                     " control characters.");
        return -1;
    }
    return rc;
}

/* Reactions change the room's timeline: not in an archived room, not on a
   deleted message. 1 allowed, 0 answered. */
static int
s_may_react (op_t *op, const op_access_t *access)
{
    if (access->archived) {
        op_detail (op, 403, "This room is archived.");
        return 0;
    }
    if (access->deleted) {
        op_detail (op, 400, "A deleted message cannot be reacted to.");
        return 0;
    }
    return 1;
}

/* Runs `sql` returning (event jsonb[, reaction jsonb]) rows; records the
   event, answers `status` with the reaction when there is one. Returns 1
   when a row came back, 0 none, -1 failed. */
static int
s_apply (op_t *op, const char *sql, int n, const char *const *params, int status)
{
    PGresult *res = op_exec (op, sql, n, params);
    if (!res)
        return -1;
    int found = PQntuples (res) > 0;
    if (found) {
        json_t *event = json_loads (PQgetvalue (res, 0, 0), 0, NULL);
        op_room_event (op, json_string_value (json_object_get (event, "room")),
                       json_integer_value (json_object_get (event, "seq")),
                       json_string_value (json_object_get (event, "type")), event);
        if (PQnfields (res) > 1)
            op_reply (op, status, json_loads (PQgetvalue (res, 0, 1), 0, NULL));
    }
    PQclear (res);
    return found;
}

/* GET reactions/ */
static int
s_reactions_list (op_t *op)
{
    return s_list (op, "reactions", "parley_reaction_json", "x.created_at, x.id");
}

/* POST reactions/ {"message", "emoji"} — 201, or 200 with the same one. */
static int
s_reactions_create (op_t *op)
{
    const char *emoji, *message;
    op_access_t access;
    if (s_read_emoji (op, true, &emoji) < 0)
        return 0;
    int rc = s_body_message (op, true, &message, &access);
    if (rc <= 0 || !s_may_react (op, &access))
        return rc < 0 ? -1 : 0;
    const char *params[] = { message, op->user_id, emoji };
    rc = s_apply (op,
        "WITH x AS (INSERT INTO reactions (message_id, user_id, emoji)"
        "           VALUES ($1::uuid, $2::uuid, $3)"
        "           ON CONFLICT (message_id, user_id, emoji) DO NOTHING RETURNING *)"
        "SELECT parley_reaction_event (x, 'reaction.added', x.user_id),"
        "       parley_reaction_json (x) FROM x", 3, params, 201);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    json_t *existing = op_query_json (op, "SELECT parley_reaction_json (x) FROM reactions x"
        " WHERE x.message_id = $1::uuid AND x.user_id = $2::uuid AND x.emoji = $3",
        3, params);
    if (!existing)
        return -1;
    op_reply (op, 200, existing);
    return 0;
}

/* GET reactions/{id}/ */
static int
s_reactions_retrieve (op_t *op)
{
    op_access_t access;
    char owner[40];
    char emoji[S_EMOJI_MAX_BYTES + 1];
    int rc = s_load (op, S_REACTION_LOAD_SQL, false, &access, owner, emoji);
    return rc <= 0 ? rc : s_reply_json (op, 200, S_REACTION_JSON_SQL, op_param (op, "id"));
}

/* Replaces the emoji of the caller's reaction: reaction.removed for the
   old one, then reaction.added for the new. 0 or -1. */
static int
s_change_emoji (op_t *op, const char *emoji)
{
    const char *params[] = { op_param (op, "id"), op->user_id, emoji };
    const char *check[] = { op_param (op, "id"), emoji };
    char taken[8] = "";
    int rc = op_query_text (op, "SELECT 'taken' FROM reactions o JOIN reactions x"
                                "    ON x.message_id = o.message_id AND x.user_id = o.user_id"
                                " WHERE o.id = $1::uuid AND x.emoji = $2",
                            2, check, taken, sizeof taken);
    if (rc != 0) {
        if (rc > 0)
            op_field_error (op, "emoji", "You already reacted with this emoji.");
        return rc < 0 ? -1 : 0;
    }
    if (s_apply (op, "SELECT parley_reaction_event (x, 'reaction.removed', $2::uuid)"
                     "  FROM reactions x WHERE x.id = $1::uuid", 2, params, 200) < 0
        || s_apply (op, "WITH x AS (UPDATE reactions SET emoji = $3, created_at = now ()"
                        "            WHERE id = $1::uuid RETURNING *)"
                        "SELECT parley_reaction_event (x, 'reaction.added', $2::uuid),"
                        "       parley_reaction_json (x) FROM x", 3, params, 200) < 0)
        return -1;
    return 0;
}

/* PUT/PATCH reactions/{id}/ — one's own, `emoji` only. */
static int
s_reactions_update (op_t *op)
{
    op_access_t access;
    char owner[40], current[S_EMOJI_MAX_BYTES + 1];
    int rc = s_load (op, S_REACTION_LOAD_SQL, true, &access, owner, current);
    if (rc <= 0)
        return rc;
    if (strcmp (owner, op->user_id) != 0 || access.role == OP_ROLE_VISITOR) {
        op_detail (op, 403, "You may only change your own reactions, as a participant.");
        return 0;
    }
    const char *emoji = NULL;
    rc = s_read_emoji (op, strcmp (op->method, "PUT") == 0, &emoji);
    if (rc < 0 || (rc == 1 && !s_may_react (op, &access)))
        return 0;
    if (rc == 0 || strcmp (emoji, current) == 0)
        return s_reply_json (op, 200, S_REACTION_JSON_SQL, op_param (op, "id"));
    return s_change_emoji (op, emoji);
}

/* DELETE reactions/{id}/ — one's own; reaction.removed. */
static int
s_reactions_delete (op_t *op)
{
    op_access_t access;
    char owner[40], emoji[S_EMOJI_MAX_BYTES + 1];
    int rc = s_load (op, S_REACTION_LOAD_SQL, true, &access, owner, emoji);
    if (rc <= 0)
        return rc;
    if (strcmp (owner, op->user_id) != 0) {
        op_detail (op, 403, "You may only delete your own reactions.");
        return 0;
    }
    if (access.archived) {
        op_detail (op, 403, "This room is archived.");
        return 0;
    }
    const char *params[] = { op_param (op, "id"), op->user_id };
    if (s_apply (op, "WITH x AS (DELETE FROM reactions WHERE id = $1::uuid RETURNING *)"
                     "SELECT parley_reaction_event (x, 'reaction.removed', $2::uuid) FROM x",
                 2, params, 204) < 0)
        return -1;
    op_reply (op, 204, NULL);
    return 0;
}

const op_def_t ops_receipts[] = {
    { "reads.list",         s_reads_list,         false },
    { "reads.create",       s_reads_create,       false },
    { "reads.retrieve",     s_reads_retrieve,     false },
    { "reads.update",       s_reads_update,       false },
    { "reads.delete",       s_reads_delete,       false },
    { "reactions.list",     s_reactions_list,     false },
    { "reactions.create",   s_reactions_create,   false },
    { "reactions.retrieve", s_reactions_retrieve, false },
    { "reactions.update",   s_reactions_update,   false },
    { "reactions.delete",   s_reactions_delete,   false },
    { NULL, NULL, false }
};
