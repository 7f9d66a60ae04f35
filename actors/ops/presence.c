/*  actors/ops/presence.c — presence records over REST (API.md §2.5).
 *
 *  Every user has one record, made by the users_created trigger at
 *  registration. A caller sees their own record and those of the people who
 *  share a room with them; others' records are read-only (403), invisible
 *  ones 404. An `invisible` user shows as `offline` to everyone else
 *  (parley_presence_json renders the viewer's view).
 *
 *  The table is the truth, written through on every change: the user shards
 *  (actors/user.c) move it online/offline as connections come and go, and
 *  every change is announced as a `presence` event to the people who share
 *  a room with the user (ops_presence_broadcast). Every change goes through
 *  parley_presence_set (003_presence.sql), which keeps away_since and
 *  last_seen the same way for every path that changes presence.
 */
#include "ops.h"

#include <string.h>

#define PRESENCE_CUSTOM_MAX 100   /* characters */
#define PRESENCE_EMOJI_MAX  64    /* bytes, as a reaction's emoji */

/* The record `p` is visible to the caller ($1): their own, or a user who
   shares a room with them. */
#define PRESENCE_VISIBLE                                                    \
    "(p.user_id = $1::uuid OR EXISTS (SELECT 1 FROM room_participants a"    \
    " JOIN room_participants b ON b.room_id = a.room_id"                    \
    " WHERE a.user_id = $1::uuid AND b.user_id = p.user_id))"

typedef struct {
    const char *status;        /* NULL: unchanged */
    const char *custom_status;
    const char *status_emoji;
} presence_input_t;

static const char *const s_statuses[] = {
    "online", "away", "busy", "offline", "invisible", NULL
};

/* --- input ---------------------------------------------------------------- */

static size_t
s_chars (const char *text)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        n += (*p & 0xC0) != 0x80;
    return n;
}

static int
s_read_status (op_t *op, presence_input_t *in)
{
    json_t *value = op->body ? json_object_get (op->body, "status") : NULL;
    if (!value)
        return 0;
    if (json_is_null (value)) {
        op_field_error (op, "status", "This field may not be null.");
        return -1;
    }
    if (!json_is_string (value)) {
        op_field_error (op, "status", "Not a valid string.");
        return -1;
    }
    for (const char *const *s = s_statuses; *s; s++)
        if (strcmp (*s, json_string_value (value)) == 0) {
            in->status = *s;
            return 0;
        }
    char message[160];
    snprintf (message, sizeof message, "\"%.100s\" is not a valid choice.",
              json_string_value (value));
    op_field_error (op, "status", message);
    return -1;
}

/* A text field; null clears it (the columns hold '' for "none"). */
static int
s_read_text (op_t *op, const char *field, const char **out)
{
    json_t *value = op->body ? json_object_get (op->body, field) : NULL;
    if (json_is_null (value))
        *out = "";
    else if (value && !json_is_string (value)) {
        op_field_error (op, field, "Not a valid string.");
        return -1;
    }
    else if (value)
        *out = json_string_value (value);
    return 0;
}

/* Reads {status?, custom_status?, status_emoji?}; answers 400 naming the
   field and returns -1 on bad input. */
static int
s_read_input (op_t *op, presence_input_t *in)
{
    *in = (presence_input_t) { NULL, NULL, NULL };
    if (s_read_status (op, in) != 0
        || s_read_text (op, "custom_status", &in->custom_status) != 0
        || s_read_text (op, "status_emoji", &in->status_emoji) != 0)
        return -1;
    if (in->custom_status && s_chars (in->custom_status) > PRESENCE_CUSTOM_MAX) {
        op_field_error (op, "custom_status",
                        "Ensure this field has no more than 100 characters.");
        return -1;
    }
    if (in->status_emoji && strlen (in->status_emoji) > PRESENCE_EMOJI_MAX) {
        op_field_error (op, "status_emoji", "Ensure this field has no more than 64 bytes.");
        return -1;
    }
    return 0;
}

/* --- the caller's record ---------------------------------------------------- */

/* Answers 200 with the caller's record, or 404 when they have none. */
static int
s_reply_own (op_t *op, int status)
{
    const char *params[] = { op->user_id };
    json_t *record = op_query_json (op, "SELECT parley_presence_json(p, $1::uuid)"
                                        " FROM presence p WHERE p.user_id = $1::uuid",
                                    1, params);
    if (!record)
        return -1;
    if (json_is_null (record)) {
        json_decref (record);
        op_not_found (op);
        return 0;
    }
    op_reply (op, status, record);
    return 0;
}

/* Applies `in` to the caller's record and answers 200 with it. */
static int
s_apply (op_t *op, const presence_input_t *in)
{
    const char *params[] = { op->user_id, in->status, in->custom_status, in->status_emoji };
    json_t *record = op_query_json (op,
        "SELECT parley_presence_json(s, $1::uuid)"
        " FROM parley_presence_set($1::uuid, $2, $3, $4) s", 4, params);
    if (!record)
        return -1;
    if (json_is_null (record)) {
        json_decref (record);
        op_not_found (op);
        return 0;
    }
    op_reply (op, 200, record);
    return ops_presence_broadcast (op);
}

/* Reads the body and applies it to the caller's record. */
static int
s_update_own (op_t *op)
{
    presence_input_t in;
    if (s_read_input (op, &in) != 0)
        return 0;
    return s_apply (op, &in);
}

static int
s_me (op_t *op)
{
    return s_reply_own (op, 200);
}

static int
s_me_update (op_t *op)
{
    return s_update_own (op);
}

/* POST presence/: every user already has a record, so "create" answers the
   caller's (200), with the body's fields applied when it has any. */
static int
s_create (op_t *op)
{
    presence_input_t in;
    if (s_read_input (op, &in) != 0)
        return 0;
    if (!in.status && !in.custom_status && !in.status_emoji)
        return s_reply_own (op, 200);
    return s_apply (op, &in);
}

/* --- records by id ---------------------------------------------------------- */

/* Whose is record {id}? 1: the caller's; 0: answered (403 for a visible
   record of someone else, 404 otherwise); -1: database failure. */
static int
s_own_record (op_t *op)
{
    const char *params[] = { op->user_id, op_param (op, "id") };
    char owner[40];
    int found = op_query_text (op, "SELECT p.user_id FROM presence p"
                                   " WHERE p.id = $2::uuid AND " PRESENCE_VISIBLE,
                               2, params, owner, sizeof owner);
    if (found < 0)
        return -1;
    if (found == 0)
        op_not_found (op);
    else if (strcmp (owner, op->user_id) != 0)
        op_forbidden (op);
    return found == 1 && strcmp (owner, op->user_id) == 0;
}

static int
s_retrieve (op_t *op)
{
    const char *params[] = { op->user_id, op_param (op, "id") };
    json_t *record = op_query_json (op, "SELECT parley_presence_json(p, $1::uuid)"
                                        " FROM presence p WHERE p.id = $2::uuid AND "
                                        PRESENCE_VISIBLE, 2, params);
    if (!record)
        return -1;
    if (json_is_null (record)) {
        json_decref (record);
        op_not_found (op);
        return 0;
    }
    op_reply (op, 200, record);
    return 0;
}

/* PUT and PATCH alike: every field is optional. */
static int
s_update (op_t *op)
{
    int own = s_own_record (op);
    return own == 1 ? s_update_own (op) : own;
}

/* Resets the caller's record: offline, no custom status, no emoji. */
static int
s_delete (op_t *op)
{
    int own = s_own_record (op);
    if (own != 1)
        return own;
    presence_input_t reset = { "offline", "", "" };
    int rc = s_apply (op, &reset);
    if (rc == 0 && op->status == 200)
        op_reply (op, 204, NULL);
    return rc;
}

static int
s_list (op_t *op)
{
    const char *user = NULL;
    if (op_query_uuid (op, "user", &user) < 0)
        return 0;
    const char *params[] = { op->user_id, user };
    return op_list (op,
        "SELECT count(*) FROM presence p WHERE " PRESENCE_VISIBLE
        " AND ($2::uuid IS NULL OR p.user_id = $2::uuid)",
        "SELECT parley_presence_json(p, $1::uuid) FROM presence p"
        " JOIN users u ON u.id = p.user_id WHERE " PRESENCE_VISIBLE
        " AND ($2::uuid IS NULL OR p.user_id = $2::uuid)"
        " ORDER BY u.username, p.id LIMIT $3 OFFSET $4", 2, params);
}

const op_def_t ops_presence[] = {
    { "presence.list",      s_list,      false },
    { "presence.create",    s_create,    false },
    { "presence.me",        s_me,        false },
    { "presence.me_update", s_me_update, false },
    { "presence.retrieve",  s_retrieve,  false },
    { "presence.update",    s_update,    false },
    { "presence.delete",    s_delete,    false },
    { NULL, NULL, false }
};
