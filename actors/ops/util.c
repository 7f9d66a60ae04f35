/*  actors/ops/util.c — what every operation uses: prepared statements,
 *  answers, input checks and DRF-style pagination. See ops.h. */
#include "ops.h"
#include "ops_internal.h"
#include "log.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* --- connection ----------------------------------------------------------- */

void
op_conn_init (op_conn_t *self)
{
    memset (self, 0, sizeof *self);
    self->statements = zhashx_new ();
    zhashx_set_destructor (self->statements, (zhashx_destructor_fn *) zstr_free);
}

void
op_conn_reset (op_conn_t *self)
{
    if (self->pg)
        PQfinish (self->pg);
    self->pg = NULL;
    self->renew_savepoint = false;
    zhashx_purge (self->statements);
}

bool
op_conn_renew_savepoint (op_conn_t *self)
{
    if (!self->renew_savepoint)
        return true;
    self->renew_savepoint = false;
    PGresult *res = PQexec (self->pg, "RELEASE SAVEPOINT op; SAVEPOINT op");
    bool ok = PQresultStatus (res) == PGRES_COMMAND_OK;
    PQclear (res);
    return ok;
}

void
op_conn_fini (op_conn_t *self)
{
    zhashx_destroy (&self->statements);
}

/* --- database ------------------------------------------------------------- */

static void
s_note_error (op_t *op, PGresult *res)
{
    const char *state = res ? PQresultErrorField (res, PG_DIAG_SQLSTATE) : NULL;
    snprintf (op->conn->sqlstate, sizeof op->conn->sqlstate, "%s", state ? state : "");
    if (!state || strncmp (state, "23", 2) != 0)
        log_error ("persister", "%s: %s", op->name,
                   res ? PQresultErrorMessage (res) : PQerrorMessage (op->conn->pg));
}

/* The name of `sql` (no parameters) prepared on the connection, preparing
   it now if need be; NULL when that failed. */
static const char *
s_prepared (op_conn_t *c, const char *sql)
{
    const char *name = zhashx_lookup (c->statements, sql);
    if (name)
        return name;
    char fresh[32];
    snprintf (fresh, sizeof fresh, "s%d", c->next_statement++);
    PGresult *res = PQprepare (c->pg, fresh, sql, 0, NULL);
    bool ok = PQresultStatus (res) == PGRES_COMMAND_OK;
    PQclear (res);
    if (!ok)
        return NULL;
    zhashx_insert (c->statements, sql, strdup (fresh));
    return zhashx_lookup (c->statements, sql);
}

/* The pending savepoint renewal and the prepared statement `name` in one
   round trip (pipeline mode): RELEASE SAVEPOINT op, SAVEPOINT op, the
   statement, one sync. The statement's result, or NULL when anything
   failed (then a following statement is not run: the pipeline aborts). */
static PGresult *
s_exec_renewing (op_t *op, const char *name, int n, const char *const *params)
{
    op_conn_t *c = op->conn;
    PGconn *pg = c->pg;
    const char *release = s_prepared (c, "RELEASE SAVEPOINT op");
    const char *savepoint = s_prepared (c, "SAVEPOINT op");
    if (!release || !savepoint || !PQenterPipelineMode (pg)) {
        if (!op_conn_renew_savepoint (c))
            return NULL;
        return PQexecPrepared (pg, name, n, params, NULL, NULL, 0);
    }
    c->renew_savepoint = false;
    bool sent = PQsendQueryPrepared (pg, release, 0, NULL, NULL, NULL, 0)
                && PQsendQueryPrepared (pg, savepoint, 0, NULL, NULL, NULL, 0)
                && PQsendQueryPrepared (pg, name, n, params, NULL, NULL, 0)
                && PQpipelineSync (pg);
    PGresult *out = NULL;
    bool ok = sent;
    /* three statements, each ending with a NULL, then the sync */
    for (int query = 0; sent && query < 3; query++) {
        PGresult *res;
        while ((res = PQgetResult (pg)) != NULL) {
            ExecStatusType st = PQresultStatus (res);
            if (query == 2 && !out)
                out = res;                      /* the statement's result */
            else
                PQclear (res);
            if (query < 2 && st != PGRES_COMMAND_OK)
                ok = false;
        }
    }
    if (sent) {
        PGresult *res;
        while ((res = PQgetResult (pg)) != NULL) {   /* PGRES_PIPELINE_SYNC */
            bool sync = PQresultStatus (res) == PGRES_PIPELINE_SYNC;
            PQclear (res);
            if (sync)
                break;
        }
    }
    if (!PQexitPipelineMode (pg))     /* results left unread: the connection broke */
        log_error ("persister", "%s: %s", op->name, PQerrorMessage (pg));
    if (!ok && out && PQresultStatus (out) != PGRES_FATAL_ERROR) {
        PQclear (out);        /* aborted behind a failed RELEASE/SAVEPOINT */
        out = NULL;
    }
    return out;
}

PGresult *
op_exec (op_t *op, const char *sql, int n, const char *const *params)
{
    op_conn_t *c = op->conn;
    c->sqlstate[0] = '\0';
    const char *name = zhashx_lookup (c->statements, sql);
    if (!name && !op_conn_renew_savepoint (c)) {   /* first use: prepare it first */
        s_note_error (op, NULL);
        return NULL;
    }
    if (!name) {
        char fresh[32];
        snprintf (fresh, sizeof fresh, "s%d", c->next_statement++);
        PGresult *res = PQprepare (c->pg, fresh, sql, n, NULL);
        if (PQresultStatus (res) != PGRES_COMMAND_OK) {
            s_note_error (op, res);
            PQclear (res);
            return NULL;
        }
        PQclear (res);
        zhashx_insert (c->statements, sql, strdup (fresh));
        name = zhashx_lookup (c->statements, sql);
    }
    PGresult *res = c->renew_savepoint ? s_exec_renewing (op, name, n, params)
                                       : PQexecPrepared (c->pg, name, n, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus (res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        s_note_error (op, res);
        PQclear (res);
        return NULL;
    }
    return res;
}

const char *
op_sqlstate (op_t *op)
{
    return op->conn->sqlstate;
}

json_t *
op_query_json (op_t *op, const char *sql, int n, const char *const *params)
{
    PGresult *res = op_exec (op, sql, n, params);
    if (!res)
        return NULL;
    json_t *value = NULL;
    if (PQntuples (res) == 0 || PQgetisnull (res, 0, 0))
        value = json_null ();
    else {
        json_error_t error;
        value = json_loads (PQgetvalue (res, 0, 0), JSON_DECODE_ANY, &error);
        if (!value)
            log_error ("persister", "%s: database returned bad JSON: %s", op->name,
                       error.text);
    }
    PQclear (res);
    return value;
}

int
op_query_reply (op_t *op, int status, const char *sql, int n, const char *const *params)
{
    PGresult *res = op_exec (op, sql, n, params);
    if (!res)
        return -1;
    int found = PQntuples (res) > 0 && !PQgetisnull (res, 0, 0);
    if (found) {
        size_t len = (size_t) PQgetlength (res, 0, 0);
        char *text = malloc (len + 1);
        if (!text) {
            PQclear (res);
            return -1;
        }
        memcpy (text, PQgetvalue (res, 0, 0), len + 1);
        op_reply_text (op, status, text, len);
    }
    PQclear (res);
    return found;
}

int
op_query_text (op_t *op, const char *sql, int n, const char *const *params,
               char *out, size_t out_size)
{
    PGresult *res = op_exec (op, sql, n, params);
    if (!res)
        return -1;
    int found = PQntuples (res) > 0 && !PQgetisnull (res, 0, 0);
    if (found)
        snprintf (out, out_size, "%s", PQgetvalue (res, 0, 0));
    PQclear (res);
    return found;
}

long
op_command (op_t *op, const char *sql, int n, const char *const *params)
{
    PGresult *res = op_exec (op, sql, n, params);
    if (!res)
        return -1;
    long rows = strtol (PQcmdTuples (res), NULL, 10);
    PQclear (res);
    return rows;
}

/* --- answers -------------------------------------------------------------- */

void
op_reply (op_t *op, int status, json_t *body)
{
    json_decref (op->response);
    free (op->response_text);
    op->response_text = NULL;
    op->response_len = 0;
    op->status = status;
    op->response = body;
}

void
op_reply_text (op_t *op, int status, char *text, size_t len)
{
    op_reply (op, status, NULL);
    op->response_text = text;
    op->response_len = text ? len : 0;
}

void
op_field_error (op_t *op, const char *field, const char *message)
{
    op_reply (op, 400, json_pack ("{s:[s]}", field, message));
}

void
op_detail (op_t *op, int status, const char *detail)
{
    op_reply (op, status, json_pack ("{s:s}", "detail", detail));
}

void
op_not_found (op_t *op)
{
    op_detail (op, 404, "Not found.");
}

void
op_forbidden (op_t *op)
{
    op_detail (op, 403, "You do not have permission to perform this action.");
}

void
op_header (op_t *op, const char *name, const char *value)
{
    if (!op->headers)
        op->headers = json_object ();
    json_t *values = json_object_get (op->headers, name);
    if (!values) {
        values = json_array ();
        json_object_set_new (op->headers, name, values);
    }
    json_array_append_new (values, json_string (value));
}

void
op_room_event (op_t *op, const char *room, long long seq, const char *type,
               json_t *payload)
{
    if (!op->events)
        op->events = json_array ();
    json_array_append_new (op->events, json_pack ("{s:s s:I s:s s:o}", "room", room,
                                                  "seq", (json_int_t) seq, "type", type,
                                                  "payload", payload));
}

void
op_user_event (op_t *op, json_t *users, const char *type, json_t *payload)
{
    if (!op->user_events)
        op->user_events = json_array ();
    json_array_append_new (op->user_events, json_pack ("{s:o s:s s:o}", "users", users,
                                                       "type", type, "payload", payload));
}

/* Sets `key` on the last element of `list` (an array of event records). */
static void
s_last_set (json_t *list, const char *key, json_t *value)
{
    size_t size = json_array_size (list);
    if (size)
        json_object_set_new (json_array_get (list, size - 1), key, value);
    else
        json_decref (value);
}

void
op_room_event_room_type (op_t *op, const char *room_type)
{
    s_last_set (op->events, "room_type", json_string (room_type));
}

void
op_user_event_push (op_t *op, json_t *users)
{
    s_last_set (op->user_events, "push", users);
}

bool
op_is_service (op_t *op)
{
    return json_is_true (json_object_get (op->auth, "service"));
}

/* --- input ---------------------------------------------------------------- */

bool
op_is_uuid (const char *s)
{
    if (!s || strlen (s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        }
        else if (!isxdigit ((unsigned char) s[i]))
            return false;
    }
    return true;
}

static json_t *
s_body_field (op_t *op, const char *field)
{
    json_t *value = op->body ? json_object_get (op->body, field) : NULL;
    return json_is_null (value) ? NULL : value;
}

int
op_body_string (op_t *op, const char *field, const char **out)
{
    json_t *value = s_body_field (op, field);
    if (!value)
        return 0;
    if (!json_is_string (value)) {
        op_field_error (op, field, "Not a valid string.");
        return -1;
    }
    *out = json_string_value (value);
    return 1;
}

int
op_body_uuid (op_t *op, const char *field, const char **out)
{
    json_t *value = s_body_field (op, field);
    if (!value)
        return 0;
    if (!json_is_string (value) || !op_is_uuid (json_string_value (value))) {
        op_field_error (op, field, "Must be a valid UUID.");
        return -1;
    }
    *out = json_string_value (value);
    return 1;
}

int
op_body_int (op_t *op, const char *field, long long *out)
{
    json_t *value = s_body_field (op, field);
    if (!value)
        return 0;
    if (!json_is_integer (value)) {
        op_field_error (op, field, "A valid integer is required.");
        return -1;
    }
    *out = json_integer_value (value);
    return 1;
}

int
op_body_bool (op_t *op, const char *field, bool *out)
{
    json_t *value = s_body_field (op, field);
    if (!value)
        return 0;
    if (!json_is_boolean (value)) {
        op_field_error (op, field, "Must be a valid boolean.");
        return -1;
    }
    *out = json_is_true (value);
    return 1;
}

int
op_body_array (op_t *op, const char *field, json_t **out)
{
    json_t *value = s_body_field (op, field);
    if (!value)
        return 0;
    if (!json_is_array (value)) {
        op_field_error (op, field, "Expected a list of items.");
        return -1;
    }
    *out = value;
    return 1;
}

int
op_query_string (op_t *op, const char *name, const char **out)
{
    const char *value = json_string_value (json_object_get (op->query, name));
    if (!value || !*value)
        return 0;
    *out = value;
    return 1;
}

int
op_query_uuid (op_t *op, const char *name, const char **out)
{
    const char *value;
    if (!op_query_string (op, name, &value))
        return 0;
    if (!op_is_uuid (value)) {
        op_field_error (op, name, "Must be a valid UUID.");
        return -1;
    }
    *out = value;
    return 1;
}

int
op_query_int (op_t *op, const char *name, long long *out)
{
    const char *value;
    if (!op_query_string (op, name, &value))
        return 0;
    char *end;
    errno = 0;
    long long n = strtoll (value, &end, 10);
    if (errno || *end || end == value) {
        op_field_error (op, name, "A valid integer is required.");
        return -1;
    }
    *out = n;
    return 1;
}

int
op_query_bool (op_t *op, const char *name, bool *out)
{
    const char *value;
    if (!op_query_string (op, name, &value))
        return 0;
    if (!strcasecmp (value, "true") || !strcmp (value, "1"))
        *out = true;
    else if (!strcasecmp (value, "false") || !strcmp (value, "0"))
        *out = false;
    else {
        op_field_error (op, name, "Must be a valid boolean.");
        return -1;
    }
    return 1;
}

const char *
op_param (op_t *op, const char *name)
{
    return json_string_value (json_object_get (op->params, name));
}

bool
op_is_staff (op_t *op)
{
    if (!op->user_id[0])
        return false;
    char staff[8] = "";
    const char *params[] = { op->user_id };
    op_query_text (op, "SELECT is_staff::text FROM users WHERE id = $1", 1, params,
                   staff, sizeof staff);
    return strcmp (staff, "true") == 0;
}

/* --- pagination ----------------------------------------------------------- */

int
op_page (op_t *op, long long *limit, long long *offset)
{
    long long page = 1, size = 50;
    const char *text;
    if (op_query_string (op, "page", &text)) {
        char *end;
        page = strtoll (text, &end, 10);
        if (*end || page < 1) {
            op_detail (op, 404, "Invalid page.");
            return -1;
        }
    }
    if (op_query_string (op, "page_size", &text)) {
        char *end;
        size = strtoll (text, &end, 10);
        if (*end || size < 1)
            size = 50;      /* DRF ignores a bad page_size */
    }
    if (size > op->config->page_size_max)
        size = op->config->page_size_max;
    *limit = size;
    *offset = (page - 1) * size;
    return 0;
}

/* The request URL with ?page= set to `page` (or removed for page 1). */
static json_t *
s_page_url (op_t *op, long long page)
{
    char *url = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&url, &size);
    fprintf (out, "%s%s", op->base, op->path);
    char sep = '?';
    const char *key;
    json_t *value;
    json_object_foreach (op->query, key, value) {
        if (strcmp (key, "page") == 0)
            continue;
        char *k = curl_easy_escape (NULL, key, 0);
        char *v = curl_easy_escape (NULL, json_string_value (value), 0);
        fprintf (out, "%c%s=%s", sep, k ? k : "", v ? v : "");
        curl_free (k);
        curl_free (v);
        sep = '&';
    }
    if (page > 1)
        fprintf (out, "%cpage=%lld", sep, page);
    fclose (out);
    json_t *result = json_string (url);
    free (url);
    return result;
}

void
op_paginated (op_t *op, long long count, long long limit, long long offset,
              json_t *results)
{
    long long page = offset / limit + 1;
    json_t *next = offset + limit < count ? s_page_url (op, page + 1) : json_null ();
    json_t *previous = page > 1 ? s_page_url (op, page - 1) : json_null ();
    op_reply (op, 200, json_pack ("{s:I s:o s:o s:o}", "count", (json_int_t) count,
                                  "next", next, "previous", previous,
                                  "results", results));
}

/* A page link as JSON text ("null" when there is none); caller frees. */
static char *
s_page_link (op_t *op, bool exists, long long page)
{
    if (!exists)
        return strdup ("null");
    json_t *url = s_page_url (op, page);
    char *text = json_dumps (url, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref (url);
    return text;
}

/* Answers 200 with the page {"count", "next", "previous", "results"} as
   op_paginated does, the results being the rows' column 0 spliced in as
   PostgreSQL rendered them (JSON text, valid UTF-8): no parse, no dump. */
static int
s_paginated_rows (op_t *op, long long count, long long limit, long long offset,
                  PGresult *res)
{
    long long page = offset / limit + 1;
    char *next = s_page_link (op, offset + limit < count, page + 1);
    char *previous = s_page_link (op, page > 1, page - 1);
    int rows = PQntuples (res);
    size_t size = 96 + (next ? strlen (next) : 0) + (previous ? strlen (previous) : 0);
    for (int row = 0; row < rows; row++)
        size += (PQgetisnull (res, row, 0) ? 4 : (size_t) PQgetlength (res, row, 0)) + 1;
    char *text = next && previous ? malloc (size) : NULL;
    if (!text) {
        free (next);
        free (previous);
        return -1;
    }
    int head = snprintf (text, size, "{\"count\":%lld,\"next\":%s,\"previous\":%s,"
                         "\"results\":[", count, next, previous);
    free (next);
    free (previous);
    char *at = text + head;
    for (int row = 0; row < rows; row++) {
        if (row)
            *at++ = ',';
        if (PQgetisnull (res, row, 0)) {
            memcpy (at, "null", 4);
            at += 4;
        }
        else {
            size_t len = (size_t) PQgetlength (res, row, 0);
            memcpy (at, PQgetvalue (res, row, 0), len);
            at += len;
        }
    }
    *at++ = ']';
    *at++ = '}';
    *at = '\0';
    op_reply_text (op, 200, text, (size_t) (at - text));
    return 0;
}

int
op_list_counted (op_t *op, long long count, const char *count_sql, const char *list_sql,
                 int n, const char *const *params)
{
    long long limit, offset;
    if (op_page (op, &limit, &offset) != 0)
        return 0;
    if (count < 0) {
        char count_text[32] = "0";
        if (op_query_text (op, count_sql, n, params, count_text, sizeof count_text) < 0)
            return -1;
        count = strtoll (count_text, NULL, 10);
    }
    if (offset > 0 && offset >= count) {
        op_detail (op, 404, "Invalid page.");
        return 0;
    }
    const char *all[n + 2];
    for (int i = 0; i < n; i++)
        all[i] = params[i];
    char limit_text[24], offset_text[24];
    snprintf (limit_text, sizeof limit_text, "%lld", limit);
    snprintf (offset_text, sizeof offset_text, "%lld", offset);
    all[n] = limit_text;
    all[n + 1] = offset_text;
    PGresult *res = op_exec (op, list_sql, n + 2, all);
    if (!res)
        return -1;
    int rc = s_paginated_rows (op, count, limit, offset, res);
    PQclear (res);
    return rc;
}

int
op_list (op_t *op, const char *count_sql, const char *list_sql, int n,
         const char *const *params)
{
    return op_list_counted (op, -1, count_sql, list_sql, n, params);
}

/* --- visibility ----------------------------------------------------------- */

/* The caller's role: admin 3, participant 2, visitor of a public group
   room 1, nothing 0 (op_role_t). */
#define S_ROLE_SQL                                                              \
    "CASE WHEN p.is_admin THEN 3 WHEN p.user_id IS NOT NULL THEN 2"             \
    " WHEN NOT r.is_private AND r.room_type = 'group' THEN 1 ELSE 0 END"

static void
s_access_fill (PGresult *res, op_access_t *out)
{
    if (PQntuples (res) == 0)
        return;
    out->role = (op_role_t) atoi (PQgetvalue (res, 0, 0));
    out->archived = strcmp (PQgetvalue (res, 0, 1), "t") == 0;
    snprintf (out->room, sizeof out->room, "%s", PQgetvalue (res, 0, 2));
    out->messages_count = strtoll (PQgetvalue (res, 0, 3), NULL, 10);
    if (PQnfields (res) > 5) {
        snprintf (out->sender, sizeof out->sender, "%s", PQgetvalue (res, 0, 4));
        out->deleted = strcmp (PQgetvalue (res, 0, 5), "t") == 0;
        out->seq = strtoll (PQgetvalue (res, 0, 6), NULL, 10);
    }
}

int
op_room_access (op_t *op, const char *room, bool lock, op_access_t *out)
{
    memset (out, 0, sizeof *out);
    const char *params[] = { room, op->user_id[0] ? op->user_id : NULL };
    PGresult *res = op_exec (op, lock
        ? "SELECT " S_ROLE_SQL ", r.is_archived, r.id, r.messages_count FROM rooms r"
          " LEFT JOIN room_participants p ON p.room_id = r.id AND p.user_id = $2::uuid"
          " WHERE r.id = $1::uuid FOR NO KEY UPDATE OF r"
        : "SELECT " S_ROLE_SQL ", r.is_archived, r.id, r.messages_count FROM rooms r"
          " LEFT JOIN room_participants p ON p.room_id = r.id AND p.user_id = $2::uuid"
          " WHERE r.id = $1::uuid", 2, params);
    if (!res)
        return -1;
    s_access_fill (res, out);
    PQclear (res);
    return 0;
}

int
op_room_access_for_send (op_t *op, const char *room, const char *client_id,
                         op_access_t *out, char *existing, size_t existing_size)
{
    memset (out, 0, sizeof *out);
    existing[0] = '\0';
    if (!client_id)
        return op_room_access (op, room, true, out);
    const char *params[] = { room, op->user_id[0] ? op->user_id : NULL, client_id };
    PGresult *res = op_exec (op,
        "SELECT " S_ROLE_SQL ", r.is_archived, r.id, r.messages_count,"
        "       CASE WHEN p.user_id IS NOT NULL THEN (SELECT m.id FROM messages m"
        "             WHERE m.sender_id = $2::uuid AND m.client_id = $3) END"
        "  FROM rooms r"
        "  LEFT JOIN room_participants p ON p.room_id = r.id AND p.user_id = $2::uuid"
        " WHERE r.id = $1::uuid FOR NO KEY UPDATE OF r", 3, params);
    if (!res)
        return -1;
    s_access_fill (res, out);
    if (PQntuples (res) == 1 && !PQgetisnull (res, 0, 4))
        snprintf (existing, existing_size, "%s", PQgetvalue (res, 0, 4));
    PQclear (res);
    return 0;
}

int
op_message_access (op_t *op, const char *message, bool lock, op_access_t *out)
{
    memset (out, 0, sizeof *out);
    const char *params[] = { message, op->user_id[0] ? op->user_id : NULL };
    /* The room first (see ops.h); the read below then sees the message as
       the last writer to the room left it. */
    if (lock && op_command (op, "SELECT 1 FROM rooms WHERE id ="
                                " (SELECT room_id FROM messages WHERE id = $1::uuid)"
                                " FOR NO KEY UPDATE", 1, params) < 0)
        return -1;
    PGresult *res = op_exec (op,
        "SELECT " S_ROLE_SQL ", r.is_archived, m.room_id, r.messages_count,"
        "       m.sender_id, m.is_deleted, m.seq"
        "  FROM messages m JOIN rooms r ON r.id = m.room_id"
        "  LEFT JOIN room_participants p ON p.room_id = m.room_id AND p.user_id = $2::uuid"
        " WHERE m.id = $1::uuid", 2, params);
    if (!res)
        return -1;
    s_access_fill (res, out);
    PQclear (res);
    return 0;
}

/* --- text ----------------------------------------------------------------- */

size_t
op_utf8_decode (const char *s, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *) s;
    if (u[0] == 0) {
        *cp = 0;
        return 0;
    }
    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    size_t len = u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : 2;
    uint32_t value = u[0] & (0x3F >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {    /* not valid UTF-8: one byte */
            *cp = 0xFFFD;
            return 1;
        }
        value = (value << 6) | (u[i] & 0x3F);
    }
    *cp = value;
    return len;
}

bool
op_unicode_is_space (uint32_t cp)
{
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cp == 0xA0
        || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028
        || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}
