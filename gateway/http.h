/*  gateway/http.h — the REST side of the gateway: one request's life from
 *  headers to answer. Internal to gateway/.
 *
 *  LWS_CALLBACK_HTTP        -> http_on_request: route, authenticate, read body?
 *  HTTP_BODY / _COMPLETION  -> http_on_body / http_on_body_complete
 *  (envelope to an actor; the answer arrives in the inbox)
 *  inbox HTTP_RESPONSE      -> http_on_response -> lws_callback_on_writable
 *  HTTP_WRITEABLE           -> http_on_writeable: headers, then body chunks
 */
#ifndef PARLEY_GATEWAY_HTTP_H
#define PARLEY_GATEWAY_HTTP_H

#include <czmq.h>
#include <libwebsockets.h>
#include "config.h"
#include "envelope.h"
#include "mailbox.h"
#include "metrics.h"
#include "routes.h"

typedef struct {
    int index;
    char name[32];
    const config_t *config;
    zsock_t *pipe;
    zsock_t *inbox;
    mailbox_t *mailbox;
    struct lws_context *context;
    struct lws_vhost *vhost;
    zhashx_t *pending;          /* request id -> struct lws * awaiting its answer */
    zhashx_t *ws_pending;       /* request id -> ws_request_t (ws.h)              */
    zhashx_t *conns;            /* connection id -> ws_conn_t                     */
    zhashx_t *users;            /* user id -> zlistx of ws_conn_t                 */
    zhashx_t *rooms;            /* room id -> zlistx of ws_conn_t (subscribers)   */
    uint64_t next_conn;
    metrics_t *metrics;
    zhashx_t *buckets;          /* user id -> rate-limit bucket (ratelimit.h)     */
    bool pg_ok;                 /* last health report of PostgreSQL               */
    bool redis_ok;              /* last health report of Redis                    */
    bool terminated;
    int persisters;
    int users_shards;
    lws_sorted_usec_list_t sweep;  /* periodic housekeeping timer            */
    int listen_fd;              /* the shared listening socket (gateway_threads > 1) */
    size_t sweep_conns, trim_conns; /* WebSocket connections at the last sweep
                                       and the last malloc_trim (gateway.c)   */
} gateway_t;

/* One HTTP request's state. libwebsockets zeroes it for every request on a
   keep-alive connection; http_session_free releases what it holds. */
typedef struct {
    char id[ENVELOPE_ID_MAX + 1];   /* pending request id, "" when none       */
    gw_method_t method;
    const route_t *route;
    json_t *params;                 /* path captures                          */
    json_t *query;                  /* query arguments                        */
    json_t *auth;                   /* {"user": id} or {"session": sid}       */
    char *path;
    char *body;
    size_t body_len;
    bool body_failed;               /* an answer was already chosen           */
    /* the answer */
    int status;
    char *out;                      /* LWS_PRE headroom + body                */
    size_t out_len, out_sent;
    json_t *out_headers;            /* name -> [values]                       */
    const char *content_type;
    bool responding, headers_sent, close_after;
    struct ws_conn_t *conn;         /* the WebSocket connection, after upgrade */
    /* attachments (gateway/files.h) */
    struct files_upload_t *upload;  /* a multipart upload being read          */
    bool file_open;                 /* serving file_fd [file_pos, file_end)   */
    int file_fd;
    uint64_t file_pos, file_end;
    char file_mime[128];            /* its Content-Type                       */
} gw_session_t;

int http_on_request (gateway_t *gw, struct lws *wsi, gw_session_t *pss,
                     const char *uri);
int http_on_body (gateway_t *gw, struct lws *wsi, gw_session_t *pss,
                  const void *data, size_t len);
int http_on_body_complete (gateway_t *gw, struct lws *wsi, gw_session_t *pss);
int http_on_writeable (gateway_t *gw, struct lws *wsi, gw_session_t *pss);
void http_on_response (gateway_t *gw, envelope_t *env);
void http_session_free (gateway_t *gw, gw_session_t *pss);

/* An operation for a persister (actors/ops.h), from REST or WebSocket. */
typedef struct {
    const char *op;       /* "messages.create"                    */
    const char *method;   /* "POST"                               */
    const char *path;     /* for pagination links                 */
    const char *base;     /* "http://host:port"                   */
    json_t *params, *query, *body, *auth;   /* borrowed, may be NULL */
} gw_op_request_t;

/* Sends `req` to the persister that owns its room (or caller); writes the
   request id (the answer's `re`) into `id`. 0, or -1 when the inbox is full. */
int http_send_op (gateway_t *gw, const gw_op_request_t *req, char *id, size_t id_size);

/* "http://<Host header>" of the request on `wsi`. */
void http_base_url (gateway_t *gw, struct lws *wsi, char *base, size_t size);

/* Queues an answer: `body` is copied (may be NULL for none). */
void http_respond (gateway_t *gw, struct lws *wsi, gw_session_t *pss, int status,
                   const char *content_type, const char *body, size_t len);
/* Adds a header to the answer being prepared (before http_respond). */
void http_add_header (gw_session_t *pss, const char *name, const char *value);

/* Queues {"detail": detail}. */
void http_respond_detail (gateway_t *gw, struct lws *wsi, gw_session_t *pss,
                          int status, const char *detail);

#endif
