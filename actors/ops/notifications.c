/*  actors/ops/notifications.c — notifications and notification settings
 *  (API.md §2.6), and the notifications a committed message causes.
 *
 *  A caller sees only their own notifications (anyone else's is 404) and
 *  their own settings. The rules of who is notified live in one place,
 *  parley_notify_message (007_notifications.sql), which both the commit
 *  path (messages.create, messages.forward) and the process-message-mentions
 *  job call; its unique index makes the pair exactly-once.
 *
 *  Choices where API.md is silent (see docs/notifications.md):
 *  - list filters ?is_read=, ?kind= (mention|message|system), ?room=;
 *    newest first;
 *  - read/ on a notification already read answers 200 with it again;
 *  - settings: PUT is partial like PATCH (every field has a default);
 *    muted_rooms replaces the list (duplicates dropped, order kept) and
 *    must name rooms the caller can see (404 otherwise, API.md §0);
 *    a malformed value is 400 naming the field.
 */
#include "ops.h"
#include "log.h"

#include <string.h>

#define S_MUTED_MAX 1000   /* rooms one user may mute */

/* --- at commit ------------------------------------------------------------ */

int
ops_notify_message (op_t *op, const char *message_id)
{
    const char *params[] = { message_id };
    PGresult *res = op_exec (op,
        "SELECT user_id, notification::text, push FROM parley_notify_message ($1::uuid)",
        1, params);
    if (!res)
        return -1;
    char ts[32];
    log_timestamp (ts, sizeof ts);
    int rows = PQntuples (res);
    for (int i = 0; i < rows; i++) {
        const char *user = PQgetvalue (res, i, 0);
        json_t *notification = json_loads (PQgetvalue (res, i, 1), 0, NULL);
        if (!notification)
            continue;
        op_user_event (op, json_pack ("[s]", user), "notification",
                       json_pack ("{s:s s:s s:o}", "type", "notification", "ts", ts,
                                  "notification", notification));
        if (strcmp (PQgetvalue (res, i, 2), "t") == 0)
            op_user_event_push (op, json_pack ("[s]", user));
    }
    PQclear (res);
    return rows;
}

/* --- notifications/ ------------------------------------------------------- */

/* GET notifications/ ?is_read= ?kind= ?room= */
static int
s_list (op_t *op)
{
    const char *params[4] = { op->user_id, NULL, NULL, NULL };
    bool is_read;
    int rc = op_query_bool (op, "is_read", &is_read);
    if (rc < 0)
        return 0;
    if (rc)
        params[1] = is_read ? "true" : "false";
    const char *kind;
    if (op_query_string (op, "kind", &kind)) {
        if (strcmp (kind, "mention") != 0 && strcmp (kind, "message") != 0
            && strcmp (kind, "system") != 0) {
            op_field_error (op, "kind", "Select a valid choice: mention, message, system.");
            return 0;
        }
        params[2] = kind;
    }
    if (op_query_uuid (op, "room", &params[3]) < 0)
        return 0;
#define S_WHERE " WHERE n.user_id = $1::uuid AND ($2::boolean IS NULL OR n.is_read = $2)" \
                " AND ($3::text IS NULL OR n.kind = $3) AND ($4::uuid IS NULL OR n.room_id = $4)"
    return op_list (op, "SELECT count(*) FROM notifications n" S_WHERE,
                    "SELECT parley_notification_json (n) FROM notifications n" S_WHERE
                    " ORDER BY n.created_at DESC, n.id DESC LIMIT $5 OFFSET $6", 4, params);
#undef S_WHERE
}

/* Answers `status` with the result of `sql` ($1 id, $2 caller) or 404. */
static int
s_one (op_t *op, const char *sql)
{
    const char *params[] = { op_param (op, "id"), op->user_id };
    int rc = op_query_reply (op, 200, sql, 2, params);   /* the text as it is */
    if (rc == 0)
        op_not_found (op);
    return rc < 0 ? -1 : 0;
}

/* GET notifications/{id}/ */
static int
s_retrieve (op_t *op)
{
    return s_one (op, "SELECT parley_notification_json (n) FROM notifications n"
                      " WHERE n.id = $1::uuid AND n.user_id = $2::uuid");
}

/* POST notifications/{id}/read/ — 200 with the notification. */
static int
s_read (op_t *op)
{
    return s_one (op, "WITH n AS (UPDATE notifications SET is_read = true"
                      "            WHERE id = $1::uuid AND user_id = $2::uuid RETURNING *)"
                      " SELECT parley_notification_json (n::notifications) FROM n");
}

/* POST notifications/read_all/ — 200 {"updated": N}. */
static int
s_read_all (op_t *op)
{
    const char *params[] = { op->user_id };
    long updated = op_command (op, "UPDATE notifications SET is_read = true"
                                   " WHERE user_id = $1::uuid AND NOT is_read", 1, params);
    if (updated < 0)
        return -1;
    op_reply (op, 200, json_pack ("{s:I}", "updated", (json_int_t) updated));
    return 0;
}

/* --- notification-settings/me/ -------------------------------------------- */

static int
s_settings_reply (op_t *op)
{
    const char *params[] = { op->user_id };
    /* every user has a row from registration (trigger); make sure anyway */
    if (op_command (op, "INSERT INTO notification_settings (user_id) VALUES ($1::uuid)"
                        " ON CONFLICT (user_id) DO NOTHING", 1, params) < 0)
        return -1;
    json_t *settings = op_query_json (op, "SELECT parley_settings_json (s)"
                                          " FROM notification_settings s"
                                          " WHERE s.user_id = $1::uuid", 1, params);
    if (!settings)
        return -1;
    op_reply (op, 200, settings);
    return 0;
}

/* GET notification-settings/me/ */
static int
s_settings_me (op_t *op)
{
    return s_settings_reply (op);
}

/* Reads muted_rooms into a uuid[] literal (caller frees); every room must
   be visible to the caller. 1 ok, 0 answered (400/404), -1 failed. */
static int
s_read_muted (op_t *op, json_t *rooms, char **out)
{
    if (json_array_size (rooms) > S_MUTED_MAX) {
        op_field_error (op, "muted_rooms", "Ensure this field has no more than 1000 elements.");
        return 0;
    }
    char *literal = NULL;
    size_t size = 0;
    FILE *buffer = open_memstream (&literal, &size);
    fputc ('{', buffer);
    size_t i;
    json_t *room;
    int rc = 1;
    json_array_foreach (rooms, i, room) {
        const char *id = json_string_value (room);
        if (!op_is_uuid (id)) {
            op_field_error (op, "muted_rooms", "Must be a list of valid UUIDs.");
            rc = 0;
            break;
        }
        op_access_t access;
        if (op_room_access (op, id, false, &access) < 0) {
            rc = -1;
            break;
        }
        if (access.role == OP_ROLE_NONE) {
            op_not_found (op);
            rc = 0;
            break;
        }
        fprintf (buffer, "%s%s", i ? "," : "", id);
    }
    fputc ('}', buffer);
    fclose (buffer);
    if (rc == 1)
        *out = literal;
    else
        free (literal);
    return rc;
}

/* The settings fields of the body as text parameters (email_enabled,
   push_enabled, mentions_only, muted_rooms, email_delay_minutes); NULL
   entries stay unchanged. `delay` holds the minutes' text, `muted` the
   rooms' literal (caller frees). 1 ok, 0 answered, -1 failed. */
static int
s_read_settings (op_t *op, const char *values[5], char delay[24], char **muted)
{
    static const char *const flags[] = { "email_enabled", "push_enabled", "mentions_only" };
    for (int i = 0; i < 3; i++) {
        bool value;
        int rc = op_body_bool (op, flags[i], &value);
        if (rc < 0)
            return 0;
        if (rc)
            values[i] = value ? "true" : "false";
    }
    long long minutes;
    int rc = op_body_int (op, "email_delay_minutes", &minutes);
    if (rc < 0)
        return 0;
    if (rc && (minutes < 0 || minutes > 1440)) {
        op_field_error (op, "email_delay_minutes", "Must be between 0 and 1440.");
        return 0;
    }
    if (rc) {
        snprintf (delay, 24, "%lld", minutes);
        values[4] = delay;
    }
    json_t *rooms;
    rc = op_body_array (op, "muted_rooms", &rooms);
    if (rc < 0)
        return 0;
    if (rc) {
        int ok = s_read_muted (op, rooms, muted);
        if (ok <= 0)
            return ok;
    }
    values[3] = rc ? *muted : NULL;
    return 1;
}

/* PUT/PATCH notification-settings/me/ — every field optional. */
static int
s_settings_update (op_t *op)
{
    const char *values[5] = { NULL };
    char delay[24], *muted = NULL;
    int rc = s_read_settings (op, values, delay, &muted);
    if (rc == 1) {
        const char *params[] = { op->user_id, values[0], values[1], values[2], values[3],
                                 values[4] };
        rc = op_command (op,
            "INSERT INTO notification_settings AS s (user_id) VALUES ($1::uuid)"
            " ON CONFLICT (user_id) DO UPDATE SET"
            "  email_enabled = coalesce ($2::boolean, s.email_enabled),"
            "  push_enabled = coalesce ($3::boolean, s.push_enabled),"
            "  mentions_only = coalesce ($4::boolean, s.mentions_only),"
            "  muted_rooms = coalesce ((SELECT array_agg (r ORDER BY o)"
            "                             FROM (SELECT r, min (o) AS o FROM unnest ($5::uuid[])"
            "                                   WITH ORDINALITY AS x (r, o) GROUP BY r) d),"
            "                          CASE WHEN $5::uuid[] IS NULL THEN s.muted_rooms"
            "                               ELSE '{}'::uuid[] END),"
            "  email_delay_minutes = coalesce ($6::integer, s.email_delay_minutes)",
            6, params) < 0 ? -1 : 1;
    }
    free (muted);
    if (rc <= 0)
        return rc;
    /* the upsert above ran on the existing row: answer it */
    return s_settings_reply (op);
}

const op_def_t ops_notifications[] = {
    { "notifications.list",     s_list,            false },
    { "notifications.retrieve", s_retrieve,        false },
    { "notifications.read",     s_read,            false },
    { "notifications.read_all", s_read_all,        false },
    { "settings.me",            s_settings_me,     false },
    { "settings.update",        s_settings_update, false },
    { NULL, NULL, false }
};
