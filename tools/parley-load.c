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
 *  Everything runs on one thread: an epoll loop drives the WebSocket
 *  clients (a minimal client of RFC 6455 written here: libwebsockets' client
 *  parses every received byte one at a time, and at hundreds of thousands
 *  of deliveries per second the generator would need more CPU than the
 *  server it measures), and a 1 ms tick paces the sends, drains the ZeroMQ
 *  sockets and prints the progress.
 */
#include "histogram.h"
#include "toolkit.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define LOAD_TICK_US       1000
#define LOAD_CONNECT_S     120         /* every client ready within       */
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
    int fd;                  /* its socket; -1 when none              */
    bool open;               /* the upgrade was answered (101)        */
    bool pollout;            /* waiting for the socket to take more   */
    char *in;                /* bytes received, not yet parsed        */
    size_t in_len, in_cap;
    char *out;               /* bytes to send                          */
    size_t out_len, out_sent, out_cap;
    bool ready, closed;
    char *rx;                /* a frame being reassembled */
    size_t rx_len, rx_cap;
    long queued;             /* sends waiting for WRITEABLE */
    long in_flight;          /* sent, no ack or error yet   */
    long next_n;
    seqset_t seen;
} client_t;

/* What a receiver found in one event: its type, and for message.new the
   seq and the content's sender, number and send time. */
typedef struct {
    const char *type;        /* not NUL-terminated: type_len bytes */
    size_t type_len;
    int64_t seq;
    bool ours;               /* content parsed: "L <sender> <n> <t_ns> ..." */
    long sender, n;
    int64_t t_ns;
} scan_t;

typedef struct {
    char id[40];
    long members;            /* clients in it */
    long receivers;          /* ready clients (+1 with --events) when sending began */
    seqset_t events_seen;    /* what the events subscriber got */
} room_t;

struct load_t {
    /* options */
    const char *url, *inject_endpoint, *events_endpoint, *prefix, *password;
    long clients_n, rooms_n, users_n, senders_n, window, count, size, connect_batch;
    double rate, duration, drain, hold;
    bool inject, events, json, no_ws, bus_only, no_send, setup_only;
    bool peer_ws;            /* --peer ws: a plain broadcast server (bench/ws-peer) */
    tool_curve_t curve;
    /* state */
    char host[256];
    int port;
    client_t *clients;
    room_t *rooms;
    zhashx_t *room_index;    /* room id -> index + 1 */
    int epfd;                /* the clients' sockets                  */
    struct sockaddr_in addr; /* the server's                          */
    uint32_t mask_seed;      /* masking keys (xorshift)               */
    zsock_t *dealer, *sub;
    int64_t start_ns, send_start_ns, send_end_ns, last_progress_ns, drain_end_ns;
    int phase;               /* 0 connecting, 1 sending, 2 draining, 3 done */
    long next_connect;       /* clients connected so far                     */
    int64_t hold_end_ns;     /* all ready: sending starts then (--hold)      */
    long ready_n;            /* clients ready when connecting ended          */
    double connect_s;        /* how long connecting took                     */
    long next_sender;
    long inject_in_flight;
    /* figures */
    long sent, acked, errors, delivered, unique, duplicated, out_of_order, expected;
    long delivered_sending;  /* deliveries that arrived while sending        */
    long acked_sending;      /* acks that arrived while sending              */
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
        "  --rooms R             rooms; user u is in room u %% R (default 4)\n"
        "  --users U             distinct users (default: one per client); client i\n"
        "                        is user i %% U, so a user may hold several connections\n"
        "  --senders K           only clients 0..K-1 send; the others only receive\n"
        "                        (default: all)\n"
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
        "  --hold SECS           once every client is ready, wait SECS before sending\n"
        "                        (\"holding\" on stderr: e.g. to measure idle memory)\n"
        "  --no-send             connect, hold, report: no messages at all\n"
        "  --setup-only          register/log in the users, create the rooms, exit\n"
        "  --connect-batch N     connections being opened at once (default 500)\n"
        "  --peer ws             drive a plain broadcast server instead of parleyd\n"
        "                        (bench/ws-peer: no REST set-up, rooms r0..rR-1 by\n"
        "                        ws://host/?room=rN, every text frame is broadcast to\n"
        "                        the room as {\"type\":\"message.new\",\"seq\",\"message\"};\n"
        "                        a sender's own copy counts as its ack)\n"
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
    else if (streq (a, "--no-send"))
        self->no_send = true;
    else if (streq (a, "--setup-only"))
        self->setup_only = true;
    else if (streq (a, "--peer") && more) {
        const char *peer = argv[++*i];
        if (streq (peer, "ws"))
            self->peer_ws = true;
        else if (!streq (peer, "parley"))
            return -1;
    }
    else if (streq (a, "--users") && (rc = s_number (argc, argv, i, 1, 100000, &n)) == 0)
        self->users_n = (long) n;
    else if (streq (a, "--senders") && (rc = s_number (argc, argv, i, 0, 100000, &n)) == 0)
        self->senders_n = (long) n;
    else if (streq (a, "--connect-batch") && (rc = s_number (argc, argv, i, 1, 100000, &n)) == 0)
        self->connect_batch = (long) n;
    else if (streq (a, "--hold") && (rc = s_number (argc, argv, i, 0, 1e6, &n)) == 0)
        self->hold = n;
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
    if (self->peer_ws && self->inject) {
        fprintf (stderr, "parley-load: --peer ws has no inject socket\n");
        return -1;
    }
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
    for (long i = r + self->rooms_n; i < self->users_n; i += self->rooms_n)
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

/* --peer ws: no users, rooms by name (r0, r1, ...). */
static int
s_setup_peer (load_t *self)
{
    for (long r = 0; r < self->rooms_n; r++) {
        snprintf (self->rooms[r].id, sizeof self->rooms[r].id, "r%ld", r);
        zhashx_insert (self->room_index, self->rooms[r].id, (void *) (intptr_t) (r + 1));
    }
    for (long i = 0; i < self->clients_n; i++)
        self->rooms[self->clients[i].room].members++;
    return 0;
}

static int
s_setup_rest (load_t *self)
{
    if (self->peer_ws)
        return s_setup_peer (self);
    CURL *curl = curl_easy_init ();
    if (!curl)
        return -1;
    int rc = 0;
    int64_t t0 = tool_mono_ns ();
    for (long i = 0; i < self->users_n && rc == 0; i++) {
        rc = s_login (curl, self, &self->clients[i]);
        if (i % 100 == 99)
            fprintf (stderr, "parley-load: %ld users logged in\n", i + 1);
    }
    /* more clients than users: client i is user i % U, another connection */
    for (long i = self->users_n; i < self->clients_n && rc == 0; i++) {
        client_t *user = &self->clients[i % self->users_n];
        self->clients[i].token = strdup (user->token);
        memcpy (self->clients[i].user, user->user, sizeof user->user);
    }
    for (long r = 0; r < self->rooms_n && rc == 0; r++)
        rc = s_create_room (curl, self, r);
    curl_easy_cleanup (curl);
    if (rc == 0)
        fprintf (stderr, "parley-load: %ld users, %ld clients, %ld rooms ready in %.1f s\n",
                 self->users_n, self->clients_n, self->rooms_n,
                 (tool_mono_ns () - t0) / 1e9);
    return rc;
}

/* --- receiving --------------------------------------------------------------- */

/* Parses "L <sender> <n> <t_ns> ..." — our message's content (NUL- or
   quote-terminated). */
static bool
s_parse_content (const char *content, long *sender, long *n, int64_t *t_ns)
{
    if (!content || content[0] != 'L' || content[1] != ' ')
        return false;
    char *end;
    const char *p = content + 2;
    *sender = strtol (p, &end, 10);
    if (end == p || *end != ' ')
        return false;
    p = end + 1;
    *n = strtol (p, &end, 10);
    if (end == p || *end != ' ')
        return false;
    p = end + 1;
    *t_ns = strtoll (p, &end, 10);
    return end != p;
}

/* The value after `"key"` and its colon in [p, end), or NULL. */
static const char *
s_value_of (const char *p, const char *end, const char *key, size_t key_len)
{
    const char *at = memmem (p, (size_t) (end - p), key, key_len);
    if (!at)
        return NULL;
    at += key_len;
    while (at < end && (*at == ' ' || *at == ':'))
        at++;
    return at < end ? at : NULL;
}

/* Reads what a receiver needs from one event object [p, p + len) without a
   JSON parser: the first "type" (an event's own: parleyd writes it before
   any nested object, as jsonb orders keys by length, and so does the ws
   peer), the first "seq" and the first "content". Deliveries are counted in
   the hundreds of thousands per second by one thread that shares the
   machine with the server: a full parse of each would make the load
   generator the bottleneck. Other events (ready, error, ...) are parsed. */
static void
s_scan (const char *p, size_t len, scan_t *out)
{
    const char *end = p + len;
    *out = (scan_t) { .seq = -1 };
    const char *v = s_value_of (p, end, "\"type\"", 6);
    const char *q = v && *v == '"' ? memchr (v + 1, '"', (size_t) (end - v - 1)) : NULL;
    if (!q)
        return;
    out->type = v + 1;
    out->type_len = (size_t) (q - v - 1);
    v = s_value_of (p, end, "\"seq\"", 5);
    if (v)
        out->seq = strtoll (v, NULL, 10);
    v = s_value_of (p, end, "\"content\"", 9);
    if (v && *v == '"')
        out->ours = s_parse_content (v + 1, &out->sender, &out->n, &out->t_ns);
}

static bool
s_type_is (const scan_t *e, const char *type)
{
    size_t len = strlen (type);
    return e->type && e->type_len == len && memcmp (e->type, type, len) == 0;
}

/* One delivery of a message.new event to a receiver's seq set. */
static void
s_delivered_scan (load_t *self, seqset_t *seen, const scan_t *e, int64_t now)
{
    if (!e->ours)
        return;
    self->delivered++;
    if (self->phase == 1)
        self->delivered_sending++;
    int how = s_seen (seen, e->seq);
    if (how == 1) {
        self->duplicated++;
        return;
    }
    self->unique++;
    self->out_of_order += how == 2;
    histogram_record (self->latency, (uint64_t) (now - e->t_ns));
}

/* The same for an event in JSON (the event socket's envelopes). */
static void
s_delivered (load_t *self, seqset_t *seen, json_t *event)
{
    scan_t e = { .seq = json_integer_value (json_object_get (event, "seq")) };
    json_t *message = json_object_get (event, "message");
    e.ours = s_parse_content (json_string_value (json_object_get (message, "content")),
                              &e.sender, &e.n, &e.t_ns);
    s_delivered_scan (self, seen, &e, tool_mono_ns ());
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
s_acked (load_t *self, long room, const scan_t *e, int64_t now)
{
    self->acked++;
    if (self->phase == 1)
        self->acked_sending++;
    if (room >= 0)
        self->expected += self->rooms[room].receivers;
    if (e->ours)
        histogram_record (self->ack_latency, (uint64_t) (now - e->t_ns));
}

/* One server event (or command answer) for client `c`, [p, p + len). */
static void
s_on_event (client_t *c, const char *p, size_t len, int64_t now)
{
    load_t *self = c->load;
    scan_t e;
    s_scan (p, len, &e);
    if (s_type_is (&e, "message.new")) {
        /* a broadcast server has no acks: a sender's own copy is its ack */
        if (self->peer_ws && e.ours && e.sender == c->index) {
            c->in_flight--;
            s_acked (self, c->room, &e, now);
        }
        s_delivered_scan (self, &c->seen, &e, now);
    }
    else if (s_type_is (&e, "ack")) {
        c->in_flight--;
        s_acked (self, c->room, &e, now);
    }
    else if (s_type_is (&e, "error")) {
        json_t *event = json_loadb (p, len, 0, NULL);
        c->in_flight--;
        s_count_error (self, json_string_value (json_object_get (event, "code")));
        json_decref (event);
    }
    else if (s_type_is (&e, "ready"))
        c->ready = true;
}

/* The end of the JSON object or array that starts at `p`. */
static const char *
s_value_end (const char *p, const char *end)
{
    int depth = 0;
    while (p < end) {
        char ch = *p;
        if (ch == '"') {                   /* a string: jump to its closing quote */
            p++;
            for (;;) {
                const char *q = memchr (p, '"', (size_t) (end - p));
                if (!q)
                    return end;
                const char *b = q;
                while (b > p && b[-1] == '\\')
                    b--;
                p = q + 1;
                if (((q - b) & 1) == 0)
                    break;
            }
            continue;
        }
        if (ch == '{' || ch == '[')
            depth++;
        else if ((ch == '}' || ch == ']') && --depth == 0)
            return p + 1;
        p++;
    }
    return end;
}

/* A frame holds one event object or an array of them (coalesced). */
static void
s_on_frame (client_t *c, const char *data, size_t len)
{
    const char *p = data, *end = data + len;
    int64_t now = tool_mono_ns ();
    while (p < end && (p = memchr (p, '{', (size_t) (end - p)))) {
        const char *next = s_value_end (p, end);
        s_on_event (c, p, (size_t) (next - p), now);
        p = next;
    }
}

/* --- WebSocket clients ------------------------------------------------------- */

/* Appends `len` bytes to what `c` sends (data NULL: reserves them). */
static char *
s_out_reserve (client_t *c, size_t len)
{
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap * 2 : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        c->out = realloc (c->out, cap);
        c->out_cap = cap;
    }
    char *at = c->out + c->out_len;
    c->out_len += len;
    return at;
}

/* Queues one masked frame (a client's frames are masked, RFC 6455 5.3). */
static void
s_frame_out (client_t *c, int opcode, const char *payload, size_t len)
{
    load_t *self = c->load;
    unsigned char head[14];
    size_t n = 0;
    head[n++] = (unsigned char) (0x80 | opcode);
    if (len < 126)
        head[n++] = (unsigned char) (0x80 | len);
    else if (len < 65536) {
        head[n++] = 0x80 | 126;
        head[n++] = (unsigned char) (len >> 8);
        head[n++] = (unsigned char) len;
    }
    else {
        head[n++] = 0x80 | 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            head[n++] = (unsigned char) ((uint64_t) len >> shift);
    }
    uint32_t x = self->mask_seed;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    self->mask_seed = x;
    unsigned char key[4];
    memcpy (key, &x, 4);
    memcpy (head + n, key, 4);
    n += 4;
    memcpy (s_out_reserve (c, n), head, n);
    unsigned char *to = (unsigned char *) s_out_reserve (c, len);
    for (size_t i = 0; i < len; i++)
        to[i] = (unsigned char) payload[i] ^ key[i & 3];
}

static void
s_epoll_set (client_t *c, bool pollout)
{
    struct epoll_event ev = { .events = EPOLLIN | (pollout ? EPOLLOUT : 0), .data.ptr = c };
    epoll_ctl (c->load->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->pollout = pollout;
}

static void
s_close_client (client_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl (c->load->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close (c->fd);
        c->fd = -1;
    }
    if (!c->closed && c->load->phase < 3)
        c->load->disconnects++;
    c->closed = true;
    c->queued = 0;
}

/* Sends what the socket takes; the rest when it is writable again. */
static void
s_flush_out (client_t *c)
{
    while (c->fd >= 0 && c->out_sent < c->out_len) {
        ssize_t n = send (c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (n > 0)
            c->out_sent += (size_t) n;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->pollout)
                s_epoll_set (c, true);
            return;
        }
        else if (n < 0 && errno == EINTR)
            continue;
        else {
            s_close_client (c);
            return;
        }
    }
    c->out_len = c->out_sent = 0;
    if (c->pollout && c->fd >= 0)
        s_epoll_set (c, false);
}

/* Sends the messages queued for `c` (message.send commands). */
static void
s_write (client_t *c)
{
    load_t *self = c->load;
    if (c->fd < 0 || !c->open)
        return;
    while (c->queued > 0) {
        char content[10001];
        int head = snprintf (content, sizeof content, "L %d %ld %lld ", c->index,
                             c->next_n++, (long long) tool_mono_ns ());
        long pad = self->size > head ? self->size - head : 0;
        memset (content + head, 'x', (size_t) pad);
        content[head + pad] = '\0';
        json_t *command = json_pack ("{s:s s:s s:s s:I}", "type", "message.send", "room",
                                     self->rooms[c->room].id, "content", content, "ref",
                                     (json_int_t) c->next_n);
        char *text = json_dumps (command, JSON_COMPACT);
        json_decref (command);
        s_frame_out (c, 0x1, text, strlen (text));
        free (text);
        c->queued--;
        c->in_flight++;
        self->sent++;
    }
    s_flush_out (c);
}

/* A data frame, or a piece of a fragmented message. */
static void
s_on_data (client_t *c, bool fin, int opcode, const char *payload, size_t len)
{
    if (fin && opcode != 0 && c->rx_len == 0) {
        s_on_frame (c, payload, len);     /* the usual case: in place */
        return;
    }
    if (c->rx_len + len + 1 > c->rx_cap) {
        c->rx_cap = (c->rx_len + len + 1) * 2;
        c->rx = realloc (c->rx, c->rx_cap);
    }
    memcpy (c->rx + c->rx_len, payload, len);
    c->rx_len += len;
    if (fin) {
        s_on_frame (c, c->rx, c->rx_len);
        c->rx_len = 0;
    }
}

/* Parses what was received: the upgrade's answer, then frames. */
static void
s_parse (client_t *c)
{
    size_t off = 0;
    if (!c->open) {
        char *end = memmem (c->in, c->in_len, "\r\n\r\n", 4);
        if (!end) {
            if (c->in_len > 16384)
                s_close_client (c);
            return;
        }
        if (c->in_len < 12 || memcmp (c->in + 9, "101", 3) != 0) {
            fprintf (stderr, "parley-load: client %d: upgrade refused: %.*s\n", c->index,
                     (int) strcspn (c->in, "\r\n"), c->in);
            s_close_client (c);
            return;
        }
        c->open = true;
        if (c->load->peer_ws)            /* a broadcast server says nothing first */
            c->ready = true;
        off = (size_t) (end + 4 - c->in);
    }
    while (c->fd >= 0 && c->in_len - off >= 2) {
        unsigned char *p = (unsigned char *) c->in + off;
        size_t avail = c->in_len - off, head = 2;
        bool fin = p[0] & 0x80, masked = p[1] & 0x80;
        int opcode = p[0] & 0x0f;
        uint64_t len = p[1] & 0x7f;
        if (len == 126) {
            if (avail < 4)
                break;
            len = (uint64_t) p[2] << 8 | p[3];
            head = 4;
        }
        else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 2; i < 10; i++)
                len = len << 8 | p[i];
            head = 10;
        }
        if (masked)
            head += 4;
        if (avail < head + len)
            break;
        char *payload = (char *) p + head;
        if (masked)                      /* servers do not mask; tolerated */
            for (uint64_t i = 0; i < len; i++)
                payload[i] ^= (char) p[head - 4 + (i & 3)];
        off += head + len;
        if (opcode <= 2)
            s_on_data (c, fin, opcode, payload, (size_t) len);
        else if (opcode == 0x9) {        /* ping: pong */
            s_frame_out (c, 0xA, payload, (size_t) len);
            s_flush_out (c);
        }
        else if (opcode == 0x8) {        /* close */
            s_close_client (c);
            return;
        }
    }
    if (c->fd < 0)
        return;
    memmove (c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static void
s_read (client_t *c)
{
    if (c->in_cap - c->in_len < 65536) {
        c->in_cap = c->in_cap ? c->in_cap * 2 : 131072;
        while (c->in_cap - c->in_len < 65536)
            c->in_cap *= 2;
        c->in = realloc (c->in, c->in_cap);
    }
    ssize_t n = recv (c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n > 0) {
        c->in_len += (size_t) n;
        s_parse (c);
    }
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        s_close_client (c);
}

static void
s_on_socket (client_t *c, uint32_t events)
{
    if (events & EPOLLOUT)
        s_flush_out (c);
    if (c->fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        s_read (c);
}

static void
s_connect_client (load_t *self, client_t *c)
{
    char path[1200];
    if (self->peer_ws)
        snprintf (path, sizeof path, "/?room=%s", self->rooms[c->room].id);
    else
        snprintf (path, sizeof path, "/ws/?token=%s", c->token);
    c->fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (c->fd >= 0)
        setsockopt (c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->fd < 0
        || (connect (c->fd, (struct sockaddr *) &self->addr, sizeof self->addr) != 0
            && errno != EINPROGRESS)) {
        fprintf (stderr, "parley-load: client %d: cannot connect: %s\n", c->index,
                 strerror (errno));
        if (c->fd >= 0)
            close (c->fd);
        c->fd = -1;
        c->closed = true;
        self->disconnects++;
        return;
    }
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
    epoll_ctl (self->epfd, EPOLL_CTL_ADD, c->fd, &ev);
    c->pollout = true;
    char request[1600];
    int n = snprintf (request, sizeof request,
                      "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: cGFybGV5LWxvYWQtMDAwMQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\nOrigin: http://%s\r\n\r\n",
                      path, self->host, self->port, self->host);
    memcpy (s_out_reserve (c, (size_t) n), request, (size_t) n);
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
            if (self->phase == 1)
                self->acked_sending++;
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
    for (long i = 0; i < self->senders_n; i++)
        queued_total += self->clients[i].queued;
    if (self->rate > 0) {
        long want = (long) (self->rate * (now - self->send_start_ns) / 1e9)
                    - self->sent - queued_total;
        for (long k = 0, tries = 0; k < want && k < budget - queued_total
                                    && tries < self->senders_n; ) {
            client_t *c = &self->clients[self->next_sender];
            self->next_sender = (self->next_sender + 1) % self->senders_n;
            if (c->ready && !c->closed && c->queued + c->in_flight < LOAD_CLIENT_CAP)
                c->queued++, k++, tries = 0;
            else
                tries++;
        }
    }
    for (long i = 0; i < self->senders_n && queued_total < budget && self->rate <= 0; i++) {
        client_t *c = &self->clients[i];
        if (c->ready && !c->closed && c->queued + c->in_flight < self->window) {
            long add = self->window - c->queued - c->in_flight;
            if (add > budget - queued_total)
                add = budget - queued_total;
            c->queued += add;
            queued_total += add;
        }
    }
    for (long i = 0; i < self->senders_n; i++)
        if (self->clients[i].queued > 0)
            s_write (&self->clients[i]);
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

/* Opens connections, at most connect_batch of them still getting ready;
   true when every client is ready (or gone). */
static bool
s_connect_more (load_t *self)
{
    if (self->no_ws)
        return true;
    long opening = 0, ready = 0;
    for (long i = 0; i < self->next_connect; i++) {
        client_t *c = &self->clients[i];
        if (c->ready && !c->closed)
            ready++;
        else if (!c->closed)
            opening++;
    }
    while (opening < self->connect_batch && self->next_connect < self->clients_n) {
        s_connect_client (self, &self->clients[self->next_connect++]);
        opening++;
    }
    self->ready_n = ready;
    return opening == 0 && self->next_connect == self->clients_n;
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
    if (self->phase == 0 && !self->hold_end_ns
        && (s_connect_more (self)
            || now - self->start_ns > (int64_t) LOAD_CONNECT_S * 1000000000)) {
        self->connect_s = (now - self->start_ns) / 1e9;
        self->hold_end_ns = now + (int64_t) (self->hold * 1e9);
        fprintf (stderr, "parley-load: %ld of %ld clients ready in %.1f s%s", self->ready_n,
                 self->clients_n, self->connect_s, self->hold > 0 ? "; holding" : "\n");
        if (self->hold > 0)
            fprintf (stderr, " %.0f s\n", self->hold);
    }
    if (self->phase == 0 && self->hold_end_ns && now >= self->hold_end_ns) {
        if (self->no_send)
            self->phase = 3;
        else
            s_begin_sending (self, now);
    }
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
s_tick (load_t *self)
{
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
}

/* The loop: socket events, and a tick every LOAD_TICK_US. */
static void
s_run (load_t *self)
{
    struct epoll_event events[512];
    int64_t next_tick = tool_mono_ns ();
    while (self->phase < 3) {
        int64_t now = tool_mono_ns ();
        int timeout = next_tick > now ? (int) ((next_tick - now + 999999) / 1000000) : 0;
        int n = epoll_wait (self->epfd, events, 512, timeout);
        for (int i = 0; i < n; i++)
            s_on_socket (events[i].data.ptr, events[i].events);
        now = tool_mono_ns ();
        if (now >= next_tick) {
            s_tick (self);
            next_tick = now + LOAD_TICK_US * 1000;
        }
    }
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
    return json_pack ("{s:s s:s s:I s:I s:I s:f s:I s:f s:f s:I s:f s:I s:f s:I s:o s:I s:I"
                      " s:f s:I s:I s:I s:I s:o s:o s:b}",
        "mode", self->inject ? "inject" : "websocket", "peer", self->peer_ws ? "ws" : "parley",
        "clients", (json_int_t) self->clients_n, "users", (json_int_t) self->users_n,
        "ready", (json_int_t) self->ready_n, "connect_seconds", self->connect_s,
        "rooms", (json_int_t) self->rooms_n, "send_seconds", secs,
        "rate_target", self->rate, "sent", (json_int_t) self->sent,
        "sent_per_s", secs > 0 ? self->sent / secs : 0.0, "acked", (json_int_t) self->acked,
        "acked_per_s", secs > 0 ? self->acked_sending / secs : 0.0,
        "errors", (json_int_t) self->errors,
        "error_codes", codes, "expected", (json_int_t) self->expected,
        "delivered", (json_int_t) self->delivered,
        "delivered_per_s", secs > 0 ? self->delivered_sending / secs : 0.0,
        "lost", (json_int_t) lost,
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
    printf ("parley-load: %s%s, %lld clients (%lld ready in %.1f s), %lld users, %lld rooms,"
            " %.1f s of sending%s\n",
            json_string_value (json_object_get (r, "mode")), self->peer_ws ? " (ws peer)" : "",
            I ("clients"), I ("ready"), F ("connect_seconds"), I ("users"), I ("rooms"),
            F ("send_seconds"), self->interrupted ? " (interrupted)" : "");
    printf ("sent         %lld  (%.0f/s)\n", I ("sent"), F ("sent_per_s"));
    printf ("acknowledged %lld  (%.0f/s while sending, %s)\n", I ("acked"), F ("acked_per_s"),
            self->peer_ws ? "the sender's own copy" : "committed");
    printf ("errors       %lld", I ("errors"));
    const char *code;
    json_t *n;
    json_object_foreach (json_object_get (r, "error_codes"), code, n)
        printf ("  %s: %lld", code, (long long) json_integer_value (n));
    printf ("\ndelivered    %lld  (expected %lld; %.0f/s while sending)\n", I ("delivered"),
            I ("expected"), F ("delivered_per_s"));
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
s_setup_net (load_t *self)
{
    self->addr.sin_family = AF_INET;
    self->addr.sin_port = htons ((uint16_t) self->port);
    const char *host = streq (self->host, "localhost") ? "127.0.0.1" : self->host;
    if (inet_pton (AF_INET, host, &self->addr.sin_addr) != 1) {
        fprintf (stderr, "parley-load: %s: an IPv4 loopback address is needed\n", self->host);
        return -1;
    }
    self->mask_seed = (uint32_t) tool_mono_ns () | 1;
    self->epfd = epoll_create1 (EPOLL_CLOEXEC);
    return self->epfd >= 0 ? 0 : -1;   /* connections open in s_tick: s_connect_more */
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
    for (long i = 0; self->clients && i < self->clients_n; i++) {
        if (self->clients[i].fd >= 0)
            close (self->clients[i].fd);
        free (self->clients[i].in);
        free (self->clients[i].out);
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
    if (self->epfd > 0)
        close (self->epfd);
    histogram_destroy (&self->latency);
    histogram_destroy (&self->ack_latency);
}

static void
s_init (load_t *self)
{
    self->clients = calloc ((size_t) self->clients_n, sizeof *self->clients);
    self->rooms = calloc ((size_t) self->rooms_n, sizeof *self->rooms);
    for (long i = 0; i < self->clients_n; i++)
        self->clients[i] = (client_t) { .load = self, .index = (int) i, .fd = -1,
                                        .room = (int) (i % self->users_n % self->rooms_n) };
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
    if (!self.users_n || self.users_n > self.clients_n)
        self.users_n = self.clients_n;
    if (self.rooms_n > self.users_n)
        self.rooms_n = self.users_n;
    if (!self.senders_n || self.senders_n > self.clients_n)
        self.senders_n = self.clients_n;
    if (!self.connect_batch)
        self.connect_batch = 500;
    if (s_parse_url (&self) != 0)
        return 2;
    s_raise_fd_limit ();
    curl_global_init (CURL_GLOBAL_DEFAULT);
    s_init (&self);
    rc = 1;
    if (self.setup_only)
        rc = s_setup_rest (&self) == 0 ? 0 : 1;
    else if (s_setup_rest (&self) == 0 && s_setup_sockets (&self) == 0
             && s_setup_net (&self) == 0) {
        signal (SIGINT, s_on_signal);
        signal (SIGTERM, s_on_signal);
        self.start_ns = self.last_progress_ns = tool_mono_ns ();
        s_run (&self);
        if (!self.send_end_ns)
            self.send_end_ns = tool_mono_ns ();
        s_report (&self);
        rc = 0;
    }
    s_destroy (&self);
    curl_global_cleanup ();
    return rc;
}
