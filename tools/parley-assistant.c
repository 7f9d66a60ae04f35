/*  tools/parley-assistant.c — a sample assistant service for `ai` rooms
 *  (API.md §2.1, §3 streaming, §4). See docs/tools.md.
 *
 *  It subscribes to `ai.` on the event socket: every message.new of an ai
 *  room arrives there, with the envelope's `user` naming the assistant
 *  account of the server. For each message from someone else it streams
 *  its answer as message.delta chunks, then commits the whole answer with
 *  message.send {content, stream_id, reply_to, client_id} as the assistant
 *  — client_id makes the commit idempotent should the service retry — once
 *  every delta was acknowledged (deltas and messages reach the clients by
 *  different paths), --delay-ms after the last.
 *  The "answer" is a deterministic echo; a real service would call a model.
 *  State: the two sockets and the queue of sends scheduled for later.
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
        "usage: parley-assistant [options]\n"
        "Answers the messages of Parley's ai rooms: subscribes to ai.* on the event\n"
        "socket and, for each new message from a person, streams its reply as\n"
        "message.delta chunks over the inject socket, then sends the full reply\n"
        "(message.send with stream_id) as the assistant user. Prints one JSON line\n"
        "per answer: {\"room\", \"message\", \"reply\", \"stream_id\", \"deltas\"}.\n"
        "options:\n"
        "  --events E           events endpoint (PARLEY_EVENTS_ENDPOINT, else %s)\n"
        "  --inject E           inject endpoint (PARLEY_INJECT_ENDPOINT, else %s)\n"
        "  --user ID            the assistant's user id (default: the `user` of each\n"
        "                       ai.<room> envelope, the server's assistant account)\n"
        "  --chunks N           deltas per answer (default 4; 0: no streaming)\n"
        "  --delay-ms MS        pause between deltas (default 50)\n"
        "  --count N            exit after N answers\n"
        "  --duration SECS      exit after SECS\n"
        TOOL_CURVE_HELP
        "  -h, --help           this help\n",
        TOOL_EVENTS_ENDPOINT, TOOL_INJECT_ENDPOINT);
}

/* An inject command to send at `due`. */
typedef struct {
    int64_t due;             /* monotonic ns */
    envelope_t *env;
} job_t;

/* An answer: its deltas, then its final message.send, in flight. */
typedef struct {
    char room[ENVELOPE_ID_MAX + 1], message[ENVELOPE_ID_MAX + 1], stream_id[96];
    long deltas;
    long waiting;            /* delta replies still to come          */
    envelope_t *final;       /* sent once `waiting` is 0             */
} answer_t;

typedef struct {
    const char *events_endpoint, *inject_endpoint, *user;
    long chunks, delay_ms, count;
    double duration;
    tool_curve_t curve;
    zsock_t *sub, *dealer;
    zlistx_t *jobs;          /* job_t, by due time */
    zhashx_t *answers;       /* final command id -> answer_t (owned) */
    zhashx_t *deltas;        /* delta command id -> answer_t         */
    long answered;
} assistant_t;

static int
s_options (assistant_t *self, int argc, char *argv[])
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int curve = tool_curve_option (&self->curve, argc, argv, &i);
        if (curve < 0)
            return -1;
        if (curve)
            continue;
        bool more = i + 1 < argc;
        if (streq (a, "-h") || streq (a, "--help")) {
            s_usage (stdout);
            return 1;
        }
        else if (streq (a, "--events") && more)
            self->events_endpoint = argv[++i];
        else if (streq (a, "--inject") && more)
            self->inject_endpoint = argv[++i];
        else if (streq (a, "--user") && more)
            self->user = argv[++i];
        else if (streq (a, "--chunks") && more) {
            if (tool_parse_long (argv[++i], 0, 1000, &self->chunks))
                return -1;
        }
        else if (streq (a, "--delay-ms") && more) {
            if (tool_parse_long (argv[++i], 0, 60000, &self->delay_ms))
                return -1;
        }
        else if (streq (a, "--count") && more) {
            if (tool_parse_long (argv[++i], 1, LONG_MAX, &self->count))
                return -1;
        }
        else if (streq (a, "--duration") && more) {
            if (tool_parse_double (argv[++i], 0.001, 1e9, &self->duration))
                return -1;
        }
        else
            return -1;
    }
    return 0;
}

/* The sample's answer to `content` (caller frees). */
static char *
s_compose (const char *content)
{
    size_t words = 0, chars = 0;
    bool in_word = false;
    for (const unsigned char *p = (const unsigned char *) content; *p; p++) {
        chars += (*p & 0xC0) != 0x80;
        bool space = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r';
        words += !space && !in_word;
        in_word = !space;
    }
    char *text = NULL;
    if (asprintf (&text, "You said \"%s\": %zu word%s, %zu character%s. "
                         "(I am Parley's sample assistant.)",
                  content, words, words == 1 ? "" : "s", chars, chars == 1 ? "" : "s") < 0)
        return NULL;
    return text;
}

static void
s_schedule (assistant_t *self, int64_t due, envelope_t *env)
{
    job_t *job = calloc (1, sizeof *job);
    job->due = due;
    job->env = env;
    zlistx_add_end (self->jobs, job);     /* added in due order */
}

/* A message.delta or message.send envelope as the assistant. */
static envelope_t *
s_command (envelope_type_t type, const char *user, const char *room, json_t *body)
{
    envelope_t *env = envelope_new (type);
    snprintf (env->user, sizeof env->user, "%s", user);
    snprintf (env->room, sizeof env->room, "%s", room);
    envelope_set_body (env, body);
    return env;
}

/* Schedules the deltas and the final message for one user message. */
static void
s_answer (assistant_t *self, const char *user, const char *room, json_t *message)
{
    const char *id = json_string_value (json_object_get (message, "id"));
    const char *content = json_string_value (json_object_get (message, "content"));
    char *reply = s_compose (content ? content : "");
    if (!id || !reply) {
        free (reply);
        return;
    }
    char stream_id[96], client_id[96];
    snprintf (stream_id, sizeof stream_id, "assistant-%s", id);
    snprintf (client_id, sizeof client_id, "assistant-reply-%s", id);
    size_t length = strlen (reply), start = 0;
    int64_t due = tool_mono_ns ();
    answer_t *answer = calloc (1, sizeof *answer);
    for (long k = 0; k < self->chunks; k++) {
        size_t end = k + 1 == self->chunks ? length : length * (size_t) (k + 1) / self->chunks;
        while (end < length && ((unsigned char) reply[end] & 0xC0) == 0x80)
            end++;                                   /* whole UTF-8 characters */
        json_t *body = json_pack ("{s:s s:I s:s%}", "stream_id", stream_id, "seq_in_stream",
                                  (json_int_t) k, "text", reply + start, end - start);
        envelope_t *delta = s_command (ENVELOPE_MESSAGE_DELTA, user, room, body);
        zhashx_insert (self->deltas, delta->id, answer);
        s_schedule (self, due, delta);
        due += self->delay_ms * 1000000;
        start = end;
    }
    answer->final = s_command (ENVELOPE_MESSAGE_SEND, user, room,
        json_pack ("{s:s s:s s:s s:s}", "content", reply, "stream_id", stream_id,
                   "reply_to", id, "client_id", client_id));
    snprintf (answer->room, sizeof answer->room, "%s", room);
    snprintf (answer->message, sizeof answer->message, "%s", id);
    snprintf (answer->stream_id, sizeof answer->stream_id, "%s", stream_id);
    answer->deltas = answer->waiting = self->chunks;
    zhashx_insert (self->answers, answer->final->id, answer);
    if (answer->waiting == 0)
        s_schedule (self, due, answer->final);
    free (reply);
}

/* One published event: answers the new messages of people. */
static void
s_on_event (assistant_t *self)
{
    zmsg_t *msg = zmsg_recv (self->sub);
    char *topic = msg ? zmsg_popstr (msg) : NULL;
    zframe_t *frame = msg ? zmsg_pop (msg) : NULL;
    envelope_t *env = frame ? envelope_decode (zframe_data (frame), zframe_size (frame),
                                               NULL, NULL, 0) : NULL;
    if (env && env->type == ENVELOPE_EVENT_MESSAGE_NEW) {
        json_t *message = json_object_get (env->body, "message");
        const char *me = self->user ? self->user : env->user;
        const char *sender = json_string_value (json_object_get (message, "sender"));
        const char *type = json_string_value (json_object_get (message, "message_type"));
        if (!me[0])
            fprintf (stderr, "parley-assistant: %s: no assistant user (use --user)\n", topic);
        else if (sender && !streq (sender, me) && type && !streq (type, "system"))
            s_answer (self, me, env->room, message);
    }
    envelope_destroy (&env);
    zframe_destroy (&frame);
    zstr_free (&topic);
    zmsg_destroy (&msg);
}

/* One reply from the inject socket. */
static void
s_on_reply (assistant_t *self)
{
    zframe_t *frame = zframe_recv (self->dealer);
    envelope_t *reply = frame ? envelope_decode (zframe_data (frame), zframe_size (frame),
                                                 NULL, NULL, 0) : NULL;
    zframe_destroy (&frame);
    if (!reply)
        return;
    bool ok = json_is_true (json_object_get (reply->body, "ok"));
    answer_t *streaming = zhashx_lookup (self->deltas, reply->re);
    if (streaming) {
        /* the final message only after every delta went out: deltas and
           messages take different paths to the clients */
        zhashx_delete (self->deltas, reply->re);
        if (--streaming->waiting == 0)
            s_schedule (self, tool_mono_ns () + self->delay_ms * 1000000, streaming->final);
    }
    answer_t *answer = zhashx_lookup (self->answers, reply->re);
    if (!ok) {
        const char *code = json_string_value (json_object_get (reply->body, "code"));
        const char *detail = json_string_value (json_object_get (reply->body, "detail"));
        fprintf (stderr, "parley-assistant: command %s failed: %s: %s\n", reply->re,
                 code ? code : "?", detail ? detail : "");
    }
    if (answer) {
        const char *id = json_string_value (json_object_get (reply->body, "id"));
        json_t *line = json_pack ("{s:s s:s s:s s:I}", "room", answer->room, "message",
                                  answer->message, "stream_id", answer->stream_id,
                                  "deltas", (json_int_t) answer->deltas);
        json_object_set_new (line, "reply", id && ok ? json_string (id) : json_null ());
        tool_print_line (stdout, line);
        answer->final = NULL;                 /* sent and destroyed by the job */
        zhashx_delete (self->answers, reply->re);
        self->answered++;
    }
    envelope_destroy (&reply);
}

/* Sends the jobs that are due; returns ms until the next one (or 500). */
static int
s_run_jobs (assistant_t *self)
{
    int64_t now = tool_mono_ns ();
    job_t *job;
    while ((job = zlistx_first (self->jobs)) && job->due <= now) {
        zlistx_detach_cur (self->jobs);
        if (tool_send_envelope (self->dealer, job->env) != 0)
            fprintf (stderr, "parley-assistant: cannot send a %s\n",
                     envelope_type_name (job->env->type));
        envelope_destroy (&job->env);
        free (job);
    }
    job = zlistx_first (self->jobs);
    return job ? (int) ((job->due - now) / 1000000 + 1) : 500;
}

static void
s_answer_free (void **item)
{
    answer_t *answer = *item;
    if (answer && answer->waiting > 0)
        envelope_destroy (&answer->final);   /* never scheduled */
    free (answer);
    *item = NULL;
}

static int
s_connect (assistant_t *self)
{
    char error[256];
    self->sub = tool_connect (ZMQ_SUB, self->events_endpoint, &self->curve, error,
                              sizeof error);
    if (self->sub) {
        zsock_set_subscribe (self->sub, "ai.");
        self->dealer = tool_connect (ZMQ_DEALER, self->inject_endpoint, &self->curve, error,
                                     sizeof error);
    }
    if (!self->sub || !self->dealer) {
        fprintf (stderr, "parley-assistant: %s\n", error);
        return -1;
    }
    return 0;
}

int
main (int argc, char *argv[])
{
    zsys_handler_set (NULL);
    signal (SIGPIPE, SIG_IGN);
    assistant_t self = { .events_endpoint = getenv ("PARLEY_EVENTS_ENDPOINT"),
                         .inject_endpoint = getenv ("PARLEY_INJECT_ENDPOINT"),
                         .chunks = 4, .delay_ms = 50 };
    if (!self.events_endpoint)
        self.events_endpoint = TOOL_EVENTS_ENDPOINT;
    if (!self.inject_endpoint)
        self.inject_endpoint = TOOL_INJECT_ENDPOINT;
    tool_curve_from_env (&self.curve);
    int rc = s_options (&self, argc, argv);
    if (rc != 0) {
        if (rc < 0)
            s_usage (stderr);
        return rc < 0 ? 2 : 0;
    }
    if (s_connect (&self) != 0) {
        zsock_destroy (&self.sub);
        return 2;
    }
    self.jobs = zlistx_new ();
    self.answers = zhashx_new ();
    zhashx_set_destructor (self.answers, s_answer_free);
    self.deltas = zhashx_new ();
    fprintf (stderr, "parley-assistant: listening on %s (ai.*), answering via %s\n",
             self.events_endpoint, self.inject_endpoint);
    zpoller_t *poller = zpoller_new (self.sub, self.dealer, NULL);
    int64_t end = self.duration ? tool_mono_ns () + (int64_t) (self.duration * 1e9) : 0;
    while (!self.count || self.answered < self.count) {
        if (end && tool_mono_ns () >= end)
            break;
        void *which = zpoller_wait (poller, s_run_jobs (&self));
        if (zpoller_terminated (poller))
            break;
        if (which == self.sub)
            s_on_event (&self);
        else if (which == self.dealer)
            s_on_reply (&self);
    }
    zpoller_destroy (&poller);
    job_t *job;
    while ((job = zlistx_detach (self.jobs, NULL))) {
        envelope_destroy (&job->env);
        free (job);
    }
    zlistx_destroy (&self.jobs);
    zhashx_destroy (&self.deltas);
    zhashx_destroy (&self.answers);
    zsock_destroy (&self.sub);
    zsock_destroy (&self.dealer);
    return 0;
}
