/*  tools/parley-load.c — Parley's load tester (API.md §5). See docs/tools.md.
 *
 *  N WebSocket clients (one libwebsockets context, many connections) over
 *  R rooms send messages at a target rate or flat out; or, with --inject,
 *  the same users' messages flood the ZeroMQ inject socket. Users are
 *  registered (or logged in, when they exist) and rooms created over REST
 *  with libcurl. Every message carries its sender, number and send time,
 *  so each receiver — the WebSocket clients, and with --events a
 *  subscriber of the event socket — can tell what it got: delivered,
 *  duplicated, out of order (by the room seq), and the delivery latency;
 *  what an acknowledged message's receivers never got is lost. Latencies
 *  go into log-linear histograms (tools/lib/histogram.h). A progress line
 *  each second; the report at the end. Loopback targets only.
 *
 *  Everything runs on one thread: lws_service drives the sockets, and a
 *  1 ms timer (lws_sul) paces the sends, drains the ZeroMQ sockets and
 *  prints the progress.
 */
#include "histogram.h"
#include "toolkit.h"

#include <curl/curl.h>
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define LOAD_TICK_US       1000
#define LOAD_CONNECT_S     60          /* every client ready within       */
#define LOAD_CLIENT_CAP    1000        /* sends queued + in flight, rate mode */
#define LOAD_ZMQ_BATCH     4096        /* ZeroMQ messages read per tick   */

/* The seqs one receiver got in one room. */
typedef struct {
    uint8_t *bits;
    size_t size;             /* bytes */
    int64_t max;
} seqset_t;

typedef struct load_t load_t;

typedef struct {
    load_t *load;
    int index;
    int room;                /* index into load->rooms */
    char user[40];
    char *token;
    struct lws *wsi;
    bool ready, closed;
    char *rx;                /* a frame being reassembled */
    size_t rx_len, rx_cap;
    long queued;             /* sends waiting for WRITEABLE */
    long in_flight;          /* sent, no ack or error yet   */
    long next_n;
    seqset_t seen;
} client_t;

typedef struct {
    char id[40];
    long members;            /* clients in it */
    long receivers;          /* ready clients (+1 with --events) when sending began */
    seqset_t events_seen;    /* what the events subscriber got */
} room_t;

struct load_t {
    /* options */
    const char *url, *inject_endpoint, *events_endpoint, *prefix, *password;
    long clients_n, rooms_n, window, count, size;
    double rate, duration, drain;
    bool inject, events, json, no_ws, bus_only;
    tool_curve_t curve;
    /* state */
    char host[256];
    int port;
    client_t *clients;
    room_t *rooms;
    zhashx_t *room_index;    /* room id -> index + 1 */
    struct lws_context *context;
    lws_sorted_usec_list_t sul;
    zsock_t *dealer, *sub;
    int64_t start_ns, send_start_ns, send_end_ns, last_progress_ns, drain_end_ns;
    int phase;               /* 0 connecting, 1 sending, 2 draining, 3 done */
    long next_sender;
    long inject_in_flight;
    /* figures */
    long sent, acked, errors, delivered, unique, duplicated, out_of_order, expected;
    long disconnects;
    long last_sent, last_acked, last_delivered;
    zhashx_t *error_codes;   /* code -> count (boxed long) */
    histogram_t *latency, *ack_latency;
    bool interrupted;
};

static volatile sig_atomic_t s_interrupted;

static void
s_on_signal (int sig)
{
    (void) sig;
    s_interrupted = 1;
}

/* --- usage and options ----------------------------------------------------- */

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: parley-load [options]\n"
        "Load-tests a Parley server on this machine: N WebSocket clients over R rooms\n"
        "send messages at a target rate or flat out (or, with --inject, the same\n"
        "users' messages flood the ZeroMQ inject socket), and every receiver checks\n"
        "what it gets. Users load-<prefix>-<i> are registered (or logged in) and\n"
        "fresh rooms created over REST first. Prints a progress line each second and\n"
        "a report: sent, acknowledged, delivered, lost, duplicated, out of order, and\n"
        "latency p50/p90/p99/p99.9/max. Loopback targets only.\n"
        "options:\n"
        "  --url URL             server (default http://127.0.0.1:8080)\n"
        "  --clients N           users / WebSocket clients (default 20)\n"
        "  --rooms R             rooms; client i is in room i %% R (default 4)\n"
        "  --rate M              messages per second in total (default 0: flat out)\n"
        "  --window W            flat out: messages each client keeps in flight\n"
        "                        (default 1; with --inject: in total, default 2000)\n"
        "  --duration SECS       send for SECS (default 10)\n"
        "  --count N             send at most N messages in total\n"
        "  --drain SECS          then wait at most SECS for deliveries (default 5)\n"
        "  --size BYTES          message content size (default 64)\n"
        "  --prefix P            user name prefix (default \"run\")\n"
        "  --password P          their password (default load-password-1)\n"
        "  --inject              send over the ZeroMQ inject socket, not WebSocket\n"
        "  --inject-endpoint E   (default %s)\n"
        "  --events              also receive on the event socket (room.* topics);\n"
        "                        on by default with --inject\n"
        "  --events-endpoint E   (default %s)\n"
        "  --no-ws               with --inject: no WebSocket clients (receivers: events)\n"
        "  --bus-only            --inject --no-ws with envelopes the bus refuses before\n"
        "                        any database work (`user` not a UUID: wrong_type): the\n"
        "                        inject socket, codec and reply path alone\n"
        "  --json                print the report as one JSON object too\n"
        TOOL_CURVE_HELP
        "  -h, --help            this help\n"
        "The server's send rate limit (rate_limit_per_sec, rate_limit_burst) applies\n"
        "to WebSocket sends: raise it for load tests; the inject is not limited.\n",
        TOOL_INJECT_ENDPOINT, TOOL_EVENTS_ENDPOINT);
}

/* Parses one numeric option value into `out` (long or double). */
static int
s_number (int argc, char *argv[], int *i, double min, double max, double *out)
{
    if (*i + 1 >= argc)
        return -1;
    return tool_parse_double (argv[++*i], min, max, out);
}

static int
s_option (load_t *self, int argc, char *argv[], int *i)
{
    const char *a = argv[*i];
    bool more = *i + 1 < argc;
    double n = 0;
    int rc = 0;
    if (streq (a, "--url") && more)
        self->url = argv[++*i];
    else if (streq (a, "--inject-endpoint") && more)
        self->inject_endpoint = argv[++*i];
    else if (streq (a, "--events-endpoint") && more)
        self->events_endpoint = argv[++*i];
    else if (streq (a, "--prefix") && more)
        self->prefix = argv[++*i];
    else if (streq (a, "--password") && more)
        self->password = argv[++*i];
    else if (streq (a, "--inject"))
        self->inject = true;
    else if (streq (a, "--events"))
        self->events = true;
    else if (streq (a, "--no-ws"))
        self->no_ws = true;
    else if (streq (a, "--bus-only"))
        self->bus_only = self->inject = self->no_ws = true;
    else if (streq (a, "--json"))
        self->json = true;
    else if (streq (a, "--clients") && (rc = s_number (argc, argv, i, 1, 100000, &n)) == 0)
        self->clients_n = (long) n;
    else if (streq (a, "--rooms") && (rc = s_number (argc, argv, i, 1, 100000, &n)) == 0)
        self->rooms_n = (long) n;
    else if (streq (a, "--window") && (rc = s_number (argc, argv, i, 1, 1e6, &n)) == 0)
        self->window = (long) n;
    else if (streq (a, "--count") && (rc = s_number (argc, argv, i, 1, 1e12, &n)) == 0)
        self->count = (long) n;
    else if (streq (a, "--size") && (rc = s_number (argc, argv, i, 32, 10000, &n)) == 0)
        self->size = (long) n;
    else if (streq (a, "--rate") && (rc = s_number (argc, argv, i, 0, 1e7, &n)) == 0)
        self->rate = n;
    else if (streq (a, "--duration") && (rc = s_number (argc, argv, i, 0.1, 1e6, &n)) == 0)
        self->duration = n;
    else if (streq (a, "--drain") && (rc = s_number (argc, argv, i, 0, 3600, &n)) == 0)
        self->drain = n;
    else
        return -1;
    return rc;
}

static int
s_options (load_t *self, int argc, char *argv[])
{
    for (int i = 1; i < argc; i++) {
        if (streq (argv[i], "-h") || streq (argv[i], "--help")) {
            s_usage (stdout);
            return 1;
        }
        int curve = tool_curve_option (&self->curve, argc, argv, &i);
        if (curve < 0 || (curve == 0 && s_option (self, argc, argv, &i) != 0)) {
            fprintf (stderr, "parley-load: bad option %s\n", argv[i]);
            return -1;
        }
    }
    if (self->inject) {
        self->events = true;            /* the inject's receivers: events */
        if (!self->window)
            self->window = 2000;
    }
    if (!self->window)
        self->window = 1;
    return 0;
}

/* --- seq sets ---------------------------------------------------------- */

/* Records `seq`: 0 new in order, 1 duplicate, 2 new but out of order. */
static int
s_seen (seqset_t *set, int64_t seq)
{
    if (seq < 0)
        return 1;
    size_t byte = (size_t) seq / 8;
    if (byte >= set->size) {
        size_t size = set->size ? set->size : 64;
        while (size <= byte)
            size *= 2;
        set->bits = realloc (set->bits, size);
        memset (set->bits + set->size, 0, size - set->size);
        set->size = size;
    }
    uint8_t mask = (uint8_t) (1u << (seq % 8));
    if (set->bits[byte] & mask)
        return 1;
    set->bits[byte] |= mask;
    int late = seq < set->max;
    if (seq > set->max)
        set->max = seq;
    return late ? 2 : 0;
}

/* --- REST setup (libcurl) ---------------------------------------------------- */

static size_t
s_curl_write (char *data, size_t size, size_t n, void *buffer)
{
    zchunk_extend ((zchunk_t *) buffer, data, size * n);
    return size * n;
}

/* POSTs `body` (taken) to `path`; returns the status and the parsed answer
   in *answer (caller owns; NULL when not JSON). */
static long
s_post (CURL *curl, load_t *self, const char *path, const char *token, json_t *body,
        json_t **answer)
{
    char url[512], auth[1100];
    snprintf (url, sizeof url, "%s%s", self->url, path);
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    struct curl_slist *headers = curl_slist_append (NULL, "Content-Type: application/json");
    if (token) {
        snprintf (auth, sizeof auth, "Authorization: Bearer %s", token);
        headers = curl_slist_append (headers, auth);
    }
    zchunk_t *buffer = zchunk_new (NULL, 0);
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (curl, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_curl_write);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, buffer);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT, 60L);
    long status = 0;
    if (curl_easy_perform (curl) == CURLE_OK)
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    *answer = json_loadb ((const char *) zchunk_data (buffer), zchunk_size (buffer), 0, NULL);
    zchunk_destroy (&buffer);
    curl_slist_free_all (headers);
    free (text);
    return status;
}

/* Registers (400 when it exists is fine) and logs client `c` in. */
static int
s_login (CURL *curl, load_t *self, client_t *c)
{
    char name[160];
    snprintf (name, sizeof name, "load-%s-%d", self->prefix, c->index);
    json_t *answer = NULL;
    long status = s_post (curl, self, "/api/auth/register/", NULL,
                          json_pack ("{s:s s:s}", "username", name, "password", self->password),
                          &answer);
    json_decref (answer);
    if (status != 201 && status != 400) {
        fprintf (stderr, "parley-load: register %s: HTTP %ld\n", name, status);
        return -1;
    }
    status = s_post (curl, self, "/api/auth/login/", NULL,
                     json_pack ("{s:s s:s}", "username", name, "password", self->password),
                     &answer);
    const char *access = json_string_value (json_object_get (answer, "access"));
    const char *id = json_string_value (json_object_get (json_object_get (answer, "user"), "id"));
    if (status != 200 || !access || !id) {
        fprintf (stderr, "parley-load: login %s: HTTP %ld (another password? --prefix)\n",
                 name, status);
        json_decref (answer);
        return -1;
    }
    c->token = strdup (access);
    snprintf (c->user, sizeof c->user, "%s", id);
    json_decref (answer);
    return 0;
}

/* Creates room `r` as its first member, with the others. */
static int
s_create_room (CURL *curl, load_t *self, long r)
{
    json_t *participants = json_array ();
    client_t *owner = &self->clients[r];
    for (long i = r + self->rooms_n; i < self->clients_n; i += self->rooms_n)
        json_array_append_new (participants, json_string (self->clients[i].user));
    long members = json_array_size (participants) + 1;
    char name[200];
    snprintf (name, sizeof name, "load-%s-%ld-%lld", self->prefix, r,
              (long long) tool_now_ms ());
    json_t *answer = NULL;
    long status = s_post (curl, self, "/api/messaging/rooms/", owner->token,
        json_pack ("{s:s s:s s:o s:i}", "name", name, "room_type", "group", "participants",
                   participants, "max_participants", members < 256 ? 256 : (int) members),
        &answer);
    const char *id = json_string_value (json_object_get (answer, "id"));
    if (status != 201 || !id) {
        fprintf (stderr, "parley-load: creating room %ld: HTTP %ld\n", r, status);
        json_decref (answer);
        return -1;
    }
    snprintf (self->rooms[r].id, sizeof self->rooms[r].id, "%s", id);
    self->rooms[r].members = members;
    zhashx_insert (self->room_index, id, (void *) (intptr_t) (r + 1));
    json_decref (answer);
    return 0;
}

static int
s_setup_rest (load_t *self)
{
    CURL *curl = curl_easy_init ();
    if (!curl)
        return -1;
    int rc = 0;
    int64_t t0 = tool_mono_ns ();
    for (long i = 0; i < self->clients_n && rc == 0; i++) {
        rc = s_login (curl, self, &self->clients[i]);
        if (i % 100 == 99)
            fprintf (stderr, "parley-load: %ld users logged in\n", i + 1);
    }
    for (long r = 0; r < self->rooms_n && rc == 0; r++)
        rc = s_create_room (curl, self, r);
    curl_easy_cleanup (curl);
    if (rc == 0)
        fprintf (stderr, "parley-load: %ld users, %ld rooms ready in %.1f s\n",
                 self->clients_n, self->rooms_n, (tool_mono_ns () - t0) / 1e9);
    return rc;
}

/* --- receiving --------------------------------------------------------------- */

/* Parses "L <sender> <n> <t_ns> ..." — our message's content. */
static bool
s_parse_content (const char *content, long *sender, long *n, int64_t *t_ns)
{
    long long t = 0;
    if (!content || sscanf (content, "L %ld %ld %lld", sender, n, &t) != 3)
        return false;
    *t_ns = t;
    return true;
}

/* One delivery of a message.new event to a receiver's seq set. */
static void
s_delivered (load_t *self, seqset_t *seen, json_t *event)
{
    json_t *message = json_object_get (event, "message");
    long sender, n;
    int64_t t_ns;
    if (!s_parse_content (json_string_value (json_object_get (message, "content")),
                          &sender, &n, &t_ns))
        return;
    self->delivered++;
    int how = s_seen (seen, json_integer_value (json_object_get (event, "seq")));
    if (how == 1) {
        self->duplicated++;
        return;
    }
    self->unique++;
    self->out_of_order += how == 2;
    histogram_record (self->latency, (uint64_t) (tool_mono_ns () - t_ns));
}

static void
s_count_error (load_t *self, const char *code)
{
    self->errors++;
    long *count = zhashx_lookup (self->error_codes, code ? code : "?");
    if (!count) {
        count = calloc (1, sizeof *count);
        zhashx_insert (self->error_codes, code ? code : "?", count);
    }
    (*count)++;
}

/* An acknowledged message: its receivers should get it. */
static void
s_acked (load_t *self, long room, const char *content)
{
    long sender, n;
    int64_t t_ns;
    self->acked++;
    if (room >= 0)
        self->expected += self->rooms[room].receivers;
    if (s_parse_content (content, &sender, &n, &t_ns))
        histogram_record (self->ack_latency, (uint64_t) (tool_mono_ns () - t_ns));
}

/* One server event (or command answer) for client `c`. */
static void
s_on_event (client_t *c, json_t *event)
{
    load_t *self = c->load;
    const char *type = json_string_value (json_object_get (event, "type"));
    if (!type)
        return;
    if (streq (type, "message.new"))
        s_delivered (self, &c->seen, event);
    else if (streq (type, "ack")) {
        c->in_flight--;
        json_t *message = json_object_get (event, "message");
        s_acked (self, c->room, json_string_value (json_object_get (message, "content")));
    }
    else if (streq (type, "error")) {
        c->in_flight--;
        s_count_error (self, json_string_value (json_object_get (event, "code")));
    }
    else if (streq (type, "ready"))
        c->ready = true;
}

static void
s_on_frame (client_t *c, const char *data, size_t len)
{
    json_t *frame = json_loadb (data, len, 0, NULL);
    if (json_is_array (frame)) {
        size_t i;
        json_t *event;
        json_array_foreach (frame, i, event)
            s_on_event (c, event);
    }
    else if (json_is_object (frame))
        s_on_event (c, frame);
    json_decref (frame);
}

/* --- WebSocket clients ------------------------------------------------------- */

static int
s_write (client_t *c)
{
    load_t *self = c->load;
    if (c->queued <= 0)
        return 0;
    char content[10001];
    int head = snprintf (content, sizeof content, "L %d %ld %lld ", c->index, c->next_n++,
                         (long long) tool_mono_ns ());
    long pad = self->size > head ? self->size - head : 0;
    memset (content + head, 'x', (size_t) pad);
    content[head + pad] = '\0';
    json_t *command = json_pack ("{s:s s:s s:s s:I}", "type", "message.send", "room",
                                 self->rooms[c->room].id, "content", content, "ref",
                                 (json_int_t) c->next_n);
    char *text = json_dumps (command, JSON_COMPACT);
    json_decref (command);
    size_t len = strlen (text);
    unsigned char *buf = malloc (LWS_PRE + len);
    memcpy (buf + LWS_PRE, text, len);
    int rc = lws_write (c->wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
    free (buf);
    free (text);
    if (rc < (int) len)
        return -1;
    c->queued--;
    c->in_flight++;
    self->sent++;
    if (c->queued > 0)
        lws_callback_on_writable (c->wsi);
    return 0;
}

static void
s_receive (client_t *c, struct lws *wsi, const void *in, size_t len)
{
    if (c->rx_len + len > c->rx_cap) {
        c->rx_cap = (c->rx_len + len) * 2;
        c->rx = realloc (c->rx, c->rx_cap);
    }
    memcpy (c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (lws_is_final_fragment (wsi) && !lws_remaining_packet_payload (wsi)) {
        s_on_frame (c, c->rx, c->rx_len);
        c->rx_len = 0;
    }
}

static int
s_ws_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
               size_t len)
{
    (void) user;
    client_t *c = lws_get_opaque_user_data (wsi);
    if (!c)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        fprintf (stderr, "parley-load: client %d: connection error: %s\n", c->index,
                 in ? (const char *) in : "?");
        /* fall through */
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!c->closed && c->load->phase < 3)
            c->load->disconnects++;
        c->closed = true;
        c->wsi = NULL;
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        s_receive (c, wsi, in, len);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return s_write (c);
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols s_protocols[] = {
    { "parley-load", s_ws_callback, 0, 65536, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void
s_connect_client (load_t *self, client_t *c)
{
    char path[1200];
    snprintf (path, sizeof path, "/ws/?token=%s", c->token);
    struct lws_client_connect_info info = { 0 };
    info.context = self->context;
    info.address = self->host;
    info.port = self->port;
    info.path = path;
    info.host = self->host;
    info.origin = self->host;
    info.ietf_version_or_minus_one = -1;
    info.local_protocol_name = "parley-load";
    info.opaque_user_data = c;
    info.pwsi = &c->wsi;
    if (!lws_client_connect_via_info (&info)) {
        c->closed = true;
        self->disconnects++;
    }
}

/* --- the inject and the event socket ------------------------------------------ */

static void
s_inject_send (load_t *self, long sender)
{
    client_t *c = &self->clients[sender];
    envelope_t *env = envelope_new (ENVELOPE_MESSAGE_SEND);
    char content[10001];
    int64_t now = tool_mono_ns ();
    int head = snprintf (content, sizeof content, "L %d %ld %lld ", c->index, c->next_n++,
                         (long long) now);
    long pad = self->size > head ? self->size - head : 0;
    memset (content + head, 'x', (size_t) pad);
    content[head + pad] = '\0';
    /* the id carries what the reply needs: room and send time */
    snprintf (env->id, sizeof env->id, "%d-%lld", c->room, (long long) now);
    snprintf (env->user, sizeof env->user, "%s", self->bus_only ? "bus-only" : c->user);
    snprintf (env->room, sizeof env->room, "%s", self->rooms[c->room].id);
    envelope_set_body (env, json_pack ("{s:s}", "content", content));
    if (tool_send_envelope (self->dealer, env) == 0) {
        self->sent++;
        self->inject_in_flight++;
    }
    envelope_destroy (&env);
}

static void
s_inject_replies (load_t *self)
{
    for (int i = 0; i < LOAD_ZMQ_BATCH && (zsock_events (self->dealer) & ZMQ_POLLIN); i++) {
        zframe_t *frame = zframe_recv (self->dealer);
        envelope_t *reply = frame ? envelope_decode (zframe_data (frame), zframe_size (frame),
                                                     NULL, NULL, 0) : NULL;
        zframe_destroy (&frame);
        if (!reply)
            continue;
        self->inject_in_flight--;
        int room = -1;
        long long sent_ns = 0;
        sscanf (reply->re, "%d-%lld", &room, &sent_ns);
        if (json_is_true (json_object_get (reply->body, "ok"))) {
            self->acked++;
            if (room >= 0 && room < self->rooms_n)
                self->expected += self->rooms[room].receivers;
            histogram_record (self->ack_latency, (uint64_t) (tool_mono_ns () - sent_ns));
        }
        else {
            s_count_error (self, json_string_value (json_object_get (reply->body, "code")));
            if (self->bus_only)           /* every reply is the point here */
                histogram_record (self->ack_latency, (uint64_t) (tool_mono_ns () - sent_ns));
        }
        envelope_destroy (&reply);
    }
}

static void
s_events_in (load_t *self)
{
    for (int i = 0; i < LOAD_ZMQ_BATCH && (zsock_events (self->sub) & ZMQ_POLLIN); i++) {
        zmsg_t *msg = zmsg_recv (self->sub);
        zframe_t *frame = msg ? zmsg_last (msg) : NULL;
        envelope_t *env = frame && zmsg_size (msg) == 2
            ? envelope_decode (zframe_data (frame), zframe_size (frame), NULL, NULL, 0) : NULL;
        intptr_t r = env ? (intptr_t) zhashx_lookup (self->room_index, env->room) : 0;
        if (env && r && env->type == ENVELOPE_EVENT_MESSAGE_NEW)
            s_delivered (self, &self->rooms[r - 1].events_seen, env->body);
        envelope_destroy (&env);
        zmsg_destroy (&msg);
    }
}

/* --- pacing, progress, phases ------------------------------------------------ */

/* Messages due now: by rate, or what the windows allow (flat out). */
static void
s_schedule_sends (load_t *self, int64_t now)
{
    long budget = self->count ? self->count - self->sent : LONG_MAX;
    if (self->inject) {
        long want = self->rate > 0
            ? (long) (self->rate * (now - self->send_start_ns) / 1e9) - self->sent
            : self->window - self->inject_in_flight;
        for (long k = 0; k < want && k < budget && self->inject_in_flight < 1000000; k++) {
            s_inject_send (self, self->next_sender);
            self->next_sender = (self->next_sender + 1) % self->clients_n;
        }
        return;
    }
    long queued_total = 0;
    for (long i = 0; i < self->clients_n; i++)
        queued_total += self->clients[i].queued;
    if (self->rate > 0) {
        long want = (long) (self->rate * (now - self->send_start_ns) / 1e9)
                    - self->sent - queued_total;
        for (long k = 0, tries = 0; k < want && k < budget - queued_total
                                    && tries < self->clients_n; ) {
            client_t *c = &self->clients[self->next_sender];
            self->next_sender = (self->next_sender + 1) % self->clients_n;
            if (c->ready && !c->closed && c->queued + c->in_flight < LOAD_CLIENT_CAP) {
                c->queued++, k++, tries = 0;
                lws_callback_on_writable (c->wsi);
            }
            else
                tries++;
        }
        return;
    }
    for (long i = 0; i < self->clients_n && queued_total < budget; i++) {
        client_t *c = &self->clients[i];
        if (c->ready && !c->closed && c->queued + c->in_flight < self->window) {
            long add = self->window - c->queued - c->in_flight;
            if (add > budget - queued_total)
                add = budget - queued_total;
            c->queued += add;
            queued_total += add;
            lws_callback_on_writable (c->wsi);
        }
    }
}

static void
s_ms (const histogram_t *h, double p, char *out, size_t size)
{
    snprintf (out, size, "%.2f", histogram_percentile (h, p) / 1e6);
}

static void
s_progress (load_t *self, int64_t now)
{
    double dt = (now - self->last_progress_ns) / 1e9;
    char p50[32], p99[32];
    s_ms (self->latency, 50, p50, sizeof p50);
    s_ms (self->latency, 99, p99, sizeof p99);
    fprintf (stderr, "[%6.1fs] %-8s sent %ld (%.0f/s) acked %ld (%.0f/s) errors %ld"
                     " delivered %ld (%.0f/s) latency p50 %s ms p99 %s ms\n",
             (now - self->start_ns) / 1e9,
             self->phase == 1 ? "sending" : self->phase == 2 ? "draining" : "connect",
             self->sent, (self->sent - self->last_sent) / dt, self->acked,
             (self->acked - self->last_acked) / dt, self->errors, self->delivered,
             (self->delivered - self->last_delivered) / dt, p50, p99);
    self->last_sent = self->sent;
    self->last_acked = self->acked;
    self->last_delivered = self->delivered;
    self->last_progress_ns = now;
}

/* Sending starts: who receives what is fixed now. */
static void
s_begin_sending (load_t *self, int64_t now)
{
    long ready = 0;
    for (long i = 0; i < self->clients_n; i++)
        if (self->clients[i].ready && !self->clients[i].closed) {
            ready++;
            self->rooms[self->clients[i].room].receivers++;
        }
    for (long r = 0; r < self->rooms_n && self->events; r++)
        self->rooms[r].receivers++;
    if (!self->no_ws && ready < self->clients_n)
        fprintf (stderr, "parley-load: only %ld of %ld clients connected\n", ready,
                 self->clients_n);
    self->phase = 1;
    self->send_start_ns = now;
}

static bool
s_all_ready (load_t *self)
{
    if (self->no_ws)
        return true;
    for (long i = 0; i < self->clients_n; i++)
        if (!self->clients[i].ready && !self->clients[i].closed)
            return false;
    return true;
}

static long
s_in_flight (load_t *self)
{
    long n = self->inject_in_flight;
    for (long i = 0; i < self->clients_n && !self->inject; i++)
        n += self->clients[i].in_flight + self->clients[i].queued;
    return n;
}

/* Moves between phases: connecting, sending, draining, done. */
static void
s_phase (load_t *self, int64_t now)
{
    if (s_interrupted && self->phase < 3) {
        self->interrupted = true;
        self->phase = 3;
    }
    if (self->phase == 0 && (s_all_ready (self)
                             || now - self->start_ns > (int64_t) LOAD_CONNECT_S * 1000000000))
        s_begin_sending (self, now);
    else if (self->phase == 1
             && (now - self->send_start_ns >= (int64_t) (self->duration * 1e9)
                 || (self->count && self->sent >= self->count))) {
        self->phase = 2;
        self->send_end_ns = now;
        self->drain_end_ns = now + (int64_t) (self->drain * 1e9);
        for (long i = 0; i < self->clients_n; i++)
            self->clients[i].queued = 0;           /* unsent: never sent */
    }
    else if (self->phase == 2 && (now >= self->drain_end_ns
                                  || (s_in_flight (self) == 0
                                      && self->unique >= self->expected)))
        self->phase = 3;
}

static void
s_tick (lws_sorted_usec_list_t *sul)
{
    load_t *self = lws_container_of (sul, load_t, sul);
    int64_t now = tool_mono_ns ();
    if (self->dealer)
        s_inject_replies (self);
    if (self->sub)
        s_events_in (self);
    s_phase (self, now);
    if (self->phase == 1)
        s_schedule_sends (self, now);
    if (now - self->last_progress_ns >= 1000000000)
        s_progress (self, now);
    if (self->phase < 3)
        lws_sul_schedule (self->context, 0, &self->sul, s_tick, LOAD_TICK_US);
    else
        lws_cancel_service (self->context);
}

/* --- report ------------------------------------------------------------------ */

static json_t *
s_latency_json (const histogram_t *h)
{
    return json_pack ("{s:I s:f s:f s:f s:f s:f s:f}", "count", (json_int_t) histogram_count (h),
                      "p50_ms", histogram_percentile (h, 50) / 1e6,
                      "p90_ms", histogram_percentile (h, 90) / 1e6,
                      "p99_ms", histogram_percentile (h, 99) / 1e6,
                      "p99_9_ms", histogram_percentile (h, 99.9) / 1e6,
                      "max_ms", histogram_max (h) / 1e6, "mean_ms", histogram_mean (h) / 1e6);
}

static json_t *
s_report_json (load_t *self)
{
    double secs = (self->send_end_ns - self->send_start_ns) / 1e9;
    long lost = self->expected > self->unique ? self->expected - self->unique : 0;
    json_t *codes = json_object ();
    for (long *n = zhashx_first (self->error_codes); n; n = zhashx_next (self->error_codes))
        json_object_set_new (codes, zhashx_cursor (self->error_codes), json_integer (*n));
    return json_pack ("{s:s s:I s:I s:f s:f s:I s:f s:I s:f s:I s:o s:I s:I s:I s:I s:I s:I"
                      " s:o s:o s:b}",
        "mode", self->inject ? "inject" : "websocket", "clients", (json_int_t) self->clients_n,
        "rooms", (json_int_t) self->rooms_n, "send_seconds", secs,
        "rate_target", self->rate, "sent", (json_int_t) self->sent,
        "sent_per_s", secs > 0 ? self->sent / secs : 0.0, "acked", (json_int_t) self->acked,
        "acked_per_s", secs > 0 ? self->acked / secs : 0.0, "errors", (json_int_t) self->errors,
        "error_codes", codes, "expected", (json_int_t) self->expected,
        "delivered", (json_int_t) self->delivered, "lost", (json_int_t) lost,
        "duplicated", (json_int_t) self->duplicated,
        "out_of_order", (json_int_t) self->out_of_order,
        "disconnects", (json_int_t) self->disconnects,
        "delivery_latency", s_latency_json (self->latency),
        "ack_latency", s_latency_json (self->ack_latency), "interrupted", self->interrupted);
}

static void
s_print_latency (const char *name, json_t *l)
{
    printf ("%-18s p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms  (%lld samples)\n",
            name, json_real_value (json_object_get (l, "p50_ms")),
            json_real_value (json_object_get (l, "p90_ms")),
            json_real_value (json_object_get (l, "p99_ms")),
            json_real_value (json_object_get (l, "p99_9_ms")),
            json_real_value (json_object_get (l, "max_ms")),
            (long long) json_integer_value (json_object_get (l, "count")));
}

static void
s_report (load_t *self)
{
    json_t *r = s_report_json (self);
#define I(k) (long long) json_integer_value (json_object_get (r, k))
#define F(k) json_real_value (json_object_get (r, k))
    printf ("parley-load: %s, %lld clients, %lld rooms, %.1f s of sending%s\n",
            json_string_value (json_object_get (r, "mode")), I ("clients"), I ("rooms"),
            F ("send_seconds"), self->interrupted ? " (interrupted)" : "");
    printf ("sent         %lld  (%.0f/s)\n", I ("sent"), F ("sent_per_s"));
    printf ("acknowledged %lld  (%.0f/s, committed)\n", I ("acked"), F ("acked_per_s"));
    printf ("errors       %lld", I ("errors"));
    const char *code;
    json_t *n;
    json_object_foreach (json_object_get (r, "error_codes"), code, n)
        printf ("  %s: %lld", code, (long long) json_integer_value (n));
    printf ("\ndelivered    %lld  (expected %lld)\n", I ("delivered"), I ("expected"));
    printf ("lost         %lld\nduplicated   %lld\nout of order %lld\ndisconnects  %lld\n",
            I ("lost"), I ("duplicated"), I ("out_of_order"), I ("disconnects"));
    s_print_latency ("delivery latency", json_object_get (r, "delivery_latency"));
    s_print_latency ("ack latency", json_object_get (r, "ack_latency"));
#undef I
#undef F
    if (self->json)
        tool_print_line (stdout, r);
    else
        json_decref (r);
    fflush (stdout);
}

/* --- set-up and main ------------------------------------------------------------ */

static int
s_parse_url (load_t *self)
{
    if (strncmp (self->url, "http://", 7) != 0 || !tool_is_loopback (self->url)) {
        fprintf (stderr, "parley-load: --url must be http:// on loopback (127.x, localhost)\n");
        return -1;
    }
    const char *host = self->url + 7;
    size_t length = strcspn (host, ":/");
    snprintf (self->host, sizeof self->host, "%.*s", (int) length, host);
    self->port = host[length] == ':' ? atoi (host + length + 1) : 80;
    if ((self->inject && !tool_is_loopback (self->inject_endpoint))
        || (self->events && !tool_is_loopback (self->events_endpoint))) {
        fprintf (stderr, "parley-load: ZeroMQ endpoints must be on loopback\n");
        return -1;
    }
    return self->port > 0 ? 0 : -1;
}

static int
s_setup_sockets (load_t *self)
{
    char error[256];
    if (self->inject) {
        self->dealer = tool_connect (ZMQ_DEALER, self->inject_endpoint, &self->curve, error,
                                     sizeof error);
        if (!self->dealer)
            goto fail;
        zsock_set_sndhwm (self->dealer, 0);
        zsock_set_rcvhwm (self->dealer, 0);
    }
    if (self->events) {
        self->sub = tool_connect (ZMQ_SUB, self->events_endpoint, &self->curve, error,
                                  sizeof error);
        if (!self->sub)
            goto fail;
        zsock_set_rcvhwm (self->sub, 0);
        for (long r = 0; r < self->rooms_n; r++) {
            char topic[64];
            snprintf (topic, sizeof topic, "room.%s", self->rooms[r].id);
            zsock_set_subscribe (self->sub, topic);
        }
    }
    return 0;
fail:
    fprintf (stderr, "parley-load: %s\n", error);
    return -1;
}

static int
s_setup_lws (load_t *self)
{
    lws_set_log_level (LLL_ERR, NULL);
    struct lws_context_creation_info info = { 0 };
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = s_protocols;
    info.options = 0;
    self->context = lws_create_context (&info);
    if (!self->context)
        return -1;
    for (long i = 0; i < self->clients_n && !self->no_ws; i++)
        s_connect_client (self, &self->clients[i]);
    return 0;
}

static void
s_raise_fd_limit (void)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit (RLIMIT_NOFILE, &limit);
    }
}

static void
s_destroy (load_t *self)
{
    if (self->context)
        lws_context_destroy (self->context);
    for (long i = 0; self->clients && i < self->clients_n; i++) {
        free (self->clients[i].token);
        free (self->clients[i].rx);
        free (self->clients[i].seen.bits);
    }
    for (long r = 0; self->rooms && r < self->rooms_n; r++)
        free (self->rooms[r].events_seen.bits);
    free (self->clients);
    free (self->rooms);
    zhashx_destroy (&self->room_index);
    zhashx_destroy (&self->error_codes);
    zsock_destroy (&self->dealer);
    zsock_destroy (&self->sub);
    histogram_destroy (&self->latency);
    histogram_destroy (&self->ack_latency);
}

static void
s_init (load_t *self)
{
    self->clients = calloc ((size_t) self->clients_n, sizeof *self->clients);
    self->rooms = calloc ((size_t) self->rooms_n, sizeof *self->rooms);
    for (long i = 0; i < self->clients_n; i++)
        self->clients[i] = (client_t) { .load = self, .index = (int) i,
                                        .room = (int) (i % self->rooms_n) };
    self->room_index = zhashx_new ();
    self->error_codes = zhashx_new ();
    zhashx_set_destructor (self->error_codes, (zhashx_destructor_fn *) zstr_free);
    self->latency = histogram_new ();
    self->ack_latency = histogram_new ();
}

int
main (int argc, char *argv[])
{
    zsys_handler_set (NULL);
    signal (SIGPIPE, SIG_IGN);
    load_t self = { .url = "http://127.0.0.1:8080", .inject_endpoint = TOOL_INJECT_ENDPOINT,
                    .events_endpoint = TOOL_EVENTS_ENDPOINT, .prefix = "run",
                    .password = "load-password-1", .clients_n = 20, .rooms_n = 4,
                    .duration = 10, .drain = 5, .size = 64 };
    tool_curve_from_env (&self.curve);
    int rc = s_options (&self, argc, argv);
    if (rc != 0) {
        if (rc < 0)
            s_usage (stderr);
        return rc < 0 ? 2 : 0;
    }
    if (self.rooms_n > self.clients_n)
        self.rooms_n = self.clients_n;
    if (s_parse_url (&self) != 0)
        return 2;
    s_raise_fd_limit ();
    curl_global_init (CURL_GLOBAL_DEFAULT);
    s_init (&self);
    rc = 1;
    if (s_setup_rest (&self) == 0 && s_setup_sockets (&self) == 0 && s_setup_lws (&self) == 0) {
        signal (SIGINT, s_on_signal);
        signal (SIGTERM, s_on_signal);
        self.start_ns = self.last_progress_ns = tool_mono_ns ();
        lws_sul_schedule (self.context, 0, &self.sul, s_tick, LOAD_TICK_US);
        while (self.phase < 3)
            if (lws_service (self.context, 0) < 0)
                break;
        if (!self.send_end_ns)
            self.send_end_ns = tool_mono_ns ();
        s_report (&self);
        rc = 0;
    }
    s_destroy (&self);
    curl_global_cleanup ();
    return rc;
}
