/*  actors/actor.c — the actor loop: pipe, inbox batches, watched sockets,
 *  tick and figures. See actor.h. */
#include "actor.h"
#include "log.h"

#include <time.h>
#include <unistd.h>

#define ACTOR_STATS_MS     1000
#define ACTOR_MAX_WATCHED  8
#define ACTOR_START_WAIT_MS 60000

typedef struct {
    const actor_def_t *def;
    int index;
    const config_t *config;
} actor_args_t;

struct actor_t {
    const actor_def_t *def;
    int index;
    char name[48];
    const config_t *config;
    zsock_t *pipe;
    zsock_t *inbox;
    mailbox_t *mailbox;
    zpoller_t *poller;
    void *state;
    zsock_t *watched[ACTOR_MAX_WATCHED];
    actor_reader_fn *readers[ACTOR_MAX_WATCHED];
    int watched_count;
    int64_t handled;        /* envelopes handled since start     */
    int64_t backlog;        /* largest batch since the last STATS */
    json_t *figures;        /* actor-specific counters            */
    bool started;
    bool terminated;
};

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *actor_name (actor_t *self) { return self->name; }
int actor_index (actor_t *self) { return self->index; }
const config_t *actor_config (actor_t *self) { return self->config; }
mailbox_t *actor_mailbox (actor_t *self) { return self->mailbox; }
void *actor_state (actor_t *self) { return self->state; }
void actor_set_state (actor_t *self, void *state) { self->state = state; }

int
actor_send (actor_t *self, const char *to, const envelope_t *env)
{
    return mailbox_send (self->mailbox, to, env);
}

void
actor_send_gateways (actor_t *self, const envelope_t *env)
{
    for (int i = 0; i < self->config->gateway_threads; i++) {
        char name[32];
        snprintf (name, sizeof name, "gateway.%d", i);
        mailbox_send (self->mailbox, name, env);
    }
}

int
actor_watch (actor_t *self, zsock_t *sock, actor_reader_fn *fn)
{
    if (self->watched_count == ACTOR_MAX_WATCHED)
        return -1;
    self->watched[self->watched_count] = sock;
    self->readers[self->watched_count++] = fn;
    return zpoller_add (self->poller, sock);
}

void
actor_figure_add (actor_t *self, const char *figure, int64_t n)
{
    json_t *value = json_object_get (self->figures, figure);
    json_object_set_new (self->figures, figure,
                         json_integer ((value ? json_integer_value (value) : 0) + n));
}

int
actor_shard_count (const config_t *config, const char *kind)
{
    int64_t n = 0;
    if (strcmp (kind, "room") == 0)
        n = config->room_shards;
    else if (strcmp (kind, "user") == 0)
        n = config->user_shards;
    else if (strcmp (kind, "persister") == 0)
        n = config->persister_workers;
    else if (strcmp (kind, "gateway") == 0)
        n = config->gateway_threads;
    if (n <= 0) {
        long cores = sysconf (_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? cores : 1;
    }
    return (int) n;
}

static void
s_send_stats (actor_t *self)
{
    envelope_t *env = envelope_new (ENVELOPE_STATS);
    if (!env)
        return;
    envelope_set_body (env, json_pack ("{s:s s:I s:I s:O}", "actor", self->name,
                                       "handled", (json_int_t) self->handled,
                                       "depth", (json_int_t) self->backlog,
                                       "figures", self->figures));
    actor_send_gateways (self, env);
    envelope_destroy (&env);
    self->backlog = 0;
}

/* Reads up to batch_max envelopes from the inbox and hands them over. */
static void
s_drain_inbox (actor_t *self)
{
    size_t max = self->def->batch_from_config ? (size_t) self->config->group_commit_max
                                              : self->def->batch_max;
    if (max == 0)
        max = 1;
    envelope_t *batch[max];
    size_t count = 0;
    /* Bounded: one batch per wake-up, so the pipe and ticks stay served. */
    for (size_t reads = 0; count < max && reads < max * 2; reads++) {
        envelope_t *env;
        if (!mailbox_recv (self->inbox, false, &env))
            break;
        if (env)
            batch[count++] = env;
    }
    if (count == 0)
        return;
    if ((int64_t) count > self->backlog)
        self->backlog = (int64_t) count;
    self->def->handle (self, batch, count);
    self->handled += (int64_t) count;
    for (size_t i = 0; i < count; i++)
        envelope_destroy (&batch[i]);
}

/* Handles a command from the parent: START or $TERM. */
static void
s_handle_pipe (actor_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command) {
        self->terminated = true;
        return;
    }
    if (streq (command, "$TERM"))
        self->terminated = true;
    else if (streq (command, "START") && !self->started) {
        char error[512] = "";
        if (self->def->start && self->def->start (self, error, sizeof error) != 0) {
            zstr_sendf (self->pipe, "ERROR %s", error[0] ? error : "start failed");
        }
        else {
            self->started = true;
            zstr_send (self->pipe, "OK");
        }
    }
    zstr_free (&command);
}

static bool
s_inbox_has_more (actor_t *self)
{
    return (zsock_events (self->inbox) & ZMQ_POLLIN) != 0;
}

static void
s_actor_task (zsock_t *pipe, void *args_p)
{
    actor_args_t *args = args_p;
    actor_t self = { .def = args->def, .index = args->index, .config = args->config,
                     .pipe = pipe };
    free (args);
    snprintf (self.name, sizeof self.name, "%s.%d", self.def->kind, self.index);
    self.inbox = mailbox_inbox_new (self.name);
    self.mailbox = mailbox_new ();
    self.poller = zpoller_new (pipe, self.inbox, NULL);
    self.figures = json_object ();
    zsock_signal (pipe, 0);

    int64_t next_tick = s_now_ms () + self.def->tick_ms;
    int64_t next_stats = s_now_ms () + ACTOR_STATS_MS;
    while (!self.terminated) {
        int64_t now = s_now_ms ();
        int64_t wake = next_stats;
        if (self.started && self.def->tick_ms && next_tick < wake)
            wake = next_tick;
        int timeout = wake > now ? (int) (wake - now) : 0;
        zsock_t *which = zpoller_wait (self.poller, timeout);
        if (zpoller_terminated (self.poller))
            break;
        if (which == pipe)
            s_handle_pipe (&self);
        else if (which == self.inbox && self.started) {
            s_drain_inbox (&self);
            while (s_inbox_has_more (&self) && !self.terminated) {
                s_drain_inbox (&self);
                if (zsock_events (pipe) & ZMQ_POLLIN)
                    break;
            }
        }
        else if (which && self.started)
            for (int i = 0; i < self.watched_count; i++)
                if (self.watched[i] == which)
                    self.readers[i] (&self, which);
        /* zpoller_wait names the first ready socket only: a busy inbox
           must not starve the watched sockets (the bus's inject). */
        if (which == self.inbox && self.started)
            for (int i = 0; i < self.watched_count; i++)
                if (zsock_events (self.watched[i]) & ZMQ_POLLIN)
                    self.readers[i] (&self, self.watched[i]);
        now = s_now_ms ();
        if (self.started && self.def->tick_ms && now >= next_tick) {
            self.def->tick (&self);
            next_tick = now + self.def->tick_ms;
        }
        if (now >= next_stats) {
            if (self.started)
                s_send_stats (&self);
            next_stats = now + ACTOR_STATS_MS;
        }
    }
    if (self.def->stop)
        self.def->stop (&self);
    zpoller_destroy (&self.poller);
    mailbox_destroy (&self.mailbox);
    zsock_destroy (&self.inbox);
    json_decref (self.figures);
}

zactor_t *
actor_spawn (const actor_def_t *def, int index, const config_t *config,
             char *error, size_t error_size)
{
    actor_args_t *args = calloc (1, sizeof *args);
    if (!args)
        return NULL;
    *args = (actor_args_t) { def, index, config };
    zactor_t *actor = zactor_new (s_actor_task, args);
    if (!actor) {
        snprintf (error, error_size, "%s.%d: cannot start thread", def->kind, index);
        return NULL;
    }
    zstr_send (actor, "START");
    zpoller_t *poller = zpoller_new (actor, NULL);
    char *reply = zpoller_wait (poller, ACTOR_START_WAIT_MS) ? zstr_recv (actor) : NULL;
    zpoller_destroy (&poller);
    if (reply && streq (reply, "OK")) {
        zstr_free (&reply);
        return actor;
    }
    snprintf (error, error_size, "%s.%d: %s", def->kind, index,
              reply ? (strncmp (reply, "ERROR ", 6) == 0 ? reply + 6 : reply)
                    : "did not start in time");
    zstr_free (&reply);
    zactor_destroy (&actor);
    return NULL;
}
