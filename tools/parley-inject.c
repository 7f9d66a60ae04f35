/*  tools/parley-inject.c — sends envelopes to Parley's inject socket
 *  (API.md §4) and prints the replies as JSON lines. See docs/tools.md.
 *
 *  Envelopes come as JSON — arguments, or one per line on stdin — and go
 *  through the codec (schema/envelope.h) before they leave: a line the
 *  codec refuses is reported on stderr and not sent. Commands are
 *  pipelined (up to --window in flight) over one DEALER socket.
 */
#include "toolkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *endpoint;
    double timeout;           /* seconds to wait for a reply            */
    long window;              /* commands in flight at most             */
    bool quiet;               /* print failed replies only              */
    tool_curve_t curve;
    zsock_t *sock;
    zhashx_t *waiting;        /* ids sent, not answered yet             */
    long sent, ok, failed, invalid;
} inject_t;

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: parley-inject [options] [ENVELOPE-JSON ...]\n"
        "Sends envelopes to Parley's ZeroMQ inject socket and prints each reply\n"
        "envelope as one JSON line. Envelopes are JSON objects\n"
        "  {\"type\", \"user\"?, \"room\"?, \"body\"?, \"id\"?, \"ts\"?}\n"
        "(id defaults to a fresh UUID, ts to now, body to {}), given as arguments\n"
        "or, without arguments (or with \"-\"), one per line on stdin.\n"
        "Commands: message.send, message.delta, presence.set, notify, room.create.\n"
        "  e.g. parley-inject '{\"type\":\"message.send\",\"user\":\"<uuid>\",\n"
        "                      \"room\":\"<uuid>\",\"body\":{\"content\":\"hi\"}}'\n"
        "options:\n"
        "  --endpoint E         inject endpoint (PARLEY_INJECT_ENDPOINT, else %s)\n"
        "  --timeout SECS       wait at most SECS for each reply (default 10)\n"
        "  --window N           commands in flight at most (default 1000)\n"
        "  --quiet              print only the replies that are not ok\n"
        "  --keygen             print a new CURVE key pair {\"public\",\"secret\"}, exit\n"
        TOOL_CURVE_HELP
        "  -h, --help           this help\n"
        "exit status: 0 every reply ok, 1 some reply not ok or some input invalid,\n"
        "2 usage or connection error, 3 a reply did not come in time.\n",
        TOOL_INJECT_ENDPOINT);
}

/* Reads one reply (waiting up to `ms`); 1 read, 0 none in time. */
static int
s_read_reply (inject_t *self, int ms)
{
    zpoller_t *poller = zpoller_new (self->sock, NULL);
    void *ready = zpoller_wait (poller, ms);
    zpoller_destroy (&poller);
    if (!ready)
        return 0;
    zframe_t *frame = zframe_recv (self->sock);
    if (!frame)
        return 0;
    envelope_err_t err;
    char detail[160];
    envelope_t *reply = envelope_decode (zframe_data (frame), zframe_size (frame), &err,
                                         detail, sizeof detail);
    zframe_destroy (&frame);
    if (!reply) {
        fprintf (stderr, "parley-inject: undecodable reply: %s\n", detail);
        self->failed++;
        return 1;
    }
    bool ok = json_is_true (json_object_get (reply->body, "ok"));
    ok ? self->ok++ : self->failed++;
    zhashx_delete (self->waiting, reply->re);
    if (!ok || !self->quiet)
        tool_print_line (stdout, tool_envelope_to_json (reply));
    envelope_destroy (&reply);
    return 1;
}

/* Sends one envelope given as JSON text; `where` names it in errors. */
static void
s_send_text (inject_t *self, const char *text, const char *where)
{
    json_error_t jerr;
    json_t *json = json_loads (text, JSON_REJECT_DUPLICATES, &jerr);
    char error[256] = "";
    envelope_t *env = NULL;
    if (!json)
        snprintf (error, sizeof error, "not JSON: %s", jerr.text);
    else
        env = tool_envelope_from_json (json, error, sizeof error);
    json_decref (json);
    if (!env) {
        fprintf (stderr, "parley-inject: %s: %s\n", where, error);
        self->invalid++;
        return;
    }
    while ((long) zhashx_size (self->waiting) >= self->window
           && s_read_reply (self, (int) (self->timeout * 1000)))
        ;
    if (tool_send_envelope (self->sock, env) == 0) {
        zhashx_insert (self->waiting, env->id, (void *) "sent");
        self->sent++;
    }
    else {
        fprintf (stderr, "parley-inject: %s: cannot send\n", where);
        self->invalid++;
    }
    envelope_destroy (&env);
    while (s_read_reply (self, 0))       /* print what already came back */
        ;
}

static void
s_send_stdin (inject_t *self)
{
    char *line = NULL;
    size_t size = 0;
    long number = 0;
    while (getline (&line, &size, stdin) >= 0) {
        number++;
        line[strcspn (line, "\r\n")] = '\0';
        if (line[strspn (line, " \t")] == '\0')
            continue;
        char where[32];
        snprintf (where, sizeof where, "line %ld", number);
        s_send_text (self, line, where);
    }
    free (line);
}

/* Parses the options; the index of the first envelope argument, or -1
   (usage error) or -2 (done, e.g. --help). */
static int
s_options (inject_t *self, int argc, char *argv[])
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i];
        int curve = tool_curve_option (&self->curve, argc, argv, &i);
        if (curve < 0)
            return -1;
        if (curve)
            continue;
        if (streq (a, "-h") || streq (a, "--help")) {
            s_usage (stdout);
            return -2;
        }
        else if (streq (a, "--keygen"))
            return tool_keygen (stdout) == 0 ? -2 : -1;
        else if (streq (a, "--quiet"))
            self->quiet = true;
        else if (streq (a, "--endpoint") && i + 1 < argc)
            self->endpoint = argv[++i];
        else if (streq (a, "--timeout") && i + 1 < argc) {
            if (tool_parse_double (argv[++i], 0.001, 86400, &self->timeout) != 0)
                return -1;
        }
        else if (streq (a, "--window") && i + 1 < argc) {
            if (tool_parse_long (argv[++i], 1, 1000000, &self->window) != 0)
                return -1;
        }
        else
            return -1;
    }
    return i;
}

int
main (int argc, char *argv[])
{
    zsys_handler_set (NULL);
    inject_t self = { .endpoint = getenv ("PARLEY_INJECT_ENDPOINT"), .timeout = 10,
                      .window = 1000 };
    if (!self.endpoint)
        self.endpoint = TOOL_INJECT_ENDPOINT;
    tool_curve_from_env (&self.curve);
    int first = s_options (&self, argc, argv);
    if (first == -2)
        return 0;
    if (first < 0) {
        s_usage (stderr);
        return 2;
    }
    char error[256];
    self.sock = tool_connect (ZMQ_DEALER, self.endpoint, &self.curve, error, sizeof error);
    if (!self.sock) {
        fprintf (stderr, "parley-inject: %s\n", error);
        return 2;
    }
    self.waiting = zhashx_new ();
    if (first >= argc || (first == argc - 1 && streq (argv[first], "-")))
        s_send_stdin (&self);
    else
        for (int i = first; i < argc; i++) {
            char where[32];
            snprintf (where, sizeof where, "argument %d", i - first + 1);
            s_send_text (&self, argv[i], where);
        }
    while (zhashx_size (self.waiting) && s_read_reply (&self, (int) (self.timeout * 1000)))
        ;
    size_t missing = zhashx_size (self.waiting);
    if (missing)
        fprintf (stderr, "parley-inject: %zu repl%s did not come within %.3g s\n", missing,
                 missing == 1 ? "y" : "ies", self.timeout);
    zhashx_destroy (&self.waiting);
    zsock_destroy (&self.sock);
    if (missing)
        return 3;
    return self.failed || self.invalid ? 1 : 0;
}
