/*  gateway/http.c — one REST request from headers to answer. See http.h. */
#include "http.h"
#include "files.h"
#include "log.h"
#include "openapi.h"
#include "ratelimit.h"
#include "token.h"

#include <ctype.h>
#include <strings.h>

#define HTTP_CHUNK 65536

static const char *const s_unavailable =
    "The service is unavailable; the request was not applied. Retry later.";

/* --- answers -------------------------------------------------------------- */

static void s_add_header (gw_session_t *pss, const char *name, const char *value);

void
http_respond (gateway_t *gw, struct lws *wsi, gw_session_t *pss, int status,
              const char *content_type, const char *body, size_t len)
{
    /* API.md §0: every 401, whoever decided it, names the scheme */
    if (status == 401 && !json_object_get (pss->out_headers, "WWW-Authenticate"))
        s_add_header (pss, "WWW-Authenticate", "Bearer realm=\"api\"");
    free (pss->out);
    pss->out = malloc (LWS_PRE + len + 1);
    if (pss->out && len)
        memcpy (pss->out + LWS_PRE, body, len);
    pss->out_len = pss->out ? len : 0;
    pss->out_sent = 0;
    pss->status = status;
    pss->content_type = content_type;
    pss->responding = true;
    pss->body_failed = true;
    metrics_http (gw->metrics, status);
    lws_callback_on_writable (wsi);
}

void
http_respond_detail (gateway_t *gw, struct lws *wsi, gw_session_t *pss, int status,
                     const char *detail)
{
    json_t *body = json_pack ("{s:s}", "detail", detail);
    char *text = json_dumps (body, JSON_COMPACT);
    http_respond (gw, wsi, pss, status, "application/json", text, strlen (text));
    free (text);
    json_decref (body);
}

static void
s_add_header (gw_session_t *pss, const char *name, const char *value)
{
    if (!pss->out_headers)
        pss->out_headers = json_object ();
    json_t *values = json_object_get (pss->out_headers, name);
    if (!values)
        json_object_set_new (pss->out_headers, name, values = json_array ());
    json_array_append_new (values, json_string (value));
}

void
http_add_header (gw_session_t *pss, const char *name, const char *value)
{
    s_add_header (pss, name, value);
}

static int
s_finish (struct lws *wsi, gw_session_t *pss)
{
    if (pss->close_after)
        return -1;
    return lws_http_transaction_completed (wsi) ? -1 : 0;
}

static int
s_write_headers (struct lws *wsi, gw_session_t *pss)
{
    unsigned char buf[LWS_PRE + 8192];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers (wsi, (unsigned) pss->status, pss->content_type,
                                     pss->out_len, &p, end))
        return -1;
    const char *name;
    json_t *values;
    json_object_foreach (pss->out_headers, name, values) {
        char lower[64];
        size_t n = 0;
        for (; name[n] && n < sizeof lower - 2; n++)
            lower[n] = (char) tolower ((unsigned char) name[n]);
        lower[n++] = ':';
        lower[n] = '\0';
        size_t i;
        json_t *value;
        json_array_foreach (values, i, value) {
            const char *v = json_string_value (value);
            if (v && lws_add_http_header_by_name (wsi, (const unsigned char *) lower,
                                                  (const unsigned char *) v,
                                                  (int) strlen (v), &p, end))
                return -1;
        }
    }
    /* the connection ends after this answer (its body was not read): say
       so, or a keep-alive client reuses it and loses its next request */
    if (pss->close_after
        && lws_add_http_header_by_name (wsi, (const unsigned char *) "connection:",
                                        (const unsigned char *) "close", 5, &p, end))
        return -1;
    if (lws_finalize_write_http_header (wsi, start, &p, end))
        return -1;
    pss->headers_sent = true;
    return 0;
}

int
http_on_writeable (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    (void) gw;
    if (!pss->responding)
        return 0;
    if (!pss->headers_sent) {
        if (s_write_headers (wsi, pss) != 0)
            return -1;
        if (pss->out_len == 0 || pss->method == GW_HEAD)
            return s_finish (wsi, pss);
        lws_callback_on_writable (wsi);
        return 0;
    }
    if (pss->file_open) {       /* an attachment's bytes (files.c) */
        int rc = files_on_writeable (gw, wsi, pss);
        return rc == 0 ? 0 : rc < 0 ? -1 : s_finish (wsi, pss);
    }
    size_t chunk = pss->out_len - pss->out_sent;
    if (chunk > HTTP_CHUNK)
        chunk = HTTP_CHUNK;
    bool final = pss->out_sent + chunk == pss->out_len;
    /* the LWS_PRE bytes before each chunk are already sent: lws may use them */
    unsigned char *at = (unsigned char *) pss->out + LWS_PRE + pss->out_sent;
    if (lws_write (wsi, at, chunk, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP)
        != (int) chunk)
        return -1;
    pss->out_sent += chunk;
    if (final)
        return s_finish (wsi, pss);
    lws_callback_on_writable (wsi);
    return 0;
}

void
http_session_free (gateway_t *gw, gw_session_t *pss)
{
    if (!pss)
        return;
    if (pss->id[0])
        zhashx_delete (gw->pending, pss->id);
    pss->id[0] = '\0';
    files_session_free (pss);
    json_decref (pss->params);
    json_decref (pss->query);
    json_decref (pss->auth);
    json_decref (pss->out_headers);
    free (pss->path);
    free (pss->body);
    free (pss->out);
    pss->params = pss->query = pss->auth = pss->out_headers = NULL;
    pss->path = pss->body = pss->out = NULL;
}

/* An answer from an actor for a pending request. */
void
http_on_response (gateway_t *gw, envelope_t *env)
{
    struct lws *wsi = zhashx_lookup (gw->pending, env->re);
    if (!wsi)
        return;              /* the client went away */
    zhashx_delete (gw->pending, env->re);
    gw_session_t *pss = lws_wsi_user (wsi);
    pss->id[0] = '\0';
    json_t *headers = json_object_get (env->body, "headers");
    const char *name;
    json_t *values;
    json_object_foreach (headers, name, values) {
        size_t i;
        json_t *value;
        json_array_foreach (values, i, value)
            s_add_header (pss, name, json_string_value (value));
    }
    int status = (int) json_integer_value (json_object_get (env->body, "status"));
    json_t *json = json_object_get (env->body, "json");
    const char *text = json_string_value (json);
    if (pss->route && (pss->route->flags & ROUTE_FILE) && status == 200 && text) {
        json_t *answer = json_loads (text, 0, NULL);
        files_serve (gw, wsi, pss, json_object_get (answer, "file"));
        json_decref (answer);
        return;
    }
    http_respond (gw, wsi, pss, status, "application/json", text,
                  text ? json_string_length (json) : 0);
}

/* --- the request ---------------------------------------------------------- */

static gw_method_t
s_method (struct lws *wsi)
{
    char *uri;
    int len;
    switch (lws_http_get_uri_and_method (wsi, &uri, &len)) {
    case LWSHUMETH_GET: return GW_GET;
    case LWSHUMETH_POST: return GW_POST;
    case LWSHUMETH_PUT: return GW_PUT;
    case LWSHUMETH_PATCH: return GW_PATCH;
    case LWSHUMETH_DELETE: return GW_DELETE;
    case LWSHUMETH_OPTIONS: return GW_OPTIONS;
    case LWSHUMETH_HEAD: return GW_HEAD;
    default: return GW_METHOD_COUNT;
    }
}

static bool
s_valid_utf8 (const char *text)
{
    json_t *probe = json_string (text);   /* jansson refuses invalid UTF-8 */
    json_decref (probe);
    return probe != NULL;
}

/* Collects the query arguments; NULL when one is not valid UTF-8. */
static json_t *
s_query (struct lws *wsi)
{
    json_t *query = json_object ();
    char arg[4096];
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment (wsi, arg, sizeof arg, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        char *eq = strchr (arg, '=');
        const char *value = eq ? eq + 1 : "";
        if (eq)
            *eq = '\0';
        json_t *v = json_string (value);
        if (!v || !s_valid_utf8 (arg)) {
            json_decref (v);
            json_decref (query);
            return NULL;
        }
        json_object_set_new (query, arg, v);
    }
    return query;
}

static bool
s_is_unsafe (gw_method_t method)
{
    return method == GW_POST || method == GW_PUT || method == GW_PATCH
           || method == GW_DELETE;
}

/* Sets pss->auth from a bearer token or the session cookie; answers 401/403
   itself and returns -1 when the request may not go on. */
static int
s_authenticate (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    char header[4096];
    if (lws_hdr_copy (wsi, header, sizeof header, WSI_TOKEN_HTTP_AUTHORIZATION) > 0) {
        char user[TOKEN_ID_SIZE];
        if (strncasecmp (header, "Bearer ", 7) != 0
            || token_verify (gw->config->jwt_secret, header + 7, "access", user, NULL) != 0) {
            http_respond_detail (gw, wsi, pss, 401, "Given token not valid for any token type");
            return -1;
        }
        pss->auth = json_pack ("{s:s}", "user", user);
        return 0;
    }
    char sid[256];
    size_t max = sizeof sid;
    if (lws_http_cookie_get (wsi, "sessionid", sid, &max) == 0 && max > 0) {
        if (s_is_unsafe (pss->method)) {
            char csrf[256], sent[256];
            size_t csrf_max = sizeof csrf;
            int sent_len = lws_hdr_custom_copy (wsi, sent, sizeof sent, "x-csrftoken:", 12);
            if (lws_http_cookie_get (wsi, "csrftoken", csrf, &csrf_max) != 0 || sent_len <= 0
                || strcmp (csrf, sent) != 0) {
                http_respond_detail (gw, wsi, pss, 403,
                                     "CSRF Failed: CSRF token missing or incorrect.");
                return -1;
            }
        }
        pss->auth = json_pack ("{s:s}", "session", sid);
        return 0;
    }
    if (pss->route->flags & ROUTE_ANON)
        return 0;
    http_respond_detail (gw, wsi, pss, 401, "Authentication credentials were not provided.");
    return -1;
}

static int
s_json_depth (const json_t *value)
{
    int deepest = 0;
    if (json_is_object (value)) {
        const char *key;
        json_t *child;
        json_object_foreach ((json_t *) value, key, child) {
            int d = s_json_depth (child);
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    }
    if (json_is_array (value)) {
        size_t i;
        json_t *child;
        json_array_foreach (value, i, child) {
            int d = s_json_depth (child);
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    }
    return 0;
}

/* Parses the body as JSON; answers 415/400 itself and returns -1 when it
   is not acceptable. */
static int
s_parse_body (gateway_t *gw, struct lws *wsi, gw_session_t *pss, json_t **out)
{
    *out = NULL;
    if (pss->body_len == 0)
        return 0;
    char type[256] = "";
    lws_hdr_copy (wsi, type, sizeof type, WSI_TOKEN_HTTP_CONTENT_TYPE);
    if (strncasecmp (type, "application/json", 16) != 0
        || (type[16] && type[16] != ';' && type[16] != ' ')) {
        char detail[320];
        snprintf (detail, sizeof detail, "Unsupported media type \"%s\" in request.", type);
        http_respond_detail (gw, wsi, pss, 415, detail);
        return -1;
    }
    json_error_t error;
    json_t *body = json_loadb (pss->body, pss->body_len, JSON_DECODE_ANY, &error);
    if (!body) {
        char detail[320];
        snprintf (detail, sizeof detail, "JSON parse error - %s", error.text);
        http_respond_detail (gw, wsi, pss, 400, detail);
        return -1;
    }
    if (s_json_depth (body) > 32) {
        json_decref (body);
        http_respond_detail (gw, wsi, pss, 400, "JSON nesting is deeper than 32 levels.");
        return -1;
    }
    if (!json_is_object (body)) {
        json_decref (body);
        json_t *err = json_pack ("{s:[s]}", "non_field_errors",
                                 "Invalid data. Expected a dictionary.");
        char *text = json_dumps (err, JSON_COMPACT);
        http_respond (gw, wsi, pss, 400, "application/json", text, strlen (text));
        free (text);
        json_decref (err);
        return -1;
    }
    *out = body;
    return 0;
}

/* The key that picks a persister. Writes: the room when known (one writer
   per room: its events reach the room shard in seq order), else the
   caller. Reads (GET, HEAD) change nothing and may run on any persister:
   `fallback` (the envelope's random id) spreads them, so a page read never
   queues behind a busy room's writes. A read needs no ordering after a
   write beyond what PostgreSQL gives: a write is answered only after its
   COMMIT, and a read that starts later sees it (READ COMMITTED), whichever
   connection it runs on. */
static const char *
s_shard_key (const char *method, json_t *params, json_t *body, json_t *auth,
             const char *fallback)
{
    if (method && (strcmp (method, "GET") == 0 || strcmp (method, "HEAD") == 0))
        return fallback;
    const char *key = json_string_value (json_object_get (body, "room"));
    if (!key)
        key = json_string_value (json_object_get (params, "id"));
    if (!key)
        key = json_string_value (json_object_get (auth, "user"));
    return key ? key : fallback;
}

int
http_send_op (gateway_t *gw, const gw_op_request_t *req, char *id, size_t id_size)
{
    envelope_t *env = envelope_new (ENVELOPE_HTTP_REQUEST);
    if (!env)
        return -1;
    snprintf (env->from, sizeof env->from, "%s", gw->name);
    snprintf (id, id_size, "%s", env->id);
    json_t *params = req->params ? json_incref (req->params) : json_object ();
    json_t *query = req->query ? json_incref (req->query) : json_object ();
    json_t *auth = req->auth ? json_incref (req->auth) : json_object ();
    json_t *request = json_pack ("{s:s s:s s:s s:s s:o s:o s:o}",
        "op", req->op, "method", req->method, "path", req->path,
        "base", gw->config->public_url[0] ? gw->config->public_url : req->base,
        "params", params, "query", query, "auth", auth);
    if (req->body)
        json_object_set (request, "body", req->body);
    envelope_set_body (env, request);
    char to[48];
    mailbox_shard_name (to, sizeof to, "persister",
                        s_shard_key (req->method, req->params, req->body, req->auth,
                                     env->id),
                        gw->persisters);
    int rc = mailbox_send (gw->mailbox, to, env);
    envelope_destroy (&env);
    return rc;
}

void
http_base_url (gateway_t *gw, struct lws *wsi, char *base, size_t size)
{
    char host[256] = "";
    if (lws_hdr_copy (wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0)
        snprintf (host, sizeof host, "%s:%lld", gw->config->http_host,
                  (long long) gw->config->http_port);
    snprintf (base, size, "http://%s", host);
}

/* Sends the request to a persister and waits (asynchronously) for its answer. */
static int
s_forward (gateway_t *gw, struct lws *wsi, gw_session_t *pss, json_t *body)
{
    char base[300];
    http_base_url (gw, wsi, base, sizeof base);
    gw_op_request_t req = {
        .op = pss->route->op, .method = routes_method_name (pss->method),
        .path = pss->path, .base = base, .params = pss->params, .query = pss->query,
        .body = body, .auth = pss->auth,
    };
    if (http_send_op (gw, &req, pss->id, sizeof pss->id) != 0) {
        pss->id[0] = '\0';
        http_respond_detail (gw, wsi, pss, 503, s_unavailable);
        return 0;
    }
    zhashx_insert (gw->pending, pss->id, wsi);
    return 0;
}

static void
s_local (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    const char *op = pss->route->op;
    if (streq (op, "healthz"))
        http_respond (gw, wsi, pss, 200, "application/json", "{\"status\":\"ok\"}", 15);
    else if (streq (op, "readyz")) {
        json_t *body = json_pack ("{s:s s:s}",
            "postgresql", gw->pg_ok ? "ok" : "unavailable",
            "redis", gw->redis_ok ? "ok" : "unavailable");
        char *text = json_dumps (body, JSON_COMPACT);
        http_respond (gw, wsi, pss, gw->pg_ok && gw->redis_ok ? 200 : 503,
                      "application/json", text, strlen (text));
        free (text);
        json_decref (body);
    }
    else if (streq (op, "metrics")) {
        char header[512] = "";
        const char *token = gw->config->metrics_token;
        if (token[0] && (lws_hdr_copy (wsi, header, sizeof header,
                                       WSI_TOKEN_HTTP_AUTHORIZATION) <= 0
                         || strncmp (header, "Bearer ", 7) != 0
                         || strcmp (header + 7, token) != 0)) {
            http_respond_detail (gw, wsi, pss, 401,
                                 "Authentication credentials were not provided.");
            return;
        }
        size_t size = 0;
        char *text = metrics_render (gw->metrics, &size);
        http_respond (gw, wsi, pss, 200, "text/plain; version=0.0.4", text, size);
        free (text);
    }
    else if (streq (op, "schema"))   /* docs/openapi.yaml, compiled in */
        http_respond (gw, wsi, pss, 200, "application/vnd.oai.openapi",
                      gateway_openapi_yaml, gateway_openapi_yaml_size);
    else
        http_respond_detail (gw, wsi, pss, 404, "Not found.");
}

/* The per-user rate limit of message sends (ROUTE_SEND): answers 429
   itself and returns true when the request may not go on. */
static bool
s_rate_limited (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    if (!(pss->route->flags & ROUTE_SEND))
        return false;
    const char *user = json_string_value (json_object_get (pss->auth, "user"));
    if (!user)
        user = json_string_value (json_object_get (pss->auth, "session"));
    double retry = 0;
    if (!user || ratelimit_take (gw->buckets, user, gw->config, &retry) == 0)
        return false;
    char seconds[16];
    snprintf (seconds, sizeof seconds, "%d", (int) retry + 1);
    s_add_header (pss, "Retry-After", seconds);
    http_respond_detail (gw, wsi, pss, 429, "Request was throttled.");
    return true;
}

/* POST attachments/ takes multipart/form-data only (gateway/files.c). */
static void
s_not_multipart (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    if (pss->body_len == 0) {
        const char *text = "{\"file\":[\"No file was submitted.\"]}";
        http_respond (gw, wsi, pss, 400, "application/json", text, strlen (text));
        return;
    }
    char type[256] = "", detail[320];
    lws_hdr_copy (wsi, type, sizeof type, WSI_TOKEN_HTTP_CONTENT_TYPE);
    snprintf (detail, sizeof detail, "Unsupported media type \"%s\" in request.", type);
    http_respond_detail (gw, wsi, pss, 415, detail);
}

/* Everything is read: authenticate, check the body, hand over. */
static int
s_dispatch (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    if (pss->route->flags & ROUTE_LOCAL) {
        s_local (gw, wsi, pss);
        return 0;
    }
    if (s_authenticate (gw, wsi, pss) != 0)
        return 0;
    if (streq (pss->route->op, "attachments.create")) {
        s_not_multipart (gw, wsi, pss);
        return 0;
    }
    json_t *body = NULL;
    if (s_parse_body (gw, wsi, pss, &body) != 0)
        return 0;
    if (s_rate_limited (gw, wsi, pss)) {
        json_decref (body);
        return 0;
    }
    int rc = s_forward (gw, wsi, pss, body);
    json_decref (body);
    return rc;
}

/* A multipart upload: authenticated and rate limited before its body is
   read, which then streams to a spool file (gateway/files.c). */
static int
s_begin_upload (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    if (s_authenticate (gw, wsi, pss) != 0 || s_rate_limited (gw, wsi, pss)) {
        pss->close_after = true;       /* the body will not be read */
        return 0;
    }
    return files_upload_begin (gw, wsi, pss);
}

int
http_on_request (gateway_t *gw, struct lws *wsi, gw_session_t *pss, const char *uri)
{
    pss->method = s_method (wsi);
    pss->path = strdup (uri ? uri : "/");
    pss->query = s_query (wsi);
    if (!pss->query || !s_valid_utf8 (pss->path)) {
        pss->query = pss->query ? pss->query : json_object ();
        http_respond_detail (gw, wsi, pss, 400, "The URL is not valid UTF-8.");
        return 0;
    }
    char allow[128];
    switch (routes_match (pss->method, pss->path, &pss->route, &pss->params, allow,
                          sizeof allow)) {
    case ROUTE_NO_PATH:
        http_respond_detail (gw, wsi, pss, 404, "Not found.");
        return 0;
    case ROUTE_NO_METHOD:
        s_add_header (pss, "Allow", allow);
        if (pss->method == GW_OPTIONS)
            http_respond (gw, wsi, pss, 200, "application/json", "{}", 2);
        else {
            char detail[64];
            snprintf (detail, sizeof detail, "Method \"%s\" not allowed.",
                      routes_method_name (pss->method));
            http_respond_detail (gw, wsi, pss, 405, detail);
        }
        return 0;
    case ROUTE_FOUND:
        break;
    }
    if (lws_hdr_total_length (wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        pss->close_after = true;
        http_respond_detail (gw, wsi, pss, 411, "Chunked request bodies are not supported; send Content-Length.");
        return 0;
    }
    char length[32] = "";
    bool has_length = lws_hdr_copy (wsi, length, sizeof length,
                                    WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
    long long content_length = has_length ? atoll (length) : 0;
    long long limit = (pss->route->flags & ROUTE_MULTIPART) ? gw->config->upload_max + 65536
                                                             : gw->config->body_max;
    if (content_length > limit) {
        pss->close_after = true;
        http_respond_detail (gw, wsi, pss, 413, "Request body is too large.");
        return 0;
    }
    bool expect_body = (pss->method == GW_POST && has_length)
                       || (s_is_unsafe (pss->method) && content_length > 0);
    if (expect_body && (pss->route->flags & ROUTE_MULTIPART) && files_is_multipart (wsi))
        return s_begin_upload (gw, wsi, pss);
    return expect_body ? 0 : s_dispatch (gw, wsi, pss);
}

int
http_on_body (gateway_t *gw, struct lws *wsi, gw_session_t *pss, const void *data,
              size_t len)
{
    if (pss->body_failed || len == 0)
        return 0;
    if (pss->upload)
        return files_upload_body (gw, wsi, pss, data, len);
    if (pss->body_len + len > (size_t) gw->config->body_max) {
        pss->close_after = true;
        http_respond_detail (gw, wsi, pss, 413, "Request body is too large.");
        return 0;
    }
    char *grown = realloc (pss->body, pss->body_len + len + 1);
    if (!grown) {
        pss->close_after = true;
        http_respond_detail (gw, wsi, pss, 503, s_unavailable);
        return 0;
    }
    pss->body = grown;
    memcpy (pss->body + pss->body_len, data, len);
    pss->body_len += len;
    pss->body[pss->body_len] = '\0';
    return 0;
}

int
http_on_body_complete (gateway_t *gw, struct lws *wsi, gw_session_t *pss)
{
    if (pss->body_failed)
        return 0;
    if (pss->upload) {
        json_t *body = NULL;   /* a form without a file: an ordinary request */
        if (files_upload_complete (gw, wsi, pss, &body) == 1)
            s_forward (gw, wsi, pss, body);
        json_decref (body);
        return 0;
    }
    return s_dispatch (gw, wsi, pss);
}
