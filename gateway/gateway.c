/*  gateway/gateway.c — the gateway actor: lws context, request lifecycle,
 *  answers from the actors. See gateway.h. */
#include "gateway.h"
#include "actor.h"
#include "http.h"
#include "log.h"
#include "mailbox.h"
#include "metrics.h"
#include "routes.h"
#include "ratelimit.h"
#include "token.h"
#include "ws.h"

#include <libwebsockets.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define GATEWAY_START_WAIT_MS 30000

/* --- the actor ------------------------------------------------------------ */

static int s_http_callback (struct lws *wsi, enum lws_callback_reasons reason,
                            void *user, void *in, size_t len);
static int s_zmq_callback (struct lws *wsi, enum lws_callback_reasons reason,
                           void *user, void *in, size_t len);

/* rx_buffer_size is allocated for every WebSocket connection: kept small
   (ws_on_receive reassembles messages up to 64 KiB from its pieces; most
   commands fit in one piece).
   tx_packet_size bounds one send(): 0 would bound it to rx_buffer_size, and
   lws would copy the rest of a coalesced frame to send it piece by piece. */
#define GATEWAY_RX_BUFFER 512
#define GATEWAY_TX_PACKET (1024 * 1024)

static const struct lws_protocols s_protocols[] = {
    /* the first protocol takes HTTP and WebSocket without a subprotocol (JSON) */
    { "http", s_http_callback, sizeof (gw_session_t), GATEWAY_RX_BUFFER, 0, NULL,
      GATEWAY_TX_PACKET },
    { "parley.msgpack", s_http_callback, sizeof (gw_session_t), GATEWAY_RX_BUFFER, 0, NULL,
      GATEWAY_TX_PACKET },
    { "parley-zmq", s_zmq_callback, 0, 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

typedef struct { int index; const config_t *config; } gateway_args_t;

static gateway_t *
s_gateway_from (struct lws *wsi)
{
    return lws_context_user (lws_get_context (wsi));
}

#define GATEWAY_SWEEP_US (1 * LWS_US_PER_SEC)

static void s_drain_inbox (gateway_t *gw);
static void s_drain_pipe (gateway_t *gw);

/* After a burst of connections opening or closing (a restart, a
   reconnect storm), once the count has settled: give the memory the burst
   left free back to the system. The burst's transient allocations (answers
   queued between actors, JSON, handshakes) are freed in the allocator's
   arenas of every thread, and would otherwise stay resident. */
#define GATEWAY_TRIM_CONNS 512

static void
s_trim_after_burst (gateway_t *gw)
{
    size_t open = zhashx_size (gw->conns);
    size_t delta = open > gw->trim_conns ? open - gw->trim_conns : gw->trim_conns - open;
    if (open == gw->sweep_conns && delta >= GATEWAY_TRIM_CONNS) {
        malloc_trim (0);
        gw->trim_conns = open;
    }
    gw->sweep_conns = open;
}

/* Housekeeping every second: idle rate-limit buckets, memory after bursts;
   and a backstop look at the inbox and pipe, whose ZMQ_FD signals edges only. */
static void
s_sweep (lws_sorted_usec_list_t *sul)
{
    gateway_t *gw = lws_container_of (sul, gateway_t, sweep);
    ratelimit_sweep (gw->buckets, gw->config, zclock_mono ());
    s_trim_after_burst (gw);
    s_drain_pipe (gw);
    s_drain_inbox (gw);
    lws_sul_schedule (gw->context, 0, &gw->sweep, s_sweep, GATEWAY_SWEEP_US);
}

/* Several gateways share the port: each listens on its own socket with
   SO_REUSEPORT (the kernel spreads new connections over them) and hands
   what it accepts to its lws vhost. libwebsockets 4.1 sets SO_REUSEPORT
   only for its own multi-threaded contexts (count_threads > 1, which
   Debian's build, LWS_MAX_SMP 1, does not have), so the socket is made
   here. -1 with the reason in `error`. */
static int
s_listen_shared (gateway_t *gw, char *error, size_t error_size)
{
    char port[16];
    snprintf (port, sizeof port, "%lld", (long long) gw->config->http_port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    if (getaddrinfo (gw->config->http_host, port, &hints, &ai) != 0 || !ai) {
        snprintf (error, error_size, "http_host %s: not a numeric address",
                  gw->config->http_host);
        return -1;
    }
    int fd = socket (ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0
        || setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0
        || setsockopt (fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0
        || (ai->ai_family == AF_INET6
            && setsockopt (fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        || bind (fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen (fd, SOMAXCONN) != 0) {
        snprintf (error, error_size,
                  "cannot listen on %s:%lld (http_host/http_port): %s",
                  gw->config->http_host, (long long) gw->config->http_port, strerror (errno));
        if (fd >= 0)
            close (fd);
        freeaddrinfo (ai);
        return -1;
    }
    freeaddrinfo (ai);
    lws_sock_file_fd_type desc;
    desc.filefd = fd;                      /* lws closes it with the context */
    struct lws *raw = lws_adopt_descriptor_vhost (gw->vhost, LWS_ADOPT_RAW_FILE_DESC, desc,
                                                  "parley-zmq", NULL);
    if (!raw) {
        close (fd);
        snprintf (error, error_size, "cannot adopt the listening socket");
        return -1;
    }
    gw->listen_fd = fd;
    lws_set_opaque_user_data (raw, &gw->listen_fd);
    return 0;
}

/* New connections on the shared socket: each becomes an HTTP connection of
   this gateway's vhost (REST, or WebSocket after the upgrade). */
static void
s_accept (gateway_t *gw)
{
    for (;;) {
        int fd = accept4 (gw->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn (gw->name, "accept: %s", strerror (errno));
            return;
        }
        /* what lws does for the sockets it accepts itself: no Nagle delay
           (40 ms per small answer with delayed ACKs otherwise) */
        int one = 1;
        setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!lws_adopt_socket_vhost (gw->vhost, fd))
            close (fd);                    /* lws refused it (no memory, fd table full) */
    }
}

/* Creates the lws context and adopts the inbox and pipe descriptors. */
static int
s_gateway_start (gateway_t *gw, char *error, size_t error_size)
{
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.port = (int) gw->config->http_port;
    info.iface = gw->config->http_host;
    info.protocols = s_protocols;
    info.user = gw;
    info.max_http_header_data = 16384;
    info.pt_serv_buf_size = 65536;
    info.count_threads = 1;
    info.timeout_secs = 30;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    /* an IPv4 address binds an IPv4 socket: an IPv6 one would listen on
       every interface whatever iface says */
    if (strchr (gw->config->http_host, ':') == NULL)
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (gw->config->gateway_threads > 1)
        info.port = CONTEXT_PORT_NO_LISTEN;    /* s_listen_shared */
    lws_set_log_level (getenv ("PARLEY_LWS_DEBUG") ? 0xff : (LLL_ERR | LLL_WARN), NULL);
    gw->context = lws_create_context (&info);
    if (!gw->context) {
        snprintf (error, error_size,
                  "cannot listen on %s:%lld (http_host/http_port): address in use or not available",
                  gw->config->http_host, (long long) gw->config->http_port);
        return -1;
    }
    gw->vhost = lws_get_vhost_by_name (gw->context, "default");
    if (gw->config->gateway_threads > 1 && s_listen_shared (gw, error, error_size) != 0)
        return -1;
    zsock_t *socks[2] = { gw->inbox, gw->pipe };
    for (int i = 0; i < 2; i++) {
        lws_sock_file_fd_type fd;
        fd.filefd = dup (zsock_fd (socks[i]));
        struct lws *raw = lws_adopt_descriptor_vhost (gw->vhost, LWS_ADOPT_RAW_FILE_DESC,
                                                      fd, "parley-zmq", NULL);
        if (!raw) {
            snprintf (error, error_size, "cannot adopt the inbox descriptor");
            return -1;
        }
        lws_set_opaque_user_data (raw, socks[i]);
    }
    lws_sul_schedule (gw->context, 0, &gw->sweep, s_sweep, GATEWAY_SWEEP_US);
    return 0;
}

static void
s_gateway_task (zsock_t *pipe, void *args_p)
{
    gateway_args_t *args = args_p;
    gateway_t gw = { .index = args->index, .config = args->config, .pipe = pipe };
    free (args);
    snprintf (gw.name, sizeof gw.name, "gateway.%d", gw.index);
    gw.inbox = mailbox_inbox_new (gw.name);
    gw.mailbox = mailbox_new ();
    gw.pending = zhashx_new ();
    gw.buckets = ratelimit_new ();
    gw.metrics = metrics_new (gw.name);
    gw.persisters = actor_shard_count (gw.config, "persister");
    gw.users_shards = actor_shard_count (gw.config, "user");
    ws_indexes_new (&gw);
    zsock_signal (pipe, 0);

    /* The START handshake: answer OK once listening, or ERROR why. */
    char *command = zstr_recv (pipe);
    char error[512] = "";
    bool ok = command && streq (command, "START")
              && s_gateway_start (&gw, error, sizeof error) == 0;
    zstr_free (&command);
    if (ok) {
        zstr_send (pipe, "OK");
        /* ZMQ_FD only signals edges: look once now that the pipe was used */
        s_drain_pipe (&gw);
        s_drain_inbox (&gw);
        log_info (gw.name, "serving http://%s:%lld", gw.config->http_host,
                  (long long) gw.config->http_port);
        while (!gw.terminated)
            if (lws_service (gw.context, 0) < 0)
                break;
    }
    else
        zstr_sendf (pipe, "ERROR %s", error[0] ? error : "gateway failed to start");
    if (gw.context)
        lws_context_destroy (gw.context);
    ws_indexes_destroy (&gw);
    zhashx_destroy (&gw.pending);
    zhashx_destroy (&gw.buckets);
    metrics_destroy (&gw.metrics);
    mailbox_destroy (&gw.mailbox);
    zsock_destroy (&gw.inbox);
    if (!ok) {
        /* wait for $TERM so zactor_destroy returns */
        char *term = zstr_recv (pipe);
        zstr_free (&term);
    }
}

zactor_t *
gateway_spawn (int index, const config_t *config, char *error, size_t error_size)
{
    gateway_args_t *args = calloc (1, sizeof *args);
    if (!args)
        return NULL;
    *args = (gateway_args_t) { index, config };
    zactor_t *actor = zactor_new (s_gateway_task, args);
    if (!actor)
        return NULL;
    zstr_send (actor, "START");
    zpoller_t *poller = zpoller_new (actor, NULL);
    char *reply = zpoller_wait (poller, GATEWAY_START_WAIT_MS) ? zstr_recv (actor) : NULL;
    zpoller_destroy (&poller);
    if (reply && streq (reply, "OK")) {
        zstr_free (&reply);
        return actor;
    }
    snprintf (error, error_size, "gateway.%d: %s", index,
              reply && strncmp (reply, "ERROR ", 6) == 0 ? reply + 6 : "did not start");
    zstr_free (&reply);
    zactor_destroy (&actor);
    return NULL;
}

/* --- the inbox: answers, health, stats, events ---------------------------- */

static void
s_on_envelope (gateway_t *gw, envelope_t *env)
{
    switch (env->type) {
    case ENVELOPE_HTTP_RESPONSE:
        if (!ws_on_response (gw, env))
            http_on_response (gw, env);
        break;
    case ENVELOPE_ROOM_EVENT:
        ws_on_room_event (gw, env);
        break;
    case ENVELOPE_ROOM_EPHEMERAL:
        ws_on_room_ephemeral (gw, env);
        break;
    case ENVELOPE_USER_EVENT:
        ws_on_user_event (gw, env);
        break;
    case ENVELOPE_HEALTH: {
        const char *store = json_string_value (json_object_get (env->body, "store"));
        bool ok = json_is_true (json_object_get (env->body, "ok"));
        if (store && streq (store, "postgresql"))
            gw->pg_ok = ok;
        else if (store && streq (store, "redis"))
            gw->redis_ok = ok;
        break;
    }
    case ENVELOPE_STATS:
        metrics_actor (gw->metrics, env->body);
        break;
    default:
        break;
    }
}

static void
s_drain_inbox (gateway_t *gw)
{
    envelope_t *env;
    /* ZMQ_FD is edge-triggered: drain until nothing is left. */
    while (mailbox_recv (gw->inbox, false, &env)) {
        if (env)
            s_on_envelope (gw, env);
        envelope_destroy (&env);
    }
}

static void
s_drain_pipe (gateway_t *gw)
{
    while (zsock_events (gw->pipe) & ZMQ_POLLIN) {
        char *command = zstr_recv (gw->pipe);
        if (!command || streq (command, "$TERM")) {
            gw->terminated = true;
            lws_cancel_service (gw->context);
        }
        zstr_free (&command);
        if (gw->terminated)
            break;
    }
}

static int
s_zmq_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user,
                void *in, size_t len)
{
    (void) user, (void) in, (void) len;
    if (reason == LWS_CALLBACK_RAW_RX_FILE) {
        gateway_t *gw = s_gateway_from (wsi);
        void *sock = lws_get_opaque_user_data (wsi);
        if (sock == &gw->listen_fd)
            s_accept (gw);
        else if (sock == gw->pipe)
            s_drain_pipe (gw);
        else
            s_drain_inbox (gw);
    }
    return 0;
}

/* --- HTTP: a thin switch, each case one function (gateway/http.c) -------- */

static int
s_http_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user,
                 void *in, size_t len)
{
    gw_session_t *pss = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return http_on_request (s_gateway_from (wsi), wsi, pss, in);
    case LWS_CALLBACK_HTTP_BODY:
        return http_on_body (s_gateway_from (wsi), wsi, pss, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return http_on_body_complete (s_gateway_from (wsi), wsi, pss);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_on_writeable (s_gateway_from (wsi), wsi, pss);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        http_session_free (s_gateway_from (wsi), pss);
        break;
    case LWS_CALLBACK_HTTP_BIND_PROTOCOL:
        metrics_add (s_gateway_from (wsi)->metrics, "http_requests_in_flight", 1);
        break;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return ws_on_confirm_upgrade (s_gateway_from (wsi), wsi);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return ws_on_filter (s_gateway_from (wsi), wsi);
    case LWS_CALLBACK_WSI_DESTROY:
        ws_on_destroy (wsi);
        break;
    case LWS_CALLBACK_ESTABLISHED:
        return ws_on_established (s_gateway_from (wsi), wsi, pss);
    case LWS_CALLBACK_RECEIVE:
        return ws_on_receive (s_gateway_from (wsi), wsi, pss, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return ws_on_writeable (s_gateway_from (wsi), wsi, pss);
    case LWS_CALLBACK_TIMER:
        return ws_on_timer (s_gateway_from (wsi), wsi, pss);
    case LWS_CALLBACK_CLOSED:
        ws_on_closed (s_gateway_from (wsi), pss);
        break;
    default:
        break;
    }
    if (reason == LWS_CALLBACK_HTTP_DROP_PROTOCOL)
        metrics_add (s_gateway_from (wsi)->metrics, "http_requests_in_flight", -1);
    return lws_callback_http_dummy (wsi, reason, user, in, len);
}
