/*  tools/parley-tail.c — prints Parley's published events (API.md §4) as
 *  JSON lines: subscribes to the events PUB socket with topic prefixes and
 *  decodes each envelope through the codec. See docs/tools.md.
 */
#include "toolkit.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: parley-tail [options] [TOPIC-PREFIX ...]\n"
        "Subscribes to Parley's ZeroMQ event socket and prints each event as one\n"
        "JSON line: {\"topic\", \"v\", \"type\", \"id\", \"ts\", \"room\"?, \"user\"?, \"body\"}.\n"
        "Topics: room.<id>, user.<id>, ai.<room id>, push.<user id>; a prefix\n"
        "matches every topic that starts with it (\"room.\", \"user.<id>\", \"ai.\");\n"
        "no prefix: everything.\n"
        "options:\n"
        "  --endpoint E         events endpoint (PARLEY_EVENTS_ENDPOINT, else %s)\n"
        "  --topic PREFIX       subscribe to PREFIX (repeatable; same as an argument)\n"
        "  --count N            exit after N events\n"
        "  --duration SECS      exit after SECS\n"
        "  --idle SECS          exit after SECS without an event\n"
        TOOL_CURVE_HELP
        "  -h, --help           this help\n"
        "Subscriptions take effect a moment after start-up (ZeroMQ PUB/SUB):\n"
        "events published before that are not seen. It prints \"subscribed\" on\n"
        "stderr once connected. Exit status 0, 2 on usage or connection errors.\n",
        TOOL_EVENTS_ENDPOINT);
}

typedef struct {
    const char *endpoint;
    zlist_t *topics;
    long count;              /* 0: unbounded */
    double duration;         /* 0: unbounded */
    double idle;             /* 0: unbounded */
    tool_curve_t curve;
} tail_t;

static int
s_options (tail_t *self, int argc, char *argv[])
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int curve = tool_curve_option (&self->curve, argc, argv, &i);
        if (curve < 0)
            return -1;
        if (curve)
            continue;
        if (streq (a, "-h") || streq (a, "--help")) {
            s_usage (stdout);
            return 1;
        }
        else if (streq (a, "--endpoint") && i + 1 < argc)
            self->endpoint = argv[++i];
        else if (streq (a, "--topic") && i + 1 < argc)
            zlist_append (self->topics, argv[++i]);
        else if (streq (a, "--count") && i + 1 < argc) {
            if (tool_parse_long (argv[++i], 1, LONG_MAX, &self->count) != 0)
                return -1;
        }
        else if (streq (a, "--duration") && i + 1 < argc) {
            if (tool_parse_double (argv[++i], 0.001, 1e9, &self->duration) != 0)
                return -1;
        }
        else if (streq (a, "--idle") && i + 1 < argc) {
            if (tool_parse_double (argv[++i], 0.001, 1e9, &self->idle) != 0)
                return -1;
        }
        else if (a[0] == '-' && a[1])
            return -1;
        else
            zlist_append (self->topics, argv[i]);
    }
    return 0;
}

/* Prints one [topic, envelope] message; false when it was not one. */
static bool
s_print (zmsg_t *msg)
{
    char *topic = zmsg_popstr (msg);
    zframe_t *frame = zmsg_pop (msg);
    bool printed = false;
    if (topic && frame) {
        envelope_err_t err;
        char detail[160];
        envelope_t *env = envelope_decode (zframe_data (frame), zframe_size (frame), &err,
                                           detail, sizeof detail);
        if (env) {
            json_t *json = tool_envelope_to_json (env);
            json_t *line = json_pack ("{s:s}", "topic", topic);
            json_object_update (line, json);
            json_decref (json);
            tool_print_line (stdout, line);
            envelope_destroy (&env);
            printed = true;
        }
        else
            fprintf (stderr, "parley-tail: %s: undecodable envelope: %s\n", topic, detail);
    }
    zstr_free (&topic);
    zframe_destroy (&frame);
    return printed;
}

int
main (int argc, char *argv[])
{
    zsys_handler_set (NULL);
    signal (SIGPIPE, SIG_IGN);
    tail_t self = { .endpoint = getenv ("PARLEY_EVENTS_ENDPOINT"), .topics = zlist_new () };
    if (!self.endpoint)
        self.endpoint = TOOL_EVENTS_ENDPOINT;
    tool_curve_from_env (&self.curve);
    int rc = s_options (&self, argc, argv);
    if (rc != 0) {
        if (rc < 0)
            s_usage (stderr);
        zlist_destroy (&self.topics);
        return rc < 0 ? 2 : 0;
    }
    char error[256];
    zsock_t *sub = tool_connect (ZMQ_SUB, self.endpoint, &self.curve, error, sizeof error);
    if (!sub) {
        fprintf (stderr, "parley-tail: %s\n", error);
        zlist_destroy (&self.topics);
        return 2;
    }
    zsock_set_rcvhwm (sub, 1000000);
    if (zlist_size (self.topics) == 0)
        zsock_set_subscribe (sub, "");
    for (char *t = zlist_first (self.topics); t; t = zlist_next (self.topics))
        zsock_set_subscribe (sub, t);
    fprintf (stderr, "parley-tail: subscribed to %zu topic prefix(es) on %s\n",
             zlist_size (self.topics) ? zlist_size (self.topics) : 1, self.endpoint);

    zpoller_t *poller = zpoller_new (sub, NULL);
    int64_t start = tool_mono_ns (), last = start;
    long printed = 0;
    while (!self.count || printed < self.count) {
        int64_t now = tool_mono_ns ();
        int64_t wait_ms = 500;
        if (self.duration) {
            int64_t left = start + (int64_t) (self.duration * 1e9) - now;
            if (left <= 0)
                break;
            wait_ms = left / 1000000 + 1 < wait_ms ? left / 1000000 + 1 : wait_ms;
        }
        if (self.idle && now - last >= (int64_t) (self.idle * 1e9))
            break;
        if (!zpoller_wait (poller, (int) wait_ms)) {
            if (zpoller_terminated (poller))
                break;
            continue;
        }
        zmsg_t *msg = zmsg_recv (sub);
        if (!msg)
            break;
        if (s_print (msg))
            printed++;
        zmsg_destroy (&msg);
        last = tool_mono_ns ();
    }
    zpoller_destroy (&poller);
    zsock_destroy (&sub);
    zlist_destroy (&self.topics);
    return 0;
}
