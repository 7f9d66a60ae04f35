/*  actors/ops/messages.c — the messages operations (API.md §2.2).
 *
 *  Visibility (API.md §0): a caller sees the messages of the rooms they
 *  participate in and of public group rooms; anything else is 404. Posting
 *  needs participation (403 for a visible public room).
 *
 *  Every write takes the room's row lock first (op_room_access /
 *  op_message_access with lock), the lock parley_next_seq takes anyway, so
 *  writers to one room queue in one order and the checks below see the
 *  message as the previous writer left it. Each change appends its room
 *  event in the same transaction (002_json.sql) and is recorded with
 *  op_room_event for fan-out after COMMIT.
 *
 *  Choices where API.md is silent (see docs/messages.md):
 *  - `system` messages over REST: room admins only (403 otherwise); trusted
 *    services send them over the ZeroMQ inject (op_is_service), as any
 *    participant. Only the inject may set `stream_id` (1-255 characters, an
 *    assistant's streamed reply, API.md §3); REST ignores the field.
 *  - An archived room is read-only: create, forward, edit, delete, pin and
 *    unpin answer 403.
 *  - `content` is trimmed (Unicode whitespace) and stored trimmed; text and
 *    system need 1-10 000 characters, other types allow 0-10 000 (a caption).
 *  - `location` is validated and kept on any type; required for location.
 *  - `attachment` only on image|video|audio|file (400 otherwise), required
 *    there; it must be visible to the caller (uploaded by them, or posted in
 *    a room they are in; else 404 like any invisible object) and its mime
 *    must fit the type (image/..., video/..., audio/...; any for file).
 *  - `client_id`: at most 255 characters; the same sender + client_id
 *    answers the first message (200), whatever the rest of the body says.
 *  - Mentions: `@username` (letters digits `_.-`, not preceded by one of
 *    those or `@`; a trailing `.`/`-` is also tried without it) of a
 *    participant, and `@all` / `@room` for every participant; never the
 *    sender. Edits recompute them (and clear mentions_processed_at when
 *    they change, so the mentions job notifies the new ones once).
 *  - Edit: the sender, while a participant; PUT needs `content`, PATCH
 *    without it changes nothing; the same content again is no edit. A
 *    deleted message cannot be edited (400).
 *  - Delete: the sender (even after leaving a public room) or a room admin.
 *    The tombstone also loses its location, mentions, pin and edit history.
 *    Deleting a deleted message answers 204 again, with no second event.
 *  - Pin/unpin: any participant; the event only when the flag changes; a
 *    deleted message cannot be pinned (400).
 *  - Forward: copies content, type (system becomes text), attachment and
 *    location; no mentions (nobody is pinged by a forward); a deleted
 *    source answers 400; an optional `client_id` works as in create.
 *  - ?room= naming an invisible room answers 404; before_seq/after_seq
 *    without ?room= answer 400 naming the parameter.
 */
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_CONTENT_MAX    10000
#define S_CLIENT_ID_MAX  255

/* A message about to be inserted; strings are borrowed except `content`. */
typedef struct {
    const char *room;
    const char *type;
    char *content;            /* trimmed, owned                          */
    const char *attachment;
    const char *reply_to;
    const char *forward_from;
    const char *client_id;
    const char *stream_id;    /* inject only                             */
    char latitude[32];        /* "" when no location                     */
    char longitude[32];
    char *mentions;           /* uuid[] literal, owned                   */
} s_draft_t;

static void
s_draft_free (s_draft_t *draft)
{
    free (draft->content);
    free (draft->mentions);
    *draft = (s_draft_t) { 0 };
}

static const char *const s_types[] = {
    "text", "image", "video", "audio", "file", "location", "system", NULL
};

static bool
s_is_type (const char *type)
{
    for (int i = 0; s_types[i]; i++)
        if (strcmp (s_types[i], type) == 0)
            return true;
    return false;
}

static bool
s_is_media (const char *type)
{
    return strcmp (type, "image") == 0 || strcmp (type, "video") == 0
        || strcmp (type, "audio") == 0 || strcmp (type, "file") == 0;
}

/* --- content -------------------------------------------------------------- */

/* A copy of `text` without leading and trailing Unicode whitespace
   (caller owns). */
static char *
s_trim (const char *text)
{
    const char *start = text, *end = text, *p = text;
    bool leading = true;
    uint32_t cp;
    size_t len;
    while ((len = op_utf8_decode (p, &cp)) > 0) {
        bool space = op_unicode_is_space (cp);
        if (leading && space)
            start = p + len;
        else if (!space) {
            leading = false;
            end = p + len;
        }
        p += len;
    }
    if (end < start)
        end = start;
    return strndup (start, (size_t) (end - start));
}

static size_t
s_char_count (const char *text)
{
    size_t count = 0, len;
    uint32_t cp;
    while ((len = op_utf8_decode (text, &cp)) > 0) {
        text += len;
        count++;
    }
    return count;
}

static bool
s_needs_text (const char *type)
{
    return strcmp (type, "text") == 0 || strcmp (type, "system") == 0;
}

/* Reads and checks `content` for a message of `type`: sets *out (trimmed,
   caller owns; "" when absent). `required` makes an absent field a 400.
   Returns 0, 1 when absent and not required, -1 after answering 400. */
static int
s_read_content (op_t *op, const char *type, bool required, char **out)
{
    const char *raw = NULL;
    int rc = op_body_string (op, "content", &raw);
    if (rc < 0)
        return -1;
    if (rc == 0 && required) {
        op_field_error (op, "content", "This field is required.");
        return -1;
    }
    *out = s_trim (rc ? raw : "");
    if (rc == 0)
        return 1;
    bool needs_text = s_needs_text (type);
    if (needs_text && **out == '\0') {
        op_field_error (op, "content", "This field may not be blank.");
        return -1;
    }
    if (s_char_count (*out) > S_CONTENT_MAX) {
        op_field_error (op, "content", "Ensure this field has no more than 10000 characters.");
        return -1;
    }
    return 0;
}

/* --- mentions ------------------------------------------------------------- */

static bool
s_is_name_char (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        || c == '_' || c == '.' || c == '-';
}

/* Writes "name" (and the name without trailing .- when different) into
   the text[] literal being written to `out`; sets *all for @all / @room. */
static void
s_add_candidate (const char *name, size_t len, FILE *out, bool *all)
{
    if ((len == 3 && strncmp (name, "all", 3) == 0)
        || (len == 4 && strncmp (name, "room", 4) == 0))
        *all = true;
    fprintf (out, "%s\"%.*s\"", ftell (out) > 1 ? "," : "", (int) len, name);
    size_t bare = len;
    while (bare > 0 && (name[bare - 1] == '.' || name[bare - 1] == '-'))
        bare--;
    if (bare > 0 && bare < len)
        s_add_candidate (name, bare, out, all);
}

/* The @names in `content` as a text[] literal (caller frees). */
static char *
s_mention_names (const char *content, bool *all)
{
    char *names = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&names, &size);
    fputc ('{', out);
    *all = false;
    for (const char *p = content; *p; p++) {
        if (*p != '@' || (p > content && (s_is_name_char (p[-1]) || p[-1] == '@')))
            continue;
        size_t len = 0;
        while (s_is_name_char (p[1 + len]))
            len++;
        if (len > 0 && len <= 150)
            s_add_candidate (p + 1, len, out, all);
        p += len;
    }
    fputc ('}', out);
    fclose (out);
    return names;
}

/* Fills draft->mentions with the participants of draft->room that
   `content` mentions, never `sender`. Returns 0 or -1. */
static int
s_mentions (op_t *op, s_draft_t *draft, const char *sender)
{
    bool all;
    char *names = s_mention_names (draft->content, &all);
    free (draft->mentions);
    draft->mentions = NULL;
    if (!all && strcmp (names, "{}") == 0) {
        draft->mentions = names;
        return 0;
    }
    const char *params[] = { draft->room, sender, names, all ? "true" : "false" };
    PGresult *res = op_exec (op,
        "SELECT coalesce (array_agg (p.user_id ORDER BY p.joined_at, p.user_id),"
        "                 '{}')::text"
        "  FROM room_participants p JOIN users u ON u.id = p.user_id"
        " WHERE p.room_id = $1::uuid AND p.user_id <> $2::uuid"
        "   AND ($4::boolean OR u.username = ANY ($3::text[]))", 4, params);
    free (names);
    if (!res)
        return -1;
    draft->mentions = strdup (PQgetvalue (res, 0, 0));
    PQclear (res);
    return draft->mentions ? 0 : -1;
}

/* --- body fields ---------------------------------------------------------- */

/* `location` {latitude, longitude}: numbers in range. 0, -1 after 400. */
static int
s_read_location (op_t *op, s_draft_t *draft)
{
    json_t *loc = json_object_get (op->body, "location");
    if (!loc || json_is_null (loc)) {
        if (strcmp (draft->type, "location") == 0) {
            op_field_error (op, "location", "This field is required.");
            return -1;
        }
        return 0;
    }
    json_t *lat = json_object_get (loc, "latitude");
    json_t *lon = json_object_get (loc, "longitude");
    if (!json_is_object (loc) || !json_is_number (lat) || !json_is_number (lon)) {
        op_field_error (op, "location",
                        "Expected an object with numbers latitude and longitude.");
        return -1;
    }
    double la = json_number_value (lat), lo = json_number_value (lon);
    if (!isfinite (la) || !isfinite (lo) || la < -90 || la > 90 || lo < -180 || lo > 180) {
        op_field_error (op, "location",
                        "latitude must be within -90..90 and longitude within -180..180.");
        return -1;
    }
    snprintf (draft->latitude, sizeof draft->latitude, "%.17g", la);
    snprintf (draft->longitude, sizeof draft->longitude, "%.17g", lo);
    return 0;
}

/* `client_id`: 1-255 characters when present. 0, -1 after 400. */
static int
s_read_client_id (op_t *op, s_draft_t *draft)
{
    if (op_body_string (op, "client_id", &draft->client_id) < 0)
        return -1;
    if (draft->client_id && (!*draft->client_id
                             || s_char_count (draft->client_id) > S_CLIENT_ID_MAX)) {
        op_field_error (op, "client_id", "Must be 1-255 characters.");
        return -1;
    }
    return 0;
}

/* `stream_id`, from the inject only: 1-255 characters. 0, -1 after 400. */
static int
s_read_stream_id (op_t *op, s_draft_t *draft)
{
    if (!op_is_service (op) || op_body_string (op, "stream_id", &draft->stream_id) <= 0)
        return 0;
    if (!*draft->stream_id || s_char_count (draft->stream_id) > S_CLIENT_ID_MAX) {
        op_field_error (op, "stream_id", "Must be 1-255 characters.");
        return -1;
    }
    return 0;
}

/* The fields of a create body that need no database. 0, -1 after 400. */
static int
s_read_draft (op_t *op, s_draft_t *draft)
{
    draft->type = "text";
    int rc = op_body_uuid (op, "room", &draft->room);
    if (rc == 0)
        op_field_error (op, "room", "This field is required.");
    if (rc <= 0)
        return -1;
    if (op_body_string (op, "message_type", &draft->type) < 0)
        return -1;
    if (!s_is_type (draft->type)) {
        op_field_error (op, "message_type", "Must be one of text, image, video, audio,"
                                            " file, location, system.");
        return -1;
    }
    if (op_body_uuid (op, "reply_to", &draft->reply_to) < 0
        || op_body_uuid (op, "forward_from", &draft->forward_from) < 0
        || op_body_uuid (op, "attachment", &draft->attachment) < 0
        || s_read_client_id (op, draft) < 0
        || s_read_stream_id (op, draft) < 0)
        return -1;
    if (s_read_content (op, draft->type, s_needs_text (draft->type), &draft->content) < 0)
        return -1;
    return s_read_location (op, draft);
}

/* --- references (need the database) -------------------------------------- */

/* reply_to: visible (404) and in the same room (400). 1 ok, 0 answered. */
static int
s_check_reply_to (op_t *op, s_draft_t *draft)
{
    if (!draft->reply_to)
        return 1;
    op_access_t parent;
    if (op_message_access (op, draft->reply_to, false, &parent) < 0)
        return -1;
    if (parent.role == OP_ROLE_NONE) {
        op_not_found (op);
        return 0;
    }
    if (strcmp (parent.room, draft->room) != 0) {
        op_field_error (op, "reply_to", "The message replied to must be in the same room.");
        return 0;
    }
    return 1;
}

/* forward_from: visible (404), not deleted (400). 1 ok, 0 answered. */
static int
s_check_forward_from (op_t *op, s_draft_t *draft)
{
    if (!draft->forward_from)
        return 1;
    op_access_t source;
    if (op_message_access (op, draft->forward_from, false, &source) < 0)
        return -1;
    if (source.role == OP_ROLE_NONE) {
        op_not_found (op);
        return 0;
    }
    if (source.deleted) {
        op_field_error (op, "forward_from", "A deleted message cannot be forwarded.");
        return 0;
    }
    return 1;
}

/* attachment: required by media types only, visible to the caller (404),
   its mime fitting the type (400). 1 ok, 0 answered, -1 failed. */
static int
s_check_attachment (op_t *op, s_draft_t *draft)
{
    bool media = s_is_media (draft->type);
    if (!draft->attachment) {
        if (media)
            op_field_error (op, "attachment", "This field is required.");
        return media ? 0 : 1;
    }
    if (!media) {
        op_field_error (op, "attachment",
                        "Only image, video, audio and file messages carry an attachment.");
        return 0;
    }
    const char *params[] = { draft->attachment, op->user_id };
    char mime[256] = "";
    int found = op_query_text (op,
        "SELECT a.mime FROM attachments a WHERE a.id = $1::uuid AND a.revoked_at IS NULL"
        "   AND (a.uploader_id = $2::uuid OR EXISTS ("
        "        SELECT 1 FROM messages m JOIN room_participants p"
        "            ON p.room_id = m.room_id AND p.user_id = $2::uuid"
        "         WHERE m.attachment_id = a.id))", 2, params, mime, sizeof mime);
    if (found <= 0) {
        if (found == 0)
            op_not_found (op);
        return found;
    }
    size_t prefix = strlen (draft->type);
    /* SVG is served as a download, never as an image (media.h) */
    if (strcmp (draft->type, "file") != 0
        && (strncmp (mime, draft->type, prefix) != 0 || mime[prefix] != '/'
            || strstr (mime, "svg"))) {
        op_field_error (op, "attachment", "The attachment does not fit message_type.");
        return 0;
    }
    return 1;
}

/* --- answers -------------------------------------------------------------- */

/* Answers `status` with message `id` rendered for the caller. */
static int
s_reply_message (op_t *op, int status, const char *id)
{
    const char *params[] = { id, op->user_id, op->base };
    int rc = op_query_reply (op, status,
        "SELECT parley_message_json (m, $2::uuid, $3) FROM messages m"
        " WHERE m.id = $1::uuid", 3, params);
    if (rc == 0)
        op_not_found (op);
    return rc < 0 ? -1 : 0;
}

/* Runs `sql`, a change returning (event jsonb, message jsonb) rows — none
   when nothing changed. Records the event, answers `status` with the
   message. Returns 1 changed, 0 nothing changed, -1 failed. */
static int
s_apply (op_t *op, const char *sql, int n, const char *const *params, int status)
{
    PGresult *res = op_exec (op, sql, n, params);
    if (!res)
        return -1;
    int changed = PQntuples (res) > 0;
    if (changed) {
        json_t *event = json_loads (PQgetvalue (res, 0, 0), 0, NULL);
        json_t *message = PQgetisnull (res, 0, 1)
            ? NULL : json_loads (PQgetvalue (res, 0, 1), 0, NULL);
        op_room_event (op, json_string_value (json_object_get (event, "room")),
                       json_integer_value (json_object_get (event, "seq")),
                       json_string_value (json_object_get (event, "type")), event);
        op_reply (op, status, message);
    }
    PQclear (res);
    return changed;
}

/* --- sending -------------------------------------------------------------- */

/* The message with its seq and message.new event, and the sender's receipt
   (the reads trigger raises their last_read_seq), in one statement. */
#define S_INSERT_SQL                                                               \
    "WITH m AS (INSERT INTO messages (room_id, seq, sender_id, content, message_type," \
    "                                 attachment_id, latitude, longitude, reply_to,"  \
    "                                 forward_from, mentions, client_id, stream_id)"  \
    "           VALUES ($1::uuid, parley_next_seq ($1::uuid), $2::uuid, $3, $4,"      \
    "                   $5::uuid, $6::float8, $7::float8, $8::uuid, $9::uuid,"        \
    "                   $10::uuid[], $11, $13)"                                       \
    "           RETURNING *),"                                                        \
    " r AS (INSERT INTO reads (message_id, user_id, room_id)"                         \
    "       SELECT id, sender_id, room_id FROM m)"                                    \
    "SELECT m.seq, parley_message_event (m, 'message.new', $12, m.sender_id),"        \
    "       (SELECT room_type FROM rooms WHERE id = m.room_id) FROM m"

/* Inserts the message; answers 201 with it. Returns 0, or -1 on failure. */
static int
s_insert (op_t *op, s_draft_t *d)
{
    const char *params[] = {
        d->room, op->user_id, d->content, d->type, d->attachment,
        d->latitude[0] ? d->latitude : NULL, d->longitude[0] ? d->longitude : NULL,
        d->reply_to, d->forward_from, d->mentions, d->client_id, op->base, d->stream_id
    };
    PGresult *res = op_exec (op, S_INSERT_SQL, 13, params);
    if (!res)
        return -1;
    long long seq = strtoll (PQgetvalue (res, 0, 0), NULL, 10);
    json_t *event = json_loads (PQgetvalue (res, 0, 1), 0, NULL);
    char room_type[8];
    snprintf (room_type, sizeof room_type, "%s", PQgetvalue (res, 0, 2));
    PQclear (res);
    if (!event)
        return -1;
    char id[40];
    snprintf (id, sizeof id, "%s",
              json_string_value (json_object_get (json_object_get (event, "message"), "id")));
    op_reply (op, 201, json_incref (json_object_get (event, "message")));
    op_room_event (op, d->room, seq, "message.new", event);
    op_room_event_room_type (op, room_type);    /* ai rooms: also ai.<room> */
    /* notifications (API.md §2.6) in the same transaction; a group message
       without mentions makes none */
    if (strcmp (room_type, "direct") != 0 && (!d->mentions || strcmp (d->mentions, "{}") == 0))
        return 0;
    return ops_notify_message (op, id) < 0 ? -1 : 0;
}

/* s_insert, idempotent on (sender, client_id): the caller's message with
   that client_id was looked up first (op_room_access_for_send), so the unique
   index can only be raced by a send with the same key committed meanwhile
   on another connection (another room's persister, another node). Then
   the insert fails with 23505 (no savepoint of its own: two round trips
   per message saved) and the persister runs the operation once more from
   its savepoint (actors/persister.c s_run_op), which finds the winner's
   message and answers it (200). Returns 0 or -1. */
static int
s_send (op_t *op, s_draft_t *d)
{
    return s_insert (op, d);
}

/* Who may post into the room: participants (404 invisible, 403 visible),
   not into an archived room (403); `system` needs a room admin. The room
   stays locked. 1 allowed, 0 answered, -1 failed. */
static int
s_may_post (op_t *op, const op_access_t *room, const char *type)
{
    if (room->role == OP_ROLE_NONE) {
        op_not_found (op);
        return 0;
    }
    if (room->role == OP_ROLE_VISITOR) {
        op_detail (op, 403, "You must join this room to post in it.");
        return 0;
    }
    if (room->archived) {
        op_detail (op, 403, "This room is archived.");
        return 0;
    }
    if (strcmp (type, "system") == 0 && room->role != OP_ROLE_ADMIN
        && !op_is_service (op)) {
        op_detail (op, 403, "Only room admins may post system messages.");
        return 0;
    }
    return 1;
}

/* Locks the room a send goes to and answers what ends the send early: 404
   for a room the caller cannot see, or the first message of a client_id
   sent before. Returns 1 to go on, 0 when answered, -1 on failure. */
static int
s_send_target (op_t *op, s_draft_t *d, op_access_t *room)
{
    char existing[40];
    if (op_room_access_for_send (op, d->room, d->client_id, room, existing,
                                 sizeof existing) < 0)
        return -1;
    if (room->role == OP_ROLE_NONE) {
        op_not_found (op);
        return 0;
    }
    if (existing[0])           /* that client_id was sent before: its message */
        return s_reply_message (op, 200, existing);
    return 1;
}

/* The checks and the send that follow a valid body. */
static int
s_create_checked (op_t *op, s_draft_t *d)
{
    op_access_t room;
    int ok = s_send_target (op, d, &room);
    if (ok != 1)
        return ok;
    ok = s_may_post (op, &room, d->type);
    if (ok == 1)
        ok = s_check_reply_to (op, d);
    if (ok == 1)
        ok = s_check_forward_from (op, d);
    if (ok == 1)
        ok = s_check_attachment (op, d);
    if (ok == 1)
        ok = s_mentions (op, d, op->user_id) < 0 ? -1 : 1;
    if (ok != 1)
        return ok;
    return s_send (op, d);
}

/* POST messages/ */
static int
s_create (op_t *op)
{
    s_draft_t draft = { 0 };
    int rc = 0;
    if (s_read_draft (op, &draft) == 0)
        rc = s_create_checked (op, &draft);
    s_draft_free (&draft);
    return rc;
}

/* --- reading -------------------------------------------------------------- */

/* Loads message `id` for the caller: 1 visible, 0 answered 404, -1. */
static int
s_load (op_t *op, const char *id, bool lock, op_access_t *access)
{
    if (op_message_access (op, id, lock, access) < 0)
        return -1;
    if (access->role == OP_ROLE_NONE) {
        op_not_found (op);
        return 0;
    }
    return 1;
}

/* GET messages/{id}/ */
static int
s_retrieve (op_t *op)
{
    op_access_t access;
    int rc = s_load (op, op_param (op, "id"), false, &access);
    return rc <= 0 ? rc : s_reply_message (op, 200, op_param (op, "id"));
}

/* The filters of a list: WHERE text and its parameters ($1 viewer, $2
   base come first). */
typedef struct {
    char where[2048];
    const char *params[16];
    int n;
} s_filter_t;

static void
s_filter_add (s_filter_t *f, const char *condition, const char *value)
{
    f->params[f->n++] = value;
    size_t used = strlen (f->where);
    snprintf (f->where + used, sizeof f->where - used, condition, f->n);
}

/* Reads the optional filters. 0, or -1 after 400. */
static int
s_list_filters (op_t *op, s_filter_t *f, bool in_room)
{
    const char *value;
    int rc;
    if ((rc = op_query_uuid (op, "sender", &value)) < 0)
        return -1;
    if (rc)
        s_filter_add (f, " AND m.sender_id = $%d::uuid", value);
    if (op_query_string (op, "message_type", &value)) {
        if (!s_is_type (value)) {
            op_field_error (op, "message_type", "Select a valid choice.");
            return -1;
        }
        s_filter_add (f, " AND m.message_type = $%d", value);
    }
    if ((rc = op_query_uuid (op, "reply_to", &value)) < 0)
        return -1;
    if (rc)
        s_filter_add (f, " AND m.reply_to = $%d::uuid", value);
    bool pinned;
    if ((rc = op_query_bool (op, "is_pinned", &pinned)) < 0)
        return -1;
    if (rc)
        s_filter_add (f, " AND m.is_pinned = $%d::boolean", pinned ? "true" : "false");
    if (op_query_string (op, "search", &value))
        s_filter_add (f, " AND m.search @@ websearch_to_tsquery ('simple', $%d)", value);
    const char *names[] = { "before_seq", "after_seq" };
    const char *conditions[] = { " AND m.seq < $%d::bigint", " AND m.seq > $%d::bigint" };
    for (int i = 0; i < 2; i++) {
        long long seq;
        if ((rc = op_query_int (op, names[i], &seq)) < 0)
            return -1;
        if (rc && !in_room) {
            op_field_error (op, names[i], "Requires the room filter.");
            return -1;
        }
        if (rc)
            s_filter_add (f, conditions[i], json_string_value (json_object_get (op->query,
                                                                                 names[i])));
    }
    return 0;
}

/* GET messages/ */
static int
s_list (op_t *op)
{
    s_filter_t f = { .params = { op->user_id, op->base }, .n = 2 };
    const char *room;
    int in_room = op_query_uuid (op, "room", &room);
    if (in_room < 0)
        return 0;
    op_access_t access = { .messages_count = -1 };
    if (in_room) {
        if (op_room_access (op, room, false, &access) < 0)
            return -1;
        if (access.role == OP_ROLE_NONE) {
            op_not_found (op);
            return 0;
        }
        s_filter_add (&f, "m.room_id = $%d::uuid", room);
    }
    else
        snprintf (f.where, sizeof f.where, "m.room_id IN (SELECT p.room_id"
                  " FROM room_participants p WHERE p.user_id = arg.viewer)");
    if (s_list_filters (op, &f, in_room) < 0)
        return 0;
    const char *ordering = "-seq";
    op_query_string (op, "ordering", &ordering);
    bool ascending = strcmp (ordering, "seq") == 0 || strcmp (ordering, "created_at") == 0;
    const char *order = in_room ? (ascending ? "m.seq" : "m.seq DESC")
                                : (ascending ? "m.created_at, m.seq, m.id"
                                             : "m.created_at DESC, m.seq DESC, m.id DESC");
    char count_sql[2400], list_sql[2600];
    snprintf (count_sql, sizeof count_sql, "SELECT count(*) FROM (SELECT $1::uuid AS viewer,"
              " $2::text AS base) arg, messages m WHERE %s", f.where);
    snprintf (list_sql, sizeof list_sql, "SELECT parley_message_json (m, arg.viewer, arg.base)"
              " FROM (SELECT $1::uuid AS viewer, $2::text AS base) arg, messages m"
              " WHERE %s ORDER BY %s LIMIT $%d OFFSET $%d", f.where, order, f.n + 1, f.n + 2);
    /* ?room= alone lists every row of the room, tombstones included: the
       room's messages_count is the count. Any other filter: count(*). */
    long long count = in_room && f.n == 3 ? access.messages_count : -1;
    return op_list_counted (op, count, count_sql, list_sql, f.n, f.params);
}

/* GET messages/{id}/thread/ — the replies, oldest first. */
static int
s_thread (op_t *op)
{
    op_access_t access;
    int rc = s_load (op, op_param (op, "id"), false, &access);
    if (rc <= 0)
        return rc;
    const char *params[] = { op->user_id, op->base, op_param (op, "id") };
    return op_list (op,
        "SELECT count(*) FROM (SELECT $1::uuid AS viewer, $2::text AS base) arg,"
        " messages m WHERE m.reply_to = $3::uuid",
        "SELECT parley_message_json (m, arg.viewer, arg.base)"
        "  FROM (SELECT $1::uuid AS viewer, $2::text AS base) arg, messages m"
        " WHERE m.reply_to = $3::uuid ORDER BY m.seq LIMIT $4 OFFSET $5", 3, params);
}

/* GET messages/{id}/history/ — earlier versions, oldest first. */
static int
s_history (op_t *op)
{
    op_access_t access;
    int rc = s_load (op, op_param (op, "id"), false, &access);
    if (rc <= 0)
        return rc;
    const char *params[] = { op_param (op, "id") };
    return op_list (op,
        "SELECT count(*) FROM message_edits e WHERE e.message_id = $1::uuid",
        "SELECT parley_message_edit_json (e) FROM message_edits e"
        " WHERE e.message_id = $1::uuid ORDER BY e.edited_at, e.id"
        " LIMIT $2 OFFSET $3", 1, params);
}

/* --- changing ------------------------------------------------------------- */

/* A write to a loaded message: 403 for a visitor (unless `visitor_ok`)
   and in an archived room. 1 allowed, 0 answered. */
static int
s_may_change (op_t *op, const op_access_t *access, bool visitor_ok)
{
    if (access->role == OP_ROLE_VISITOR && !visitor_ok) {
        op_forbidden (op);
        return 0;
    }
    if (access->archived) {
        op_detail (op, 403, "This room is archived.");
        return 0;
    }
    return 1;
}

/* One clock reading for the edit row, edited_at and updated_at: several
   edits of one message in one group commit still order by time. */
#define S_EDIT_SQL                                                                   \
    "WITH t AS (SELECT clock_timestamp () AS at),"                                   \
    " e AS (INSERT INTO message_edits (message_id, content, edited_at)"              \
    "       SELECT m.id, m.content, t.at FROM messages m, t WHERE m.id = $1::uuid),"  \
    " m AS (UPDATE messages SET content = $4, is_edited = true, edited_at = t.at,"   \
    "              updated_at = t.at, mentions = $5::uuid[],"                        \
    "              mentions_processed_at = CASE WHEN mentions = $5::uuid[]"          \
    "                                      THEN mentions_processed_at END"           \
    "         FROM t WHERE id = $1::uuid RETURNING messages.*)"                      \
    "SELECT parley_message_event (m, 'message.updated', $3, $2::uuid),"              \
    "       parley_message_json (m, $2::uuid, $3) FROM m"

/* Replaces the content with d->content unless it is the same. 0 or -1. */
static int
s_edit_content (op_t *op, s_draft_t *d, const char *sender)
{
    const char *id = op_param (op, "id");
    const char *same[] = { id, d->content };
    char found[8] = "";
    int unchanged = op_query_text (op, "SELECT 'same' FROM messages"
                                       " WHERE id = $1::uuid AND content = $2",
                                   2, same, found, sizeof found);
    if (unchanged != 0)
        return unchanged < 0 ? -1 : s_reply_message (op, 200, id);
    if (s_mentions (op, d, sender) < 0)
        return -1;
    const char *params[] = { id, op->user_id, op->base, d->content, d->mentions };
    int rc = s_apply (op, S_EDIT_SQL, 5, params, 200);
    return rc < 0 ? -1 : 0;
}

/* Edits the loaded message with the body's content (PATCH without it
   changes nothing). 0 or -1. */
static int
s_edit (op_t *op, const op_access_t *access)
{
    const char *id = op_param (op, "id");
    const char *params[] = { id };
    char type[16] = "";
    if (op_query_text (op, "SELECT message_type FROM messages WHERE id = $1::uuid", 1,
                       params, type, sizeof type) < 0)
        return -1;
    s_draft_t d = { .room = access->room };
    int rc = s_read_content (op, type, strcmp (op->method, "PUT") == 0, &d.content);
    if (rc == 0)
        rc = s_edit_content (op, &d, access->sender);
    else
        rc = rc == 1 ? s_reply_message (op, 200, id) : 0;
    s_draft_free (&d);
    return rc;
}

/* PUT/PATCH messages/{id}/ — the sender, content only. */
static int
s_update (op_t *op)
{
    op_access_t access;
    int rc = s_load (op, op_param (op, "id"), true, &access);
    if (rc <= 0)
        return rc;
    if (strcmp (access.sender, op->user_id) != 0) {
        op_detail (op, 403, "Only the sender may edit a message.");
        return 0;
    }
    if (!s_may_change (op, &access, false))
        return 0;
    if (access.deleted) {
        op_detail (op, 400, "A deleted message cannot be edited.");
        return 0;
    }
    return s_edit (op, &access);
}

#define S_DELETE_SQL                                                                 \
    "WITH m AS (UPDATE messages SET is_deleted = true, content = '',"                \
    "                  attachment_id = NULL, latitude = NULL, longitude = NULL,"     \
    "                  mentions = '{}', is_pinned = false"                           \
    "            WHERE id = $1::uuid AND NOT is_deleted RETURNING *),"               \
    " e AS (DELETE FROM message_edits WHERE message_id IN (SELECT id FROM m))"       \
    "SELECT parley_message_event (m, 'message.deleted', $3, $2::uuid), NULL::jsonb"  \
    "  FROM m"

/* DELETE messages/{id}/ — the sender or a room admin; soft. */
static int
s_delete (op_t *op)
{
    op_access_t access;
    int rc = s_load (op, op_param (op, "id"), true, &access);
    if (rc <= 0)
        return rc;
    bool sender = strcmp (access.sender, op->user_id) == 0;
    if (!sender && access.role != OP_ROLE_ADMIN) {
        op_detail (op, 403, "Only the sender or a room admin may delete a message.");
        return 0;
    }
    if (!s_may_change (op, &access, true))
        return 0;
    const char *params[] = { op_param (op, "id"), op->user_id, op->base };
    if (s_apply (op, S_DELETE_SQL, 3, params, 204) < 0)
        return -1;
    op_reply (op, 204, NULL);
    return 0;
}

/* pin/ and unpin/: any participant; an event only when the flag changes. */
static int
s_set_pinned (op_t *op, bool pinned)
{
    op_access_t access;
    int rc = s_load (op, op_param (op, "id"), true, &access);
    if (rc <= 0 || !s_may_change (op, &access, false))
        return rc < 0 ? -1 : 0;
    if (pinned && access.deleted) {
        op_detail (op, 400, "A deleted message cannot be pinned.");
        return 0;
    }
    const char *params[] = { op_param (op, "id"), op->user_id, op->base };
    rc = s_apply (op, pinned
        ? "WITH m AS (UPDATE messages SET is_pinned = true"
          "            WHERE id = $1::uuid AND NOT is_pinned RETURNING *)"
          "SELECT parley_message_event (m, 'message.pinned', $3, $2::uuid),"
          "       parley_message_json (m, $2::uuid, $3) FROM m"
        : "WITH m AS (UPDATE messages SET is_pinned = false"
          "            WHERE id = $1::uuid AND is_pinned RETURNING *)"
          "SELECT parley_message_event (m, 'message.unpinned', $3, $2::uuid),"
          "       parley_message_json (m, $2::uuid, $3) FROM m", 3, params, 200);
    if (rc < 0)
        return -1;
    return rc == 1 ? 0 : s_reply_message (op, 200, op_param (op, "id"));
}

static int
s_pin (op_t *op)
{
    return s_set_pinned (op, true);
}

static int
s_unpin (op_t *op)
{
    return s_set_pinned (op, false);
}

/* --- forward -------------------------------------------------------------- */

/* Copies the source message into the draft (system becomes text; no
   mentions). Returns 0 or -1. */
static int
s_copy_source (op_t *op, s_draft_t *d, char type[16], char attachment[40])
{
    const char *params[] = { d->forward_from };
    PGresult *res = op_exec (op,
        "SELECT message_type, content, attachment_id, latitude, longitude"
        "  FROM messages WHERE id = $1::uuid", 1, params);
    if (!res)
        return -1;
    snprintf (type, 16, "%s", strcmp (PQgetvalue (res, 0, 0), "system") == 0
                              ? "text" : PQgetvalue (res, 0, 0));
    d->type = type;
    d->content = strdup (PQgetvalue (res, 0, 1));
    snprintf (attachment, 40, "%s", PQgetvalue (res, 0, 2));
    d->attachment = attachment[0] ? attachment : NULL;
    snprintf (d->latitude, sizeof d->latitude, "%s", PQgetvalue (res, 0, 3));
    snprintf (d->longitude, sizeof d->longitude, "%s", PQgetvalue (res, 0, 4));
    d->mentions = strdup ("{}");
    PQclear (res);
    return d->content && d->mentions ? 0 : -1;
}

/* Checks the target room (locked) and sends the copy. 0 or -1. */
static int
s_forward_to (op_t *op, s_draft_t *d)
{
    op_access_t room;
    int ok = s_send_target (op, d, &room);
    if (ok != 1)
        return ok;
    if (s_may_post (op, &room, "text") != 1)
        return 0;
    char type[16], attachment[40];
    if (s_copy_source (op, d, type, attachment) < 0)
        return -1;
    return s_send (op, d);
}

/* POST messages/{id}/forward/ {"room", "client_id"?} — 201, a new message
   with forward_from. */
static int
s_forward (op_t *op)
{
    op_access_t source;
    int rc = s_load (op, op_param (op, "id"), false, &source);
    if (rc <= 0)
        return rc;
    s_draft_t d = { .forward_from = op_param (op, "id") };
    rc = op_body_uuid (op, "room", &d.room);
    if (rc == 0)
        op_field_error (op, "room", "This field is required.");
    if (rc <= 0 || s_read_client_id (op, &d) < 0)
        return 0;
    if (source.deleted) {
        op_detail (op, 400, "A deleted message cannot be forwarded.");
        return 0;
    }
    rc = s_forward_to (op, &d);
    s_draft_free (&d);
    return rc;
}

const op_def_t ops_messages[] = {
    { "messages.list",     s_list,     false },
    { "messages.create",   s_create,   false },
    { "messages.retrieve", s_retrieve, false },
    { "messages.update",   s_update,   false },
    { "messages.delete",   s_delete,   false },
    { "messages.history",  s_history,  false },
    { "messages.pin",      s_pin,      false },
    { "messages.unpin",    s_unpin,    false },
    { "messages.thread",   s_thread,   false },
    { "messages.forward",  s_forward,  false },
    { NULL, NULL, false }
};
