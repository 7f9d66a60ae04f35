/*  actors/ops.h — the REST operations, as the persister runs them.
 *
 *  The gateway turns each REST request into an HTTP_REQUEST envelope naming
 *  an operation ("rooms.create"); a persister actor runs the operation inside
 *  its group-commit transaction (under a savepoint of its own) on the
 *  connection it owns, and answers with an HTTP_RESPONSE envelope after
 *  COMMIT. Committed room events go to the room shards after COMMIT too, so
 *  no client ever sees an event for something that is not durable.
 *
 *  An operation reads its input from `op` and sets `status` and `response`.
 *  A status >= 400 rolls its savepoint back: bad input changes nothing.
 *  An operation returns 0, or -1 when the database failed (the persister
 *  answers 503 and retries nothing; the client may retry).
 *
 *  Operations live in actors/ops/<resource>.c, each file exporting a table
 *  `ops_<resource>[]` ending with {NULL}; actors/ops/table.c lists the tables.
 */
#ifndef PARLEY_OPS_H
#define PARLEY_OPS_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include "config.h"

typedef struct op_t op_t;
typedef struct op_conn_t op_conn_t;   /* the persister's connection + statement cache */

struct op_t {
    /* -- input ---------------------------------------------------------- */
    op_conn_t *conn;
    const config_t *config;
    const char *name;         /* "rooms.create"                             */
    const char *method;       /* "GET", "POST", "PUT", "PATCH", "DELETE"    */
    const char *path;         /* request path, for pagination links         */
    const char *base;         /* "http://host:port", for absolute URLs      */
    json_t *params;           /* path parameters {"id": "..."}              */
    json_t *query;            /* query arguments {"page": "2"} (strings)    */
    json_t *body;             /* parsed JSON body (object) or NULL          */
    json_t *auth;             /* {"user": id} (JWT) or {"session": sid}     */
    json_t *internal;         /* set by trusted actors only (the media
                                 actor's stored upload), never by clients;
                                 NULL otherwise (schema/envelopes.def)      */
    char user_id[40];         /* authenticated caller, "" when anonymous    */
    /* -- output --------------------------------------------------------- */
    int status;               /* HTTP status                                 */
    json_t *response;         /* response body (NULL: empty body)           */
    char *response_text;      /* or the body as JSON text (malloc'd), set by
                                 op_reply_text: sent as it is, never parsed;
                                 any op_reply drops it                       */
    size_t response_len;
    json_t *headers;          /* extra headers {"Set-Cookie": [..], ...}     */
    json_t *events;           /* room events committed: [{room, seq, type, payload}] */
    json_t *user_events;      /* ephemeral events: [{users: [...], type, payload}] */
};

typedef int (op_fn) (op_t *op);

typedef struct {
    const char *name;
    op_fn *fn;
    bool anonymous;           /* runs without an authenticated user          */
} op_def_t;


/* Looks an operation up by name; NULL when unknown. */
const op_def_t *ops_lookup (const char *name);

/* --- database access (prepared once per connection, text parameters) -- */

/* Runs `sql` with `n` text parameters (NULL entries are SQL NULL). Returns
   the result (caller PQclear()s) when it succeeded, or NULL when the
   statement failed: then the op should return -1 unless it expected the
   error (see op_sqlstate). Statements are prepared once per connection. */
PGresult *op_exec (op_t *op, const char *sql, int n, const char *const *params);

/* The SQLSTATE of the last failed op_exec ("23505"), or "" . */
const char *op_sqlstate (op_t *op);

/* Runs `sql` expected to return one row, one column of JSON (json/jsonb);
   returns the parsed value (caller owns), json_null() for no row/NULL, or
   NULL when the statement failed. */
json_t *op_query_json (op_t *op, const char *sql, int n, const char *const *params);

/* op_query_json without the parse: answers `status` with the JSON text of
   the one row, one column `sql` returns (op_reply_text). Returns 1
   answered, 0 no row or NULL (nothing answered), -1 failed. */
int op_query_reply (op_t *op, int status, const char *sql, int n,
                    const char *const *params);

/* Runs `sql` returning one row, one text column; copies it into `out`.
   Returns 1 found, 0 no row or NULL, -1 failed. */
int op_query_text (op_t *op, const char *sql, int n, const char *const *params,
                   char *out, size_t out_size);

/* Runs a statement for its effect; returns rows affected or -1. */
long op_command (op_t *op, const char *sql, int n, const char *const *params);

/* --- answers --------------------------------------------------------- */

/* Sets status and response (takes ownership of `body`, may be NULL). */
void op_reply (op_t *op, int status, json_t *body);

/* Sets status and a response body already rendered as JSON text: `text`
   (malloc'd, taken; `len` bytes, valid UTF-8) is sent as it is. */
void op_reply_text (op_t *op, int status, char *text, size_t len);

/* 400 {"field": ["message"]} */
void op_field_error (op_t *op, const char *field, const char *message);

/* status {"detail": "message"} */
void op_detail (op_t *op, int status, const char *detail);

/* 404 {"detail": "Not found."} */
void op_not_found (op_t *op);

/* 403 {"detail": "You do not have permission to perform this action."} */
void op_forbidden (op_t *op);

/* Adds a response header (several values of one name are kept, for
   Set-Cookie). */
void op_header (op_t *op, const char *name, const char *value);

/* Records a committed room event to fan out after COMMIT: `type` e.g.
   "message.new", `payload` the full event object (takes ownership), as
   returned by parley_append_event / room_events.payload. */
void op_room_event (op_t *op, const char *room, long long seq, const char *type,
                    json_t *payload);

/* Records an ephemeral event (no seq) for `users` (array of ids, taken). */
void op_user_event (op_t *op, json_t *users, const char *type, json_t *payload);

/* Notes the room type of the last recorded room event ("ai"): the bus also
   publishes message.new of ai rooms on ai.<room> (API.md §4). */
void op_room_event_room_type (op_t *op, const char *room_type);

/* Marks the last recorded user event (a notification) for push too: the
   bus publishes a push envelope on push.<user> for each of `users` (array
   of ids, taken) — those of its recipients with push_enabled. */
void op_user_event_push (op_t *op, json_t *users);

/* Whether the request came from a trusted internal service over the
   ZeroMQ inject (auth {"user", "service": true}), not from REST or a
   WebSocket: such callers may, e.g., post `system` messages. */
bool op_is_service (op_t *op);

/* --- input helpers: each answers 400 naming the field and returns -1 on
       bad input; 0 when absent (out untouched), 1 when present. -------- */
int op_body_string (op_t *op, const char *field, const char **out);
int op_body_uuid (op_t *op, const char *field, const char **out);
int op_body_int (op_t *op, const char *field, long long *out);
int op_body_bool (op_t *op, const char *field, bool *out);
int op_body_array (op_t *op, const char *field, json_t **out);
int op_query_string (op_t *op, const char *name, const char **out);
int op_query_uuid (op_t *op, const char *name, const char **out);
int op_query_int (op_t *op, const char *name, long long *out);
int op_query_bool (op_t *op, const char *name, bool *out);

/* The path parameter `name` ("id"): a UUID string, validated by the router. */
const char *op_param (op_t *op, const char *name);

/* True for a canonical UUID string. */
bool op_is_uuid (const char *s);

/* --- pagination (DRF's PageNumberPagination) ------------------------- */

/* Reads ?page= and ?page_size= (default 50, capped at page_size_max); on a
   bad value answers 404 "Invalid page." like DRF and returns -1. */
int op_page (op_t *op, long long *limit, long long *offset);

/* Builds {"count", "next", "previous", "results"} around `results` (taken)
   using the request path and query; sets 200. */
void op_paginated (op_t *op, long long count, long long limit, long long offset,
                   json_t *results);

/* Convenience: runs `count_sql` (one bigint) and `list_sql` (one row per
   item, column 0 JSON) with the same parameters plus, for the list, $n+1 =
   limit and $n+2 = offset appended, then answers 200 with the page as
   op_paginated builds it — but as text: the rows' JSON text is spliced into
   "results" as PostgreSQL returned it, never parsed (op_reply_text). */
int op_list (op_t *op, const char *count_sql, const char *list_sql, int n,
             const char *const *params);

/* op_list with the count already known (`count` >= 0: count_sql is not
   run, and may be NULL), e.g. rooms.messages_count for an unfiltered room
   listing. A negative `count` runs count_sql as op_list does. */
int op_list_counted (op_t *op, long long count, const char *count_sql,
                     const char *list_sql, int n, const char *const *params);

/* Sends the caller's presence (rendered as others see it: invisible shows
   as offline) as a `presence` event to everyone who shares a room with the
   caller, and the caller. 0, or -1 when the database failed. */
int ops_presence_broadcast (op_t *op);

/* Whether the caller is staff (looked up once per op). */
bool op_is_staff (op_t *op);

/* --- visibility (API.md §0) ------------------------------------------ */

typedef enum {
    OP_ROLE_NONE = 0,   /* room invisible to the caller, or missing: 404   */
    OP_ROLE_VISITOR,    /* a public group room the caller is not in: reads
                           only, writes 403                                */
    OP_ROLE_MEMBER,     /* participant                                     */
    OP_ROLE_ADMIN       /* participant and room admin                      */
} op_role_t;

/* What the caller may do with a room, or with a message and its room. */
typedef struct {
    op_role_t role;
    char room[40];
    bool archived;
    long long messages_count; /* the room's messages, tombstones included  */
    /* filled by op_message_access only */
    char sender[40];
    bool deleted;
    long long seq;
} op_access_t;

/* The caller's access to `room`. With `lock`, row-locks the room first
   (FOR NO KEY UPDATE, the lock parley_next_seq takes): writers to a room
   take its lock before touching its messages, so they queue in one order.
   Returns 0 (role NONE when invisible or missing), or -1 on a DB failure. */
int op_room_access (op_t *op, const char *room, bool lock, op_access_t *out);

/* op_room_access with the lock, for a send carrying `client_id` (NULL:
   none): the same statement also looks up the caller's message with that
   client_id, copied into `existing` ("" when none; only looked up for a
   participant). One round trip instead of two. */
int op_room_access_for_send (op_t *op, const char *room, const char *client_id,
                             op_access_t *out, char *existing, size_t existing_size);

/* The same for the room of `message` (role NONE when the message is
   missing or invisible), plus its sender, deleted flag and seq. */
int op_message_access (op_t *op, const char *message, bool lock, op_access_t *out);

/* --- text ------------------------------------------------------------ */

/* Decodes the code point at `s` (valid UTF-8, as jansson guarantees);
   returns its length in bytes, 0 at the terminating NUL. */
size_t op_utf8_decode (const char *s, uint32_t *cp);

/* Unicode White_Space (ASCII blanks, U+0085, U+00A0, U+1680, U+2000-200A,
   U+2028, U+2029, U+202F, U+205F, U+3000). */
bool op_unicode_is_space (uint32_t cp);

/* --- notifications (actors/ops/notifications.c) ---------------------- */

/* Creates the notifications message `message_id` causes (API.md §2.6),
   exactly once however often it is called (at commit by messages.create and
   forward, later by the process-message-mentions job), and records a
   `notification` user event for each recipient, marked for push when the
   recipient has push_enabled. Returns the number created, or -1 when the
   database failed. */
int ops_notify_message (op_t *op, const char *message_id);

#endif
