/*  actors/ops/rooms.c — the rooms operations (API.md §2.1).
 *
 *  Visibility (API.md §0): a caller sees the rooms they participate in plus
 *  public group rooms. Anything else is 404; a visible room refuses what a
 *  non-participant (or a non-admin) may not do with 403.
 *
 *  Every write takes the room's row lock first (s_room_load with lock), so
 *  membership checks (capacity, "last admin") and the room's event seqs
 *  queue behind concurrent writers to the same room. Each timeline change
 *  appends its room event in the same transaction (002_json.sql) and is
 *  recorded with op_room_event for fan-out after COMMIT.
 *
 *  Choices where API.md is silent:
 *  - PUT is accepted as a partial update, like PATCH. An update that changes
 *    nothing answers 200 and appends no room.updated.
 *  - name is at most 255 characters and may be empty (direct and ai rooms
 *    usually have none); max_participants is 2..10 000 (400 naming it).
 *  - create: nonexistent `participants` answer 400 naming the field (DRF's
 *    PrimaryKeyRelatedField), not 404; the creator and repeats are dropped
 *    from the list. Direct and ai rooms are always private (is_private
 *    false: 400) and hold at most 2 (max_participants is set to 2). An ai
 *    room ignores `participants`: it holds the caller and the assistant
 *    (config assistant_username), created on first use with the password
 *    hash '!', which no password verifies.
 *  - create direct again: 200 with the existing room; whichever of the two
 *    had left it is brought back (room.member_joined).
 *  - image: an attachment id; one that does not exist or that the caller
 *    can't see (not their upload, not posted in one of their rooms) is 404
 *    (§0); one whose mime type is not an image's is 400 naming `image`;
 *    null clears it.
 *  - add/remove_participant on direct and ai rooms: 400 {"detail"}; a
 *    nonexistent user: 404; adding a member again: 200, no event.
 *  - leave: allowed in any room, direct rooms included. When the last admin
 *    leaves (or removes themself), the longest-standing member becomes
 *    admin, announced by room.updated after room.member_left. A room whose
 *    last member left stays: a public one can still be found and joined,
 *    and who joins an admin-less room becomes its admin (same rule).
 *  - remove_participant cannot remove the room's creator (403), except the
 *    creator removing themself.
 *  - join: an archived public room can still be joined; a member joining
 *    again gets 200 and nothing changes.
 *  - mark_read sends the ephemeral read.receipt to the participants only
 *    when it created receipts.
 *  - events/: participants only (403 for a visible public room), since only
 *    participants receive the room's events live.
 *  - messages/: ?ordering=seq or the default -seq; ?before_seq/?after_seq;
 *    other messages/ filters are not offered here.
 */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#define S_MAX_PARTICIPANTS  10000
#define S_MIN_PARTICIPANTS  2
#define S_NAME_MAX          255

/* What the caller may see and do in one room. */
typedef struct {
    const char *id;
    char type[8];             /* direct | group | ai                    */
    bool is_private;
    bool is_archived;
    bool member;              /* the caller participates                */
    bool admin;               /* the caller is a room admin             */
    bool creator;             /* the caller created the room            */
    long long max_participants;
    long long count;          /* participants now                       */
    long long messages_count; /* messages, tombstones included (the
                                 messages_inserted trigger keeps it)    */
} s_room_t;

/* What the caller must be for an operation (s_room_gate). */
typedef enum { S_SEE, S_MEMBER, S_ADMIN, S_CREATOR } s_need_t;

static bool
s_pg_bool (PGresult *res, int col)
{
    return PQgetvalue (res, 0, col)[0] == 't';
}

/* Loads room `id` as the caller sees it; with `lock`, row-locks the room
   first. Returns 1 found, 0 no such room, -1 database failure. */
static int
s_room_load (op_t *op, const char *id, bool lock, s_room_t *room)
{
    const char *params[] = { id, op->user_id };
    if (lock && op_command (op, "SELECT 1 FROM rooms WHERE id = $1::uuid"
                                " FOR NO KEY UPDATE", 1, params) < 0)
        return -1;
    PGresult *res = op_exec (op,
        "SELECT r.room_type, r.is_private, r.is_archived, r.max_participants,"
        "       (SELECT count(*) FROM room_participants c WHERE c.room_id = r.id),"
        "       p.user_id IS NOT NULL, coalesce (p.is_admin, false),"
        "       r.created_by IS NOT DISTINCT FROM $2::uuid, r.messages_count"
        "  FROM rooms r LEFT JOIN room_participants p"
        "       ON p.room_id = r.id AND p.user_id = $2::uuid"
        " WHERE r.id = $1::uuid", 2, params);
    if (!res)
        return -1;
    int found = PQntuples (res) == 1;
    if (found) {
        *room = (s_room_t) { .id = id };
        snprintf (room->type, sizeof room->type, "%s", PQgetvalue (res, 0, 0));
        room->is_private = s_pg_bool (res, 1);
        room->is_archived = s_pg_bool (res, 2);
        room->max_participants = strtoll (PQgetvalue (res, 0, 3), NULL, 10);
        room->count = strtoll (PQgetvalue (res, 0, 4), NULL, 10);
        room->member = s_pg_bool (res, 5);
        room->admin = s_pg_bool (res, 6);
        room->creator = s_pg_bool (res, 7);
        room->messages_count = strtoll (PQgetvalue (res, 0, 8), NULL, 10);
    }
    PQclear (res);
    return found;
}

static bool
s_room_public (const s_room_t *room)
{
    return strcmp (room->type, "group") == 0 && !room->is_private;
}

/* Loads the room named by the path and checks the caller is what `need`
   says: 404 when they cannot see it, 403 when they see it but may not act.
   Returns 1 allowed, 0 answered, -1 database failure. */
static int
s_room_gate (op_t *op, s_need_t need, bool lock, s_room_t *room)
{
    int found = s_room_load (op, op_param (op, "id"), lock, room);
    if (found <= 0) {
        if (found == 0)
            op_not_found (op);
        return found;
    }
    if (!room->member && !s_room_public (room)) {
        op_not_found (op);
        return 0;
    }
    bool allowed = need == S_SEE
                || (need == S_MEMBER && room->member)
                || (need == S_ADMIN && room->member && room->admin)
                || (need == S_CREATOR && room->creator);
    if (!allowed) {
        op_forbidden (op);
        return 0;
    }
    return 1;
}

/* Answers `status` with the room rendered for the caller. */
static int
s_reply_room (op_t *op, int status, const char *room)
{
    const char *params[] = { op->user_id, op->base, room };
    int rc = op_query_reply (op, status,
        "SELECT parley_room_json(r, $1::uuid, $2) FROM rooms r WHERE r.id = $3::uuid",
        3, params);
    if (rc == 0)
        op_reply (op, status, json_null ());
    return rc < 0 ? -1 : 0;
}

/* Records the event object `event` (taken) returned by an event helper. */
static int
s_record_event (op_t *op, const char *room, json_t *event)
{
    if (!json_is_object (event)) {
        json_decref (event);
        return -1;
    }
    json_t *seq = json_object_get (event, "seq");
    const char *type = json_string_value (json_object_get (event, "type"));
    char type_copy[32];
    snprintf (type_copy, sizeof type_copy, "%s", type ? type : "");
    op_room_event (op, room, json_integer_value (seq), type_copy, event);
    return 0;
}

/* Appends room.created / room.updated for `room`. */
static int
s_info_event (op_t *op, const char *room, const char *type)
{
    const char *params[] = { room, type, op->base, op->user_id };
    return s_record_event (op, room, op_query_json (op,
        "SELECT parley_room_info_event($1::uuid, $2, $3, $4::uuid)", 4, params));
}

/* Appends room.member_joined / room.member_left about `user`. */
static int
s_member_event (op_t *op, const char *room, const char *type, const char *user)
{
    const char *params[] = { room, type, user, op->user_id };
    return s_record_event (op, room, op_query_json (op,
        "SELECT parley_member_event($1::uuid, $2, $3::uuid, $4::uuid)", 4, params));
}

/* Adds `user` to `room` (not admin) and appends member_joined. Returns 1
   added, 0 already there, -1 failure. */
static int
s_add_member (op_t *op, const char *room, const char *user)
{
    const char *params[] = { room, user };
    long rows = op_command (op,
        "INSERT INTO room_participants (room_id, user_id, joined_at)"
        " VALUES ($1::uuid, $2::uuid, clock_timestamp ())"
        " ON CONFLICT (room_id, user_id) DO NOTHING", 2, params);
    if (rows <= 0)
        return (int) rows;
    return s_member_event (op, room, "room.member_joined", user) == 0 ? 1 : -1;
}

/* A room that still has members keeps an admin: when none is left, the
   longest-standing member becomes one, announced by room.updated. */
static int
s_ensure_admin (op_t *op, const char *room)
{
    const char *params[] = { room };
    long rows = op_command (op,
        "UPDATE room_participants SET is_admin = true"
        " WHERE room_id = $1::uuid AND user_id ="
        "       (SELECT user_id FROM room_participants WHERE room_id = $1::uuid"
        "         ORDER BY joined_at, user_id LIMIT 1)"
        "   AND NOT EXISTS (SELECT 1 FROM room_participants"
        "                    WHERE room_id = $1::uuid AND is_admin)", 1, params);
    if (rows < 0)
        return -1;
    return rows > 0 ? s_info_event (op, room, "room.updated") : 0;
}

/* Removes `user` from `room`, appends member_left and keeps an admin.
   Returns 1 removed, 0 was not a member, -1 failure. */
static int
s_remove_member (op_t *op, const char *room, const char *user)
{
    const char *params[] = { room, user };
    long rows = op_command (op,
        "DELETE FROM room_participants WHERE room_id = $1::uuid AND user_id = $2::uuid",
        2, params);
    if (rows <= 0)
        return (int) rows;
    if (s_member_event (op, room, "room.member_left", user) != 0
        || s_ensure_admin (op, room) != 0)
        return -1;
    return 1;
}

/* Counts UTF-8 code points. */
static size_t
s_chars (const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char) *s & 0xC0) != 0x80;
    return n;
}

/* Reads an optional name (≤ S_NAME_MAX characters); as op_body_*. */
static int
s_body_name (op_t *op, const char **name)
{
    int rc = op_body_string (op, "name", name);
    if (rc == 1 && s_chars (*name) > S_NAME_MAX) {
        op_field_error (op, "name", "Ensure this field has no more than 255 characters.");
        return -1;
    }
    return rc;
}

/* Reads an optional max_participants within S_MIN..S_MAX; as op_body_*. */
static int
s_body_max (op_t *op, long long *max)
{
    int rc = op_body_int (op, "max_participants", max);
    if (rc == 1 && *max < S_MIN_PARTICIPANTS) {
        op_field_error (op, "max_participants",
                        "Ensure this value is greater than or equal to 2.");
        return -1;
    }
    if (rc == 1 && *max > S_MAX_PARTICIPANTS) {
        op_field_error (op, "max_participants",
                        "Ensure this value is less than or equal to 10000.");
        return -1;
    }
    return rc;
}

/* Reads the required body field `user` (a UUID); as op_body_*, but absent
   is an error too. */
static int
s_body_user (op_t *op, const char **user)
{
    int rc = op_body_uuid (op, "user", user);
    if (rc == 0) {
        op_field_error (op, "user", "This field is required.");
        return -1;
    }
    return rc;
}

/* ---------------------------------------------------------------------------
 * rooms.list
 * ------------------------------------------------------------------------ */

/* $1 is the viewer, $2 the base URL; the filters given follow. Count
   queries name $2 in their select list only so that every parameter has a
   type. Only the filters given are in the WHERE (no "$n IS NULL OR ..."),
   so PostgreSQL keeps one generic plan per shape instead of planning every
   execution afresh. */
#define S_MINE_FROM                                                            \
    " FROM rooms r JOIN room_participants p"                                  \
    "      ON p.room_id = r.id AND p.user_id = $1::uuid WHERE true"
#define S_DISCOVER_FROM                                                        \
    " FROM rooms r WHERE r.room_type = 'group' AND NOT r.is_private"         \
    "  AND NOT EXISTS (SELECT 1 FROM room_participants p"                     \
    "                   WHERE p.room_id = r.id AND p.user_id = $1::uuid)"

static int
s_list (op_t *op)
{
    bool discover = false, archived = false;
    const char *type = NULL, *search = NULL;
    if (op_query_bool (op, "discover", &discover) < 0)
        return 0;
    int has_archived = op_query_bool (op, "is_archived", &archived);
    if (has_archived < 0)
        return 0;
    if (op_query_string (op, "room_type", &type) && strcmp (type, "direct")
        && strcmp (type, "group") && strcmp (type, "ai")) {
        op_field_error (op, "room_type", "Select a valid choice.");
        return 0;
    }
    op_query_string (op, "search", &search);
    const char *params[5] = { op->user_id, op->base };
    int n = 2;
    char where[512];
    snprintf (where, sizeof where, "%s", discover ? S_DISCOVER_FROM : S_MINE_FROM);
    if (type) {
        params[n++] = type;
        snprintf (where + strlen (where), sizeof where - strlen (where),
                  " AND r.room_type = $%d::text", n);
    }
    if (has_archived) {
        params[n++] = archived ? "true" : "false";
        snprintf (where + strlen (where), sizeof where - strlen (where),
                  " AND r.is_archived = $%d::boolean", n);
    }
    if (search) {
        params[n++] = search;
        snprintf (where + strlen (where), sizeof where - strlen (where),
                  " AND strpos (lower (r.name), lower ($%d::text)) > 0", n);
    }
    char count_sql[640], list_sql[768];
    snprintf (count_sql, sizeof count_sql, "SELECT count(*), $2::text%s", where);
    snprintf (list_sql, sizeof list_sql, "SELECT parley_room_json(r, $1::uuid, $2)%s"
              " ORDER BY r.last_activity DESC, r.id LIMIT $%d OFFSET $%d",
              where, n + 1, n + 2);
    return op_list (op, count_sql, list_sql, n, params);
}

/* ---------------------------------------------------------------------------
 * rooms.create
 * ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    const char *type;
    const char *description;
    bool is_private;
    long long max;
    char *others;             /* '{uuid,...}': the other members (heap)  */
    char other[40];           /* direct: the other member                */
} s_create_t;

/* Builds the Postgres array literal of the participants' ids; 400 naming
   `participants` for a non-UUID. Returns 1 ok, 0 answered. */
static int
s_participants_literal (op_t *op, json_t *list, char **out)
{
    size_t n = json_array_size (list);
    char *text = malloc (n * 37 + 3);
    size_t len = 0;
    text[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        const char *id = json_string_value (json_array_get (list, i));
        if (!op_is_uuid (id)) {
            free (text);
            op_field_error (op, "participants", "Must be a list of valid UUIDs.");
            return 0;
        }
        len += (size_t) sprintf (text + len, "%s%s", i ? "," : "", id);
    }
    text[len++] = '}';
    text[len] = '\0';
    *out = text;
    return 1;
}

/* Reads and checks the body's plain fields. Returns 1 ok, 0 answered. */
static int
s_create_fields (op_t *op, s_create_t *in)
{
    *in = (s_create_t) { .name = "", .type = "group", .description = "",
                         .is_private = true, .max = 256 };
    json_t *list = NULL;
    if (s_body_name (op, &in->name) < 0
        || op_body_string (op, "room_type", &in->type) < 0
        || op_body_string (op, "description", &in->description) < 0
        || op_body_bool (op, "is_private", &in->is_private) < 0
        || s_body_max (op, &in->max) < 0
        || op_body_array (op, "participants", &list) < 0)
        return 0;
    bool two = strcmp (in->type, "direct") == 0 || strcmp (in->type, "ai") == 0;
    if (!two && strcmp (in->type, "group") != 0) {
        op_field_error (op, "room_type", "Select a valid choice.");
        return 0;
    }
    if (two && !in->is_private) {
        op_field_error (op, "is_private", "Only group rooms can be public.");
        return 0;
    }
    if (two)
        in->max = 2;    /* a direct or ai room holds its two members */
    return s_participants_literal (op, list, &in->others);   /* NULL: none */
}

/* The assistant user's id (API.md §2.1), created on first use when missing:
   an ordinary account whose password hash '!' no password verifies. */
static int
s_assistant (op_t *op, char *id, size_t size)
{
    const char *params[] = { op->config->assistant_username };
    if (op_command (op,
            "INSERT INTO users (username, display_name, password_hash)"
            " VALUES ($1, 'Assistant', '!') ON CONFLICT (username) DO NOTHING",
            1, params) < 0)
        return -1;
    return op_query_text (op, "SELECT id FROM users WHERE username = $1", 1, params,
                          id, size) == 1 ? 0 : -1;
}

/* An ai room's other member is the assistant, whoever else was named. */
static int
s_create_ai_members (op_t *op, s_create_t *in)
{
    if (s_assistant (op, in->other, sizeof in->other) != 0)
        return -1;
    free (in->others);
    in->others = malloc (strlen (in->other) + 3);
    sprintf (in->others, "{%s}", in->other);
    return 1;
}

/* Checks the participants against the room type and size and settles the
   other members. Returns 1 ok, 0 answered, -1 failure. */
static int
s_create_members (op_t *op, s_create_t *in)
{
    const char *params[] = { in->others, op->user_id };
    PGresult *res = op_exec (op,
        "SELECT (SELECT t.u::text FROM unnest ($1::uuid[]) t(u)"
        "         WHERE NOT EXISTS (SELECT 1 FROM users x WHERE x.id = t.u) LIMIT 1),"
        "       (SELECT count(DISTINCT t.u) FROM unnest ($1::uuid[]) t(u)"
        "         WHERE t.u <> $2::uuid),"
        "       (SELECT min (t.u::text) FROM unnest ($1::uuid[]) t(u)"
        "         WHERE t.u <> $2::uuid)", 2, params);
    if (!res)
        return -1;
    char message[96] = "";
    long long others = strtoll (PQgetvalue (res, 0, 1), NULL, 10);
    if (!PQgetisnull (res, 0, 0))
        snprintf (message, sizeof message, "Invalid pk \"%s\" - object does not exist.",
                  PQgetvalue (res, 0, 0));
    else if (strcmp (in->type, "direct") == 0 && others != 1)
        snprintf (message, sizeof message,
                  "A direct room has exactly one other participant.");
    else if (strcmp (in->type, "group") == 0 && others + 1 > in->max)
        snprintf (message, sizeof message,
                  "Ensure this room has no more than %lld participants.", in->max);
    snprintf (in->other, sizeof in->other, "%s", PQgetvalue (res, 0, 2));
    PQclear (res);
    if (*message) {
        op_field_error (op, "participants", message);
        return 0;
    }
    return strcmp (in->type, "ai") == 0 ? s_create_ai_members (op, in) : 1;
}

/* Inserts the room; for a direct room that already exists between the
   two, inserts nothing. Returns 1 created (id in `room`), 0 direct exists,
   -1 failure. */
static int
s_create_row (op_t *op, const s_create_t *in, char *room, size_t size)
{
    const char *params[] = { in->name, in->type, op->user_id, in->description,
                             in->is_private ? "true" : "false", NULL, in->other };
    char max[24];
    snprintf (max, sizeof max, "%lld", in->max);
    params[5] = max;
    return op_query_text (op,
        "INSERT INTO rooms (name, room_type, created_by, description, is_private,"
        "                   max_participants, direct_key)"
        " VALUES ($1, $2, $3::uuid, $4, $5::boolean, $6::int,"
        "         CASE WHEN $2 = 'direct'"
        "              THEN parley_direct_key ($3::uuid, nullif ($7, '')::uuid) END)"
        " ON CONFLICT (direct_key) DO NOTHING RETURNING id", 7, params, room, size);
}

/* The caller asked again for the direct room they share with `other`:
   brings back whichever of the two had left it, answers 200. */
static int
s_create_direct_again (op_t *op, const s_create_t *in)
{
    const char *params[] = { op->user_id, in->other };
    char room[40];
    if (op_query_text (op, "SELECT id FROM rooms"
                           " WHERE direct_key = parley_direct_key ($1::uuid, $2::uuid)"
                           " FOR NO KEY UPDATE", 2, params, room, sizeof room) != 1)
        return -1;
    int me = s_add_member (op, room, op->user_id);
    int other = me < 0 ? -1 : s_add_member (op, room, in->other);
    if (other < 0 || ((me || other) && s_ensure_admin (op, room) != 0))
        return -1;
    return s_reply_room (op, 200, room);
}

/* Fills a new room: the creator (admin) first, then the others in the
   order given; then room.created, the room's event 1. */
static int
s_create_fill (op_t *op, const s_create_t *in, const char *room)
{
    const char *params[] = { room, op->user_id, in->others };
    if (op_command (op,
            "INSERT INTO room_participants (room_id, user_id, is_admin, joined_at)"
            " VALUES ($1::uuid, $2::uuid, true, clock_timestamp ())", 2, params) < 0)
        return -1;
    if (op_command (op,
            "INSERT INTO room_participants (room_id, user_id, joined_at)"
            " SELECT $1::uuid, t.u, (SELECT clock_timestamp ()) + t.n * interval '1 microsecond'"
            "   FROM (SELECT u, min (n) AS n"
            "           FROM unnest ($3::uuid[]) WITH ORDINALITY AS x(u, n)"
            "          WHERE u <> $2::uuid GROUP BY u) t", 3, params) < 0)
        return -1;
    if (s_info_event (op, room, "room.created") != 0)
        return -1;
    return s_reply_room (op, 201, room);
}

static int
s_create (op_t *op)
{
    s_create_t in;
    if (!s_create_fields (op, &in))
        return 0;
    int rc = s_create_members (op, &in);
    if (rc == 1) {
        char room[40];
        rc = s_create_row (op, &in, room, sizeof room);
        if (rc == 1)
            rc = s_create_fill (op, &in, room);
        else if (rc == 0)
            rc = s_create_direct_again (op, &in);
    }
    free (in.others);
    return rc < 0 ? -1 : 0;
}

/* ---------------------------------------------------------------------------
 * rooms.retrieve, rooms.update, rooms.delete
 * ------------------------------------------------------------------------ */

static int
s_retrieve (op_t *op)
{
    s_room_t room;
    int rc = s_room_gate (op, S_SEE, false, &room);
    return rc <= 0 ? rc : s_reply_room (op, 200, room.id);
}

/* The new image: NULL kept, "" cleared, else an attachment id the caller
   may see (their upload, or posted in one of their rooms) that is an
   image. Returns 1 ok, 0 answered, -1 failure. */
static int
s_update_image (op_t *op, const char **image)
{
    json_t *value = op->body ? json_object_get (op->body, "image") : NULL;
    *image = NULL;
    if (!value)
        return 1;
    if (json_is_null (value)) {
        *image = "";
        return 1;
    }
    if (op_body_uuid (op, "image", image) < 0)
        return 0;
    const char *params[] = { *image, op->user_id };
    char mime[256];
    int found = op_query_text (op,
        "SELECT a.mime FROM attachments a WHERE a.id = $1::uuid AND a.revoked_at IS NULL"
        "   AND (a.uploader_id = $2::uuid OR EXISTS"
        "        (SELECT 1 FROM messages m JOIN room_participants p"
        "                ON p.room_id = m.room_id AND p.user_id = $2::uuid"
        "          WHERE m.attachment_id = a.id))", 2, params, mime, sizeof mime);
    if (found <= 0) {
        if (found == 0)
            op_not_found (op);
        return found;
    }
    if (strncmp (mime, "image/", 6) != 0) {
        op_field_error (op, "image", "The attachment is not an image.");
        return 0;
    }
    return 1;
}

typedef struct {
    const char *name, *description, *image;
    bool is_private, is_archived;
    int has_private, has_archived, has_max;
    long long max;
} s_update_t;

/* Reads and checks the writable fields (all optional: PUT is partial too).
   Returns 1 ok, 0 answered, -1 failure. */
static int
s_update_fields (op_t *op, const s_room_t *room, s_update_t *in)
{
    *in = (s_update_t) { 0 };
    if (s_body_name (op, &in->name) < 0
        || op_body_string (op, "description", &in->description) < 0
        || (in->has_private = op_body_bool (op, "is_private", &in->is_private)) < 0
        || (in->has_archived = op_body_bool (op, "is_archived", &in->is_archived)) < 0
        || (in->has_max = s_body_max (op, &in->max)) < 0)
        return 0;
    if (in->has_private && !in->is_private && strcmp (room->type, "group") != 0) {
        op_field_error (op, "is_private", "Only group rooms can be public.");
        return 0;
    }
    if (in->has_max && in->max < room->count) {
        op_field_error (op, "max_participants",
                        "Ensure this value is at least the number of participants.");
        return 0;
    }
    return s_update_image (op, &in->image);
}

/* Applies `in`; appends room.updated when something changed. */
static int
s_update_apply (op_t *op, const s_room_t *room, const s_update_t *in)
{
    char max[24];
    snprintf (max, sizeof max, "%lld", in->max);
    const char *params[] = {
        room->id, in->name, in->description,
        in->has_private ? (in->is_private ? "true" : "false") : NULL,
        in->has_max ? max : NULL,
        in->has_archived ? (in->is_archived ? "true" : "false") : NULL,
        in->image };
    char changed[40];
    int rc = op_query_text (op,
        "UPDATE rooms r SET name = coalesce ($2, r.name),"
        "       description = coalesce ($3, r.description),"
        "       is_private = coalesce ($4::boolean, r.is_private),"
        "       max_participants = coalesce ($5::int, r.max_participants),"
        "       is_archived = coalesce ($6::boolean, r.is_archived),"
        "       image_id = CASE WHEN $7::text IS NULL THEN r.image_id"
        "                       ELSE nullif ($7::text, '')::uuid END"
        " WHERE r.id = $1::uuid"
        "   AND (coalesce ($2, r.name), coalesce ($3, r.description),"
        "        coalesce ($4::boolean, r.is_private),"
        "        coalesce ($5::int, r.max_participants),"
        "        coalesce ($6::boolean, r.is_archived),"
        "        CASE WHEN $7::text IS NULL THEN r.image_id"
        "             ELSE nullif ($7::text, '')::uuid END)"
        "       IS DISTINCT FROM"
        "       (r.name, r.description, r.is_private, r.max_participants,"
        "        r.is_archived, r.image_id)"
        " RETURNING r.id", 7, params, changed, sizeof changed);
    if (rc < 0)
        return -1;
    return rc == 1 ? s_info_event (op, room->id, "room.updated") : 0;
}

static int
s_update (op_t *op)
{
    s_room_t room;
    s_update_t in;
    int rc = s_room_gate (op, S_ADMIN, true, &room);
    if (rc <= 0)
        return rc;
    rc = s_update_fields (op, &room, &in);
    if (rc <= 0)
        return rc;
    if (s_update_apply (op, &room, &in) != 0)
        return -1;
    return s_reply_room (op, 200, room.id);
}

/* Deletes the room; its participants, events and messages go with it
   (ON DELETE CASCADE). */
static int
s_delete (op_t *op)
{
    s_room_t room;
    int rc = s_room_gate (op, S_CREATOR, true, &room);
    if (rc <= 0)
        return rc;
    const char *params[] = { room.id };
    if (op_command (op, "DELETE FROM rooms WHERE id = $1::uuid", 1, params) < 0)
        return -1;
    op_reply (op, 204, NULL);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Membership: join, leave, add_participant, remove_participant
 * ------------------------------------------------------------------------ */

static void
s_room_full (op_t *op)
{
    op_detail (op, 409, "This room is full.");
}

static bool
s_room_pair (const s_room_t *room)
{
    return strcmp (room->type, "group") != 0;
}

static int
s_join (op_t *op)
{
    s_room_t room;
    int rc = s_room_gate (op, S_SEE, true, &room);
    if (rc <= 0)
        return rc;
    if (!room.member && room.count >= room.max_participants) {
        s_room_full (op);
        return 0;
    }
    if (!room.member && (s_add_member (op, room.id, op->user_id) < 0
                         || s_ensure_admin (op, room.id) != 0))
        return -1;
    return s_reply_room (op, 200, room.id);
}

static int
s_leave (op_t *op)
{
    s_room_t room;
    int rc = s_room_gate (op, S_MEMBER, true, &room);
    if (rc <= 0)
        return rc;
    if (s_remove_member (op, room.id, op->user_id) < 0)
        return -1;
    op_reply (op, 204, NULL);
    return 0;
}

/* The admin gate plus the `user` body field, for add/remove_participant.
   Returns 1 allowed, 0 answered, -1 failure. */
static int
s_member_gate (op_t *op, s_room_t *room, const char **user)
{
    int rc = s_room_gate (op, S_ADMIN, true, room);
    if (rc <= 0)
        return rc;
    if (s_body_user (op, user) < 0)
        return 0;
    if (s_room_pair (room)) {
        op_detail (op, 400, "The members of a direct or ai room cannot be changed.");
        return 0;
    }
    return 1;
}

static int
s_add_participant (op_t *op)
{
    s_room_t room;
    const char *user;
    int rc = s_member_gate (op, &room, &user);
    if (rc <= 0)
        return rc;
    const char *params[] = { user, room.id };
    char member[8];
    rc = op_query_text (op,
        "SELECT EXISTS (SELECT 1 FROM room_participants"
        "                WHERE user_id = $1::uuid AND room_id = $2::uuid)::text"
        "  FROM users WHERE id = $1::uuid", 2, params, member, sizeof member);
    if (rc <= 0) {
        if (rc == 0)
            op_not_found (op);
        return rc;
    }
    if (strcmp (member, "true") != 0) {
        if (room.count >= room.max_participants) {
            s_room_full (op);
            return 0;
        }
        if (s_add_member (op, room.id, user) < 0)
            return -1;
    }
    return s_reply_room (op, 200, room.id);
}

static int
s_remove_participant (op_t *op)
{
    s_room_t room;
    const char *user;
    int rc = s_member_gate (op, &room, &user);
    if (rc <= 0)
        return rc;
    const char *params[] = { room.id, user };
    char creator[8];
    if (op_query_text (op, "SELECT (created_by IS NOT DISTINCT FROM $2::uuid)::text"
                           "  FROM rooms WHERE id = $1::uuid",
                       2, params, creator, sizeof creator) < 0)
        return -1;
    if (strcmp (creator, "true") == 0 && strcmp (user, op->user_id) != 0) {
        op_detail (op, 403, "The room's creator cannot be removed.");
        return 0;
    }
    rc = s_remove_member (op, room.id, user);
    if (rc <= 0) {
        if (rc == 0)
            op_not_found (op);
        return rc;
    }
    return s_reply_room (op, 200, room.id);
}

/* ---------------------------------------------------------------------------
 * mark_read, messages, events
 * ------------------------------------------------------------------------ */

/* Tells the room's participants that the caller read up to `message`
   (ephemeral read.receipt, delivered after COMMIT). */
static void
s_receipt_event (op_t *op, const char *room, const char *message, json_t *result)
{
    json_t *read_at = json_object_get (result, "read_at");
    json_t *payload = json_pack ("{s:s s:s s:s s:s s:O s:O}",
        "type", "read.receipt", "room", room, "message", message,
        "user", op->user_id, "read_at", read_at, "ts", read_at);
    op_user_event (op, json_incref (json_object_get (result, "users")),
                   "read.receipt", payload);
}

static int
s_mark_read (op_t *op)
{
    s_room_t room;
    const char *message;
    int rc = s_room_gate (op, S_MEMBER, false, &room);
    if (rc <= 0)
        return rc;
    if ((rc = op_body_uuid (op, "message", &message)) <= 0) {
        if (rc == 0)
            op_field_error (op, "message", "This field is required.");
        return 0;
    }
    const char *params[] = { message, room.id, op->user_id };
    json_t *result = op_query_json (op,
        "SELECT json_build_object ("
        "    'updated', parley_mark_read ($2::uuid, $3::uuid, m.seq),"
        "    'read_at', parley_ts (now ()),"
        "    'users', (SELECT json_agg (p.user_id ORDER BY p.joined_at)"
        "                FROM room_participants p WHERE p.room_id = $2::uuid))"
        "  FROM messages m WHERE m.id = $1::uuid AND m.room_id = $2::uuid",
        3, params);
    if (!result)
        return -1;
    if (json_is_null (result)) {
        json_decref (result);
        op_not_found (op);
        return 0;
    }
    json_int_t updated = json_integer_value (json_object_get (result, "updated"));
    if (updated > 0)
        s_receipt_event (op, room.id, message, result);
    json_decref (result);
    op_reply (op, 200, json_pack ("{s:I}", "updated", updated));
    return 0;
}

/* Reads an optional integer query argument as text for SQL (NULL absent).
   Returns 0 ok, -1 answered. */
static int
s_query_seq (op_t *op, const char *name, char *out, size_t size, const char **param)
{
    long long value;
    int rc = op_query_int (op, name, &value);
    if (rc < 0)
        return -1;
    *param = NULL;
    if (rc == 1) {
        snprintf (out, size, "%lld", value);
        *param = out;
    }
    return 0;
}

/* GET rooms/{id}/messages/: newest first, ?ordering=seq for oldest first,
   strict ?before_seq= / ?after_seq=. Anyone who sees the room may read.
   The WHERE names only the conditions given (no "$n IS NULL OR ..."), so
   PostgreSQL settles on one generic plan per shape instead of planning
   every execution afresh. */
static int
s_messages (op_t *op)
{
    s_room_t room;
    int rc = s_room_gate (op, S_SEE, false, &room);
    if (rc <= 0)
        return rc;
    char before[24], after[24];
    const char *before_p, *after_p, *ordering = "-seq";
    if (s_query_seq (op, "before_seq", before, sizeof before, &before_p) < 0
        || s_query_seq (op, "after_seq", after, sizeof after, &after_p) < 0)
        return 0;
    op_query_string (op, "ordering", &ordering);
    const char *params[5] = { op->user_id, op->base, room.id };
    int n = 3;
    char where[160] = " FROM messages m WHERE m.room_id = $3::uuid";
    if (before_p) {
        params[n++] = before_p;
        snprintf (where + strlen (where), sizeof where - strlen (where),
                  " AND m.seq < $%d::bigint", n);
    }
    if (after_p) {
        params[n++] = after_p;
        snprintf (where + strlen (where), sizeof where - strlen (where),
                  " AND m.seq > $%d::bigint", n);
    }
    char count_sql[256], list_sql[320];
    snprintf (count_sql, sizeof count_sql, "SELECT count(*), $1::uuid, $2::text%s", where);
    snprintf (list_sql, sizeof list_sql,
              "SELECT parley_message_json(m, $1::uuid, $2)%s ORDER BY m.seq%s"
              " LIMIT $%d OFFSET $%d", where,
              strcmp (ordering, "seq") == 0 ? "" : " DESC", n + 1, n + 2);
    /* every row of the room, tombstones included, is listed: the room's
       messages_count is the count (no count(*), which is O(room size)) */
    long long count = before_p || after_p ? -1 : room.messages_count;
    return op_list_counted (op, count, count_sql, list_sql, n, params);
}

/* GET rooms/{id}/events/?after_seq=: the stored room events, oldest first.
   Participants only: only they receive the room's events live. */
static int
s_events (op_t *op)
{
    s_room_t room;
    int rc = s_room_gate (op, S_MEMBER, false, &room);
    if (rc <= 0)
        return rc;
    char after[24] = "0";
    const char *after_p;
    if (s_query_seq (op, "after_seq", after, sizeof after, &after_p) < 0)
        return 0;
    const char *params[] = { room.id, after_p ? after_p : "0" };
    return op_list (op,
        "SELECT count(*) FROM room_events WHERE room_id = $1::uuid AND seq > $2::bigint",
        "SELECT payload FROM room_events WHERE room_id = $1::uuid AND seq > $2::bigint"
        " ORDER BY seq LIMIT $3 OFFSET $4", 2, params);
}

const op_def_t ops_rooms[] = {
    { "rooms.list", s_list, false },
    { "rooms.create", s_create, false },
    { "rooms.retrieve", s_retrieve, false },
    { "rooms.update", s_update, false },
    { "rooms.delete", s_delete, false },
    { "rooms.join", s_join, false },
    { "rooms.leave", s_leave, false },
    { "rooms.add_participant", s_add_participant, false },
    { "rooms.remove_participant", s_remove_participant, false },
    { "rooms.mark_read", s_mark_read, false },
    { "rooms.messages", s_messages, false },
    { "rooms.events", s_events, false },
    { NULL, NULL, false }
};
