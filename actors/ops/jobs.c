/*  actors/ops/jobs.c — the database parts of the scheduled jobs (API.md
 *  §2.9), run by a persister inside its group-commit transaction like any
 *  operation, so the tables keep one owner. Only the scheduler asks for
 *  them: the request carries `internal: {"job": <task run id>}`, which the
 *  gateway never sets (no route names these operations either); anything
 *  else gets 404. See actors/scheduler.c for how a job strings its steps
 *  together, and docs/scheduler.md.
 *
 *  jobs.process_mentions   {limit}            -> {items, notifications, more}
 *  jobs.presence_candidates{after, limit, stale_seconds} -> {users, last, more}
 *  jobs.presence_expire    {users, stale_seconds}        -> {items}
 *  jobs.presence_sync      {users}            -> {items, repaired}
 *  jobs.email_prepare      {after, limit}     -> {emails, last, more}
 *  jobs.email_commit       {sent: [{user, rooms}]}       -> {items, stamped}
 */
#include "ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_LINE_CHARS   200    /* a message line in an email        */
#define S_EMAIL_ROOMS  20     /* rooms listed in one email         */

/* true for a request from the scheduler; 404 otherwise. */
static bool
s_internal (op_t *op)
{
    if (json_is_object (op->internal) && json_object_get (op->internal, "job"))
        return true;
    op_not_found (op);
    return false;
}

/* The body's `name` as a bounded positive count (default `fallback`). */
static long long
s_count (op_t *op, const char *name, long long fallback, long long max)
{
    long long value = json_integer_value (json_object_get (op->body, name));
    return value < 1 ? fallback : value > max ? max : value;
}

/* The body's `after` id, or NULL. */
static const char *
s_after (op_t *op)
{
    const char *after = json_string_value (json_object_get (op->body, "after"));
    return op_is_uuid (after) ? after : NULL;
}

/* --- process-message-mentions --------------------------------------------- */

/* Messages with mentions not yet processed (a crash between commit and
   notification cannot happen — both are one transaction — but an edit that
   changes mentions clears mentions_processed_at). Rows another transaction
   holds are skipped: they are in flight and will be seen next time. */
static int
s_process_mentions (op_t *op)
{
    if (!s_internal (op))
        return 0;
    char limit[24];
    snprintf (limit, sizeof limit, "%lld", s_count (op, "limit", 200, 1000));
    const char *params[] = { limit };
    PGresult *res = op_exec (op,
        "SELECT id FROM messages WHERE mentions_processed_at IS NULL AND mentions <> '{}'"
        " ORDER BY created_at LIMIT $1::integer FOR UPDATE SKIP LOCKED", 1, params);
    if (!res)
        return -1;
    int rows = PQntuples (res);
    long long created = 0;
    for (int i = 0; i < rows; i++) {
        int n = ops_notify_message (op, PQgetvalue (res, i, 0));
        if (n < 0) {
            PQclear (res);
            return -1;
        }
        created += n;
    }
    PQclear (res);
    op_reply (op, 200, json_pack ("{s:i s:I s:b}", "items", rows, "notifications",
                                  (json_int_t) created, "more", rows == atoi (limit)));
    return 0;
}

/* --- cleanup-expired-presence / sync-presence-to-database ----------------- */

/* Users whose connection-driven presence began more than stale_seconds ago:
   the ones whose liveness the presence actor is asked about. */
static int
s_presence_candidates (op_t *op)
{
    if (!s_internal (op))
        return 0;
    char limit[24], stale[24];
    snprintf (limit, sizeof limit, "%lld", s_count (op, "limit", 500, 5000));
    snprintf (stale, sizeof stale, "%lld", s_count (op, "stale_seconds", 90, 86400));
    const char *params[] = { s_after (op), limit, stale };
    json_t *users = op_query_json (op,
        "SELECT coalesce (json_agg (user_id ORDER BY user_id), '[]') FROM ("
        " SELECT user_id FROM presence WHERE online_since IS NOT NULL"
        "    AND online_since < now () - make_interval (secs => $3::integer)"
        "    AND ($1::uuid IS NULL OR user_id > $1::uuid)"
        "  ORDER BY user_id LIMIT $2::integer) c", 3, params);
    if (!users)
        return -1;
    size_t n = json_array_size (users);
    json_t *last = n ? json_incref (json_array_get (users, n - 1)) : json_null ();
    op_reply (op, 200, json_pack ("{s:o s:o s:b}", "users", users, "last", last,
                                  "more", (long long) n == atoll (limit)));
    return 0;
}

/* Runs the operation `name` (presence.online / presence.offline, in
   actors/ops/ws.c: the one place their rules live) as `user`. Returns 1
   when it changed the user's status, 0 when not, -1 failed. */
static int
s_run_as (op_t *op, const char *name, const char *user)
{
    const op_def_t *def = ops_lookup (name);
    if (!def)
        return -1;
    snprintf (op->user_id, sizeof op->user_id, "%s", user);
    int rc = def->fn (op);
    op->user_id[0] = '\0';
    if (rc < 0)
        return -1;
    return json_is_true (json_object_get (op->response, "changed")) ? 1 : 0;
}

/* Takes offline the users (not live in Redis, by the presence actor) whose
   presence is still stale: online time added, last_seen set, `presence`
   event to the people who share a room with them. */
static int
s_presence_expire (op_t *op)
{
    if (!s_internal (op))
        return 0;
    char stale[24];
    snprintf (stale, sizeof stale, "%lld", s_count (op, "stale_seconds", 90, 86400));
    long long items = 0;
    size_t i;
    json_t *user;
    json_array_foreach (json_object_get (op->body, "users"), i, user) {
        const char *id = json_string_value (user);
        if (!op_is_uuid (id))
            continue;
        const char *params[] = { id, stale };
        char found[8];
        int still = op_query_text (op,
            "SELECT 'yes' FROM presence WHERE user_id = $1::uuid AND online_since IS NOT NULL"
            "   AND online_since < now () - make_interval (secs => $2::integer)",
            2, params, found, sizeof found);
        if (still < 0)
            return -1;
        if (still == 0)
            continue;          /* reconnected meanwhile */
        int rc = s_run_as (op, "presence.offline", id);
        if (rc < 0)
            return -1;
        items++;
    }
    op_reply (op, 200, json_pack ("{s:I}", "items", (json_int_t) items));
    return 0;
}

/* Copies live presence (the users with a live connection somewhere, from
   Redis) into the tables: a live user whose record says they are not
   connected (a lost write, or an expiry while Redis was unreachable) is
   brought online again, and every live user's activity last_seen becomes
   now. */
static int
s_presence_sync (op_t *op)
{
    if (!s_internal (op))
        return 0;
    json_t *users = json_object_get (op->body, "users");
    long long repaired = 0;
    size_t i;
    json_t *user;
    json_t *valid = json_array ();
    json_array_foreach (users, i, user) {
        const char *id = json_string_value (user);
        if (!op_is_uuid (id))
            continue;
        json_array_append (valid, user);
        const char *params[] = { id };
        char found[8];
        int missing = op_query_text (op, "SELECT 'yes' FROM presence WHERE user_id = $1::uuid"
                                         " AND online_since IS NULL", 1, params, found,
                                     sizeof found);
        if (missing > 0)
            missing = s_run_as (op, "presence.online", id) < 0 ? -1 : 1;
        if (missing < 0) {
            json_decref (valid);
            return -1;
        }
        repaired += missing;
    }
    char *list = json_dumps (valid, JSON_COMPACT);
    json_decref (valid);
    const char *params[] = { list };
    long updated = op_command (op,
        "UPDATE users SET last_seen = now () WHERE id IN"
        " (SELECT (value #>> '{}')::uuid FROM jsonb_array_elements ($1::jsonb))", 1, params);
    free (list);
    if (updated < 0)
        return -1;
    op_reply (op, 200, json_pack ("{s:I s:I}", "items", (json_int_t) updated,
                                  "repaired", (json_int_t) repaired));
    return 0;
}

/* --- send-message-notification-emails ------------------------------------- */

/* Writes `text` on one line: control characters become spaces, at most
   S_LINE_CHARS characters (then "..."). */
static void
s_write_line (FILE *out, const char *text)
{
    size_t chars = 0, len;
    uint32_t cp;
    for (const char *p = text; (len = op_utf8_decode (p, &cp)) > 0; p += len) {
        if (chars++ == S_LINE_CHARS) {
            fputs ("...", out);
            return;
        }
        if (cp < 0x20 || cp == 0x7F || cp == 0x2028 || cp == 0x2029)
            fputc (' ', out);
        else
            fwrite (p, 1, len, out);
    }
}

/* One room's section of the email. */
static void
s_write_room (FILE *out, json_t *room)
{
    long long count = json_integer_value (json_object_get (room, "count"));
    fputc ('\n', out);
    s_write_line (out, json_string_value (json_object_get (room, "name")));
    fprintf (out, " (%lld unread message%s)\n", count, count == 1 ? "" : "s");
    size_t i;
    json_t *line;
    json_t *lines = json_object_get (room, "lines");
    if (count > (long long) json_array_size (lines))
        fputs ("  ...\n", out);
    json_array_foreach (lines, i, line) {
        const char *content = json_string_value (json_object_get (line, "content"));
        const char *at = json_string_value (json_object_get (line, "created_at"));
        fprintf (out, "  [%.10s %.5s UTC] ", at ? at : "", at && strlen (at) > 11 ? at + 11 : "");
        s_write_line (out, json_string_value (json_object_get (line, "sender")));
        fputs (": ", out);
        if (content && *content)
            s_write_line (out, content);
        else
            fprintf (out, "[%s]", json_string_value (json_object_get (line, "message_type")));
        fputc ('\n', out);
    }
}

/* The email for one digest row: {user, to, subject, text, rooms: [{room,
   from_seq, to_seq}]} (caller owns). */
static json_t *
s_email (const char *user, const char *to, const char *name, json_t *rooms)
{
    long long total = 0;
    size_t i, count = json_array_size (rooms);
    json_t *room, *ranges = json_array ();
    json_array_foreach (rooms, i, room) {
        total += json_integer_value (json_object_get (room, "count"));
        json_array_append_new (ranges, json_pack ("{s:O s:O s:O}",
            "room", json_object_get (room, "room"),
            "from_seq", json_object_get (room, "from_seq"),
            "to_seq", json_object_get (room, "to_seq")));
    }
    char subject[300];
    if (count == 1) {
        char *first = NULL;
        size_t size = 0;
        FILE *out = open_memstream (&first, &size);
        s_write_line (out, json_string_value (json_object_get (json_array_get (rooms, 0),
                                                               "name")));
        fclose (out);
        snprintf (subject, sizeof subject, "%lld unread message%s in %s", total,
                  total == 1 ? "" : "s", first);
        free (first);
    }
    else
        snprintf (subject, sizeof subject, "%lld unread messages in %zu conversations",
                  total, count);
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    fputs ("Hello ", out);
    s_write_line (out, name);
    fprintf (out, ",\n\nyou have %lld unread message%s on Parley.\n", total,
             total == 1 ? "" : "s");
    json_array_foreach (rooms, i, room) {
        if (i == S_EMAIL_ROOMS) {
            fprintf (out, "\n... and %zu more conversation%s.\n", count - i,
                     count - i == 1 ? "" : "s");
            break;
        }
        s_write_room (out, room);
    }
    fputs ("\n-- \nYou get this email because email notifications are on for your"
           "\nParley account; change that in your notification settings.\n", out);
    fclose (out);
    json_t *email = json_pack ("{s:s s:s s:s s:s s:o}", "user", user, "to", to,
                               "subject", subject, "text", text ? text : "", "rooms", ranges);
    free (text);
    return email;
}

/* The next `limit` users' emails (users with id > after), nothing changed. */
static int
s_email_prepare (op_t *op)
{
    if (!s_internal (op))
        return 0;
    char limit[24];
    snprintf (limit, sizeof limit, "%lld", s_count (op, "limit", 50, 500));
    const char *params[] = { s_after (op), limit };
    PGresult *res = op_exec (op,
        "SELECT user_id, email, name, rooms::text"
        "  FROM parley_email_digests ($1::uuid, $2::integer)", 2, params);
    if (!res)
        return -1;
    json_t *emails = json_array ();
    int rows = PQntuples (res);
    for (int i = 0; i < rows; i++) {
        json_t *rooms = json_loads (PQgetvalue (res, i, 3), 0, NULL);
        if (rooms)
            json_array_append_new (emails, s_email (PQgetvalue (res, i, 0),
                                                    PQgetvalue (res, i, 1),
                                                    PQgetvalue (res, i, 2), rooms));
        json_decref (rooms);
    }
    json_t *last = rows ? json_string (PQgetvalue (res, rows - 1, 0)) : json_null ();
    PQclear (res);
    op_reply (op, 200, json_pack ("{s:o s:o s:b}", "emails", emails, "last", last,
                                  "more", rows == atoi (limit)));
    return 0;
}

/* Records the emails the SMTP server accepted: cursors advance, covered
   notifications get emailed_at. */
static int
s_email_commit (op_t *op)
{
    if (!s_internal (op))
        return 0;
    long long items = 0, stamped = 0;
    size_t i;
    json_t *sent;
    json_array_foreach (json_object_get (op->body, "sent"), i, sent) {
        const char *user = json_string_value (json_object_get (sent, "user"));
        json_t *rooms = json_object_get (sent, "rooms");
        if (!op_is_uuid (user) || !json_is_array (rooms))
            continue;
        char *text = json_dumps (rooms, JSON_COMPACT);
        const char *params[] = { user, text };
        char count[24] = "0";
        int rc = op_query_text (op, "SELECT parley_email_sent ($1::uuid, $2::jsonb)", 2,
                                params, count, sizeof count);
        free (text);
        if (rc < 0)
            return -1;
        items++;
        stamped += atoll (count);
    }
    op_reply (op, 200, json_pack ("{s:I s:I}", "items", (json_int_t) items, "stamped",
                                  (json_int_t) stamped));
    return 0;
}

const op_def_t ops_jobs[] = {
    { "jobs.process_mentions",    s_process_mentions,    true },
    { "jobs.presence_candidates", s_presence_candidates, true },
    { "jobs.presence_expire",     s_presence_expire,     true },
    { "jobs.presence_sync",       s_presence_sync,       true },
    { "jobs.email_prepare",       s_email_prepare,       true },
    { "jobs.email_commit",        s_email_commit,        true },
    { NULL, NULL, false }
};
