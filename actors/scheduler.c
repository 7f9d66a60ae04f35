/*  actors/scheduler.c — the schedules table, claims, task runs and the five
 *  jobs. See scheduler.h. State: the PostgreSQL connection, this node's
 *  name, the jobs running here and the requests they wait on. */
#include "scheduler.h"
#include "log.h"
#include "presence.h"

#include <errno.h>
#include <libpq-fe.h>
#include <signal.h>
#include <unistd.h>

#define SCHEDULER_TICK_MS       500
#define SCHEDULER_RECONNECT_MS  2000
#define SCHEDULER_OP_MS         120000     /* a persister's answer            */
#define SCHEDULER_REDIS_MS      60000      /* presence's answer               */
#define SCHEDULER_MAIL_MS       1800000    /* the notifier's, for one batch   */
#define SCHEDULER_PASSES_MAX    1000       /* requests one run may make       */
#define SCHEDULER_MENTIONS      200        /* messages per pass               */
#define SCHEDULER_CANDIDATES    500        /* users per presence pass         */
#define SCHEDULER_EMAILS        50         /* emails per batch                */

typedef struct job_t job_t;

/* A job's next step: called with answer NULL to begin, then with each
   answer (an operation's response body, or a JOB_DONE body). Sends the next
   request and returns 0, or returns 1 when the job is over (job->error set
   when it failed). */
typedef int (job_step_fn) (actor_t *self, job_t *job, json_t *answer);

typedef struct {
    const char *schedule;
    job_step_fn *step;
} job_def_t;

struct job_t {
    char run[40];              /* task_runs.id                                */
    char schedule[64];
    const job_def_t *def;
    int stage;                 /* which answer comes next (job-specific)      */
    int passes;
    long long items;
    char error[512];           /* the first error                             */
    char waiting[ENVELOPE_ID_MAX + 1];   /* the request answered next         */
    char waiting_on[48];       /* whom, for the timeout message               */
    int64_t deadline;          /* monotonic ms                                */
    json_t *state;             /* the job's own memory                        */
    bool finished;             /* over; its task run is still to be recorded  */
};

typedef struct {
    PGconn *pg;
    char node[300];            /* host:pid, task_runs.claimed_by              */
    zhashx_t *running;         /* schedule name -> job_t (owned)              */
    zhashx_t *waiting;         /* request id -> job_t (borrowed)              */
    int64_t next_connect;
    bool cleaned;              /* abandoned runs of this host recorded        */
    bool down;                 /* the database is unreachable (logged once)   */
} scheduler_t;

/* --- jobs' requests -------------------------------------------------------- */

static void
s_job_fail (job_t *job, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_job_fail (job_t *job, const char *fmt, ...)
{
    if (job->error[0])
        return;
    va_list args;
    va_start (args, fmt);
    vsnprintf (job->error, sizeof job->error, fmt, args);
    va_end (args);
}

/* Sends `env` for `job` and waits for its answer. Returns 0, or 1 (job
   over, error set) when it could not be sent. */
static int
s_send (actor_t *self, job_t *job, const char *to, envelope_t *env, int64_t timeout)
{
    scheduler_t *s = actor_state (self);
    snprintf (env->from, sizeof env->from, "%s", actor_name (self));
    if (++job->passes > SCHEDULER_PASSES_MAX) {
        s_job_fail (job, "gave up after %d requests", SCHEDULER_PASSES_MAX);
        envelope_destroy (&env);
        return 1;
    }
    if (actor_send (self, to, env) != 0) {
        s_job_fail (job, "cannot reach %s", to);
        envelope_destroy (&env);
        return 1;
    }
    snprintf (job->waiting, sizeof job->waiting, "%s", env->id);
    snprintf (job->waiting_on, sizeof job->waiting_on, "%s", to);
    job->deadline = zclock_mono () + timeout;
    zhashx_insert (s->waiting, job->waiting, job);
    envelope_destroy (&env);
    return 0;
}

/* Asks a persister to run the internal operation `op` with `body` (taken). */
static int
s_ask_op (actor_t *self, job_t *job, const char *op, json_t *body)
{
    envelope_t *env = envelope_new (ENVELOPE_HTTP_REQUEST);
    envelope_set_body (env, json_pack ("{s:s s:s s:s s:s s:{} s:{} s:o s:{} s:{s:s}}",
        "op", op, "method", "POST", "path", "/internal/jobs", "base", "",
        "params", "query", "body", body, "auth", "internal", "job", job->run));
    char to[48];
    mailbox_shard_name (to, sizeof to, "persister", job->run,
                        actor_shard_count (actor_config (self), "persister"));
    return s_send (self, job, to, env, SCHEDULER_OP_MS);
}

/* Asks actor `to` to do its part `name` of the job with `args` (taken). */
static int
s_ask_actor (actor_t *self, job_t *job, const char *to, const char *name, json_t *args,
             int64_t timeout)
{
    envelope_t *env = envelope_new (ENVELOPE_JOB_RUN);
    envelope_set_body (env, json_pack ("{s:s s:o}", "job", name, "args", args));
    return s_send (self, job, to, env, timeout);
}

/* A new reference to `value`, or JSON null for NULL. */
static json_t *
s_value (json_t *value)
{
    return value ? json_incref (value) : json_null ();
}

static long long
s_int (json_t *object, const char *key)
{
    return json_integer_value (json_object_get (object, key));
}

/* A JOB_DONE answer: false (job failed) unless ok. */
static bool
s_done_ok (job_t *job, json_t *answer)
{
    if (json_is_true (json_object_get (answer, "ok")))
        return true;
    const char *error = json_string_value (json_object_get (answer, "error"));
    s_job_fail (job, "%s", error ? error : "failed");
    return false;
}

/* --- the five jobs ---------------------------------------------------------- */

/* cleanup-expired-typing-indicators: presence sweeps typing:active. */
static int
s_job_typing (actor_t *self, job_t *job, json_t *answer)
{
    if (!answer)
        return s_ask_actor (self, job, "presence.0", "typing.sweep", json_object (),
                            SCHEDULER_REDIS_MS);
    if (s_done_ok (job, answer))
        job->items += s_int (answer, "items");
    return 1;
}

/* cleanup-expired-presence: stages 0 candidates, 1 not live, 2 expired. */
static int
s_job_presence (actor_t *self, job_t *job, json_t *answer)
{
    json_t *state = job->state;
    if (answer && job->stage == 0) {
        json_t *users = json_object_get (answer, "users");
        json_object_set_new (state, "after", s_value (json_object_get (answer, "last")));
        json_object_set_new (state, "more", s_value (json_object_get (answer, "more")));
        if (json_array_size (users) == 0)
            return 1;
        job->stage = 1;
        return s_ask_actor (self, job, "presence.0", "presence.filter",
                            json_pack ("{s:O}", "users", users), SCHEDULER_REDIS_MS);
    }
    if (answer && job->stage == 1) {
        if (!s_done_ok (job, answer))
            return 1;
        json_t *expired = json_object_get (json_object_get (answer, "result"), "expired");
        if (json_array_size (expired) > 0) {
            job->stage = 2;
            return s_ask_op (self, job, "jobs.presence_expire",
                             json_pack ("{s:O s:i}", "users", expired, "stale_seconds",
                                        PRESENCE_LIVE_TTL));
        }
    }
    if (answer && job->stage == 2)
        job->items += s_int (answer, "items");
    if (answer && !json_is_true (json_object_get (state, "more")))
        return 1;
    job->stage = 0;
    return s_ask_op (self, job, "jobs.presence_candidates",
                     json_pack ("{s:o s:i s:i}", "after", s_value (json_object_get (state, "after")),
                                "limit", SCHEDULER_CANDIDATES, "stale_seconds",
                                PRESENCE_LIVE_TTL));
}

/* sync-presence-to-database: stages 0 a SCAN step, 1 copied. */
static int
s_job_sync (actor_t *self, job_t *job, json_t *answer)
{
    json_t *state = job->state;
    if (answer && job->stage == 0) {
        if (!s_done_ok (job, answer))
            return 1;
        json_t *result = json_object_get (answer, "result");
        json_object_set_new (state, "cursor", s_value (json_object_get (result, "cursor")));
        json_t *users = json_object_get (result, "users");
        if (json_array_size (users) > 0) {
            job->stage = 1;
            return s_ask_op (self, job, "jobs.presence_sync",
                             json_pack ("{s:O}", "users", users));
        }
    }
    if (answer && job->stage == 1)
        job->items += s_int (answer, "items");
    const char *cursor = json_string_value (json_object_get (state, "cursor"));
    if (answer && (!cursor || streq (cursor, "0")))
        return 1;
    job->stage = 0;
    return s_ask_actor (self, job, "presence.0", "presence.live",
                        json_pack ("{s:s}", "cursor", cursor ? cursor : "0"),
                        SCHEDULER_REDIS_MS);
}

/* process-message-mentions: passes until nothing is left. */
static int
s_job_mentions (actor_t *self, job_t *job, json_t *answer)
{
    if (answer) {
        job->items += s_int (answer, "items");
        if (!json_is_true (json_object_get (answer, "more")))
            return 1;
    }
    return s_ask_op (self, job, "jobs.process_mentions",
                     json_pack ("{s:i}", "limit", SCHEDULER_MENTIONS));
}

/* The emails of a prepared batch as the notifier wants them. */
static json_t *
s_emails_to_send (json_t *emails)
{
    json_t *out = json_array ();
    size_t i;
    json_t *email;
    json_array_foreach (emails, i, email)
        json_array_append_new (out, json_pack ("{s:O s:O s:O s:O}",
            "user", json_object_get (email, "user"), "to", json_object_get (email, "to"),
            "subject", json_object_get (email, "subject"),
            "text", json_object_get (email, "text")));
    return out;
}

/* The prepared emails the notifier sent: [{user, rooms}]. */
static json_t *
s_emails_sent (json_t *emails, json_t *sent)
{
    json_t *out = json_array ();
    size_t i, k;
    json_t *email, *user;
    json_array_foreach (emails, i, email)
        json_array_foreach (sent, k, user)
            if (json_equal (user, json_object_get (email, "user"))) {
                json_array_append_new (out, json_pack ("{s:O s:O}", "user", user,
                                                       "rooms", json_object_get (email, "rooms")));
                break;
            }
    return out;
}

/* send-message-notification-emails: stages 0 prepared, 1 sent, 2 committed.
   A batch with a failed email ends the run after recording what was sent:
   the rest is retried next run. */
static int
s_job_emails (actor_t *self, job_t *job, json_t *answer)
{
    json_t *state = job->state;
    if (answer && job->stage == 0) {
        json_t *emails = json_object_get (answer, "emails");
        json_object_set_new (state, "after", s_value (json_object_get (answer, "last")));
        json_object_set_new (state, "more", s_value (json_object_get (answer, "more")));
        json_object_set_new (state, "emails", s_value (emails));
        if (json_array_size (emails) == 0)
            return 1;
        job->stage = 1;
        return s_ask_actor (self, job, "notifier.0", "email.send",
                            json_pack ("{s:o}", "emails", s_emails_to_send (emails)),
                            SCHEDULER_MAIL_MS);
    }
    if (answer && job->stage == 1) {
        if (!s_done_ok (job, answer))
            json_object_set (state, "more", json_false ());
        json_t *sent = s_emails_sent (json_object_get (state, "emails"),
                                      json_object_get (json_object_get (answer, "result"),
                                                       "sent"));
        if (json_array_size (sent) == 0) {
            json_decref (sent);
            return 1;
        }
        job->stage = 2;
        return s_ask_op (self, job, "jobs.email_commit", json_pack ("{s:o}", "sent", sent));
    }
    if (answer && job->stage == 2)
        job->items += s_int (answer, "items");
    if (answer && !json_is_true (json_object_get (state, "more")))
        return 1;
    job->stage = 0;
    return s_ask_op (self, job, "jobs.email_prepare",
                     json_pack ("{s:o s:i}", "after", s_value (json_object_get (state, "after")),
                                "limit", SCHEDULER_EMAILS));
}

static const job_def_t s_jobs[] = {
    { "cleanup-expired-typing-indicators", s_job_typing },
    { "cleanup-expired-presence",          s_job_presence },
    { "sync-presence-to-database",         s_job_sync },
    { "process-message-mentions",          s_job_mentions },
    { "send-message-notification-emails",  s_job_emails },
    { NULL, NULL }
};

/* --- database --------------------------------------------------------------- */

static void
s_notice (void *arg, const char *message)
{
    (void) arg;
    char line[512];
    snprintf (line, sizeof line, "%s", message);
    line[strcspn (line, "\n")] = '\0';
    log_info ("scheduler", "PostgreSQL: %s", line);
}

/* Connects when not connected (at most every SCHEDULER_RECONNECT_MS).
   Returns true when a connection is usable. */
static bool
s_connected (actor_t *self, scheduler_t *s, char *error, size_t error_size)
{
    if (s->pg && PQstatus (s->pg) == CONNECTION_OK)
        return true;
    if (zclock_mono () < s->next_connect)
        return false;
    s->next_connect = zclock_mono () + SCHEDULER_RECONNECT_MS;
    if (s->pg)
        PQfinish (s->pg);
    s->pg = PQconnectdb (actor_config (self)->pg_dsn);
    if (PQstatus (s->pg) != CONNECTION_OK) {
        snprintf (error, error_size, "cannot connect to PostgreSQL (pg_dsn): %s",
                  PQerrorMessage (s->pg));
        error[strcspn (error, "\n")] = '\0';
        PQfinish (s->pg);
        s->pg = NULL;
        return false;
    }
    PQsetNoticeProcessor (s->pg, s_notice, NULL);
    PGresult *res = PQexec (s->pg, "SET TIME ZONE 'UTC'");
    PQclear (res);
    return true;
}

/* Runs `sql`; the result when it succeeded (caller PQclear()s), else NULL
   (logged). */
static PGresult *
s_exec (actor_t *self, scheduler_t *s, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams (s->pg, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus (res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return res;
    log_warn (actor_name (self), "%s", PQresultErrorMessage (res));
    PQclear (res);
    return NULL;
}

/* The names of the schedules running here, as a text[] literal. */
static char *
s_running_literal (scheduler_t *s)
{
    char *literal = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&literal, &size);
    fputc ('{', out);
    bool first = true;
    for (job_t *job = zhashx_first (s->running); job; job = zhashx_next (s->running)) {
        fputs (first ? "\"" : ",\"", out);
        for (const char *c = job->schedule; *c; c++) {
            if (*c == '"' || *c == '\\')
                fputc ('\\', out);
            fputc (*c, out);
        }
        fputc ('"', out);
        first = false;
    }
    fputc ('}', out);
    fclose (out);
    return literal;
}

/* Records the end of `job`'s run. true when recorded. */
static bool
s_record (actor_t *self, scheduler_t *s, job_t *job)
{
    char items[24];
    snprintf (items, sizeof items, "%lld", job->items < 0 ? 0 : job->items);
    const char *params[] = { job->run, job->error[0] ? "error" : "ok", items,
                             job->error[0] ? job->error : NULL };
    PGresult *res = s_exec (self, s, "UPDATE task_runs SET finished_at = now (),"
                                     " status = $2, items = $3::integer, error = $4"
                                     " WHERE id = $1::uuid", 4, params);
    if (!res)
        return false;
    PQclear (res);
    return true;
}

/* The job is over: records it, or keeps it until that succeeds. */
static void
s_finish (actor_t *self, scheduler_t *s, job_t *job)
{
    job->finished = true;
    if (job->waiting[0])
        zhashx_delete (s->waiting, job->waiting);
    job->waiting[0] = '\0';
    if (job->error[0])
        log_warn (actor_name (self), "%s (run %s) failed after %lld item(s): %s",
                  job->schedule, job->run, job->items, job->error);
    else if (job->items > 0)
        log_info (actor_name (self), "%s (run %s) done: %lld item(s)", job->schedule,
                  job->run, job->items);
    else
        log_debug (actor_name (self), "%s (run %s) done: nothing to do", job->schedule,
                   job->run);
    if (s->pg && PQstatus (s->pg) == CONNECTION_OK && s_record (self, s, job))
        zhashx_delete (s->running, job->schedule);
}

static void
s_job_destroy (void **item)
{
    job_t *job = *item;
    json_decref (job->state);
    free (job);
    *item = NULL;
}

/* Starts task run `run` of `schedule`. */
static void
s_start_job (actor_t *self, scheduler_t *s, const char *run, const char *schedule)
{
    if (zhashx_lookup (s->running, schedule))
        return;                 /* excluded by the claims; never happens */
    job_t *job = calloc (1, sizeof *job);
    if (!job)
        return;
    snprintf (job->run, sizeof job->run, "%s", run);
    snprintf (job->schedule, sizeof job->schedule, "%s", schedule);
    job->state = json_object ();
    for (const job_def_t *def = s_jobs; def->schedule; def++)
        if (streq (def->schedule, schedule))
            job->def = def;
    zhashx_insert (s->running, job->schedule, job);
    log_debug (actor_name (self), "%s (run %s) started", schedule, run);
    if (!job->def) {
        s_job_fail (job, "no such task: %s", schedule);
        s_finish (self, s, job);
    }
    else if (job->def->step (self, job, NULL) == 1)
        s_finish (self, s, job);
}

/* Claims the runs staff asked for (unclaimed task runs), one per schedule
   not running here. */
static void
s_claim_requested (actor_t *self, scheduler_t *s)
{
    for (int guard = 0; guard < 16; guard++) {
        char *running = s_running_literal (s);
        const char *params[] = { s->node, running };
        PGresult *res = s_exec (self, s,
            "WITH c AS (SELECT id FROM task_runs WHERE status = 'running'"
            "             AND claimed_by IS NULL AND NOT (schedule = ANY ($2::text[]))"
            "           ORDER BY started_at LIMIT 1 FOR UPDATE SKIP LOCKED),"
            " t AS (UPDATE task_runs r SET claimed_by = $1 FROM c WHERE r.id = c.id"
            "       RETURNING r.id, r.schedule),"
            " u AS (UPDATE schedules SET last_run_at = now ()"
            "        WHERE name IN (SELECT schedule FROM t))"
            " SELECT id, schedule FROM t", 2, params);
        free (running);
        if (!res)
            return;
        bool found = PQntuples (res) > 0;
        if (found)
            s_start_job (self, s, PQgetvalue (res, 0, 0), PQgetvalue (res, 0, 1));
        PQclear (res);
        if (!found)
            return;
    }
}

/* Claims every due, enabled schedule not running here. */
static void
s_claim_due (actor_t *self, scheduler_t *s)
{
    char *running = s_running_literal (s);
    const char *params[] = { s->node, running };
    PGresult *res = s_exec (self, s,
        "WITH c AS (UPDATE schedules SET last_run_at = now (),"
        "                  next_run_at = now () + make_interval (secs => interval_seconds)"
        "            WHERE enabled AND next_run_at <= now ()"
        "              AND NOT (name = ANY ($2::text[])) RETURNING name)"
        " INSERT INTO task_runs (schedule, claimed_by) SELECT name, $1 FROM c"
        " RETURNING id, schedule", 2, params);
    free (running);
    if (!res)
        return;
    for (int i = 0; i < PQntuples (res); i++)
        s_start_job (self, s, PQgetvalue (res, i, 0), PQgetvalue (res, i, 1));
    PQclear (res);
}

/* Runs left "running" by a node of this host that no longer exists, or
   for over a day by anyone, are recorded as abandoned. */
static void
s_clean_abandoned (actor_t *self, scheduler_t *s)
{
    char host[260];
    snprintf (host, sizeof host, "%.*s:%%", (int) strcspn (s->node, ":"), s->node);
    const char *params[] = { host };
    PGresult *res = s_exec (self, s, "SELECT id, claimed_by FROM task_runs"
                                     " WHERE status = 'running' AND claimed_by LIKE $1",
                            1, params);
    if (!res)
        return;
    for (int i = 0; i < PQntuples (res); i++) {
        const char *colon = strrchr (PQgetvalue (res, i, 1), ':');
        long pid = colon ? strtol (colon + 1, NULL, 10) : 0;
        if (pid <= 0 || (kill ((pid_t) pid, 0) != 0 && errno == ESRCH)) {
            const char *id[] = { PQgetvalue (res, i, 0) };
            PGresult *done = s_exec (self, s,
                "UPDATE task_runs SET status = 'error', finished_at = now (),"
                " error = 'abandoned: the node running it stopped'"
                " WHERE id = $1::uuid AND status = 'running'", 1, id);
            PQclear (done);
        }
    }
    PQclear (res);
    res = s_exec (self, s, "UPDATE task_runs SET status = 'error', finished_at = now (),"
                           " error = 'abandoned: no end recorded within a day'"
                           " WHERE status = 'running' AND claimed_by IS NOT NULL"
                           "   AND started_at < now () - interval '1 day'", 0, NULL);
    PQclear (res);
    s->cleaned = true;
}

/* --- the actor ---------------------------------------------------------------- */

static int
s_start (actor_t *self, char *error, size_t error_size)
{
    scheduler_t *s = calloc (1, sizeof *s);
    if (!s)
        return -1;
    actor_set_state (self, s);
    char host[256] = "localhost";
    gethostname (host, sizeof host - 1);
    snprintf (s->node, sizeof s->node, "%s:%ld", host, (long) getpid ());
    s->running = zhashx_new ();
    zhashx_set_destructor (s->running, s_job_destroy);
    s->waiting = zhashx_new ();
    if (!s_connected (self, s, error, error_size))
        return -1;
    return 0;
}

/* An answer to one of the jobs' requests. */
static void
s_on_answer (actor_t *self, scheduler_t *s, envelope_t *env)
{
    job_t *job = zhashx_lookup (s->waiting, env->re);
    if (!job)
        return;                 /* timed out before: the run is over */
    zhashx_delete (s->waiting, env->re);
    job->waiting[0] = '\0';
    json_t *answer = NULL;
    if (env->type == ENVELOPE_HTTP_RESPONSE) {
        long long status = s_int (env->body, "status");
        const char *text = json_string_value (json_object_get (env->body, "json"));
        answer = text ? json_loads (text, 0, NULL) : NULL;
        if (status != 200 || !json_is_object (answer)) {
            const char *detail = json_string_value (json_object_get (answer, "detail"));
            s_job_fail (job, "%s answered %lld%s%s", job->waiting_on, status,
                        detail ? ": " : "", detail ? detail : "");
            json_decref (answer);
            s_finish (self, s, job);
            return;
        }
    }
    else
        answer = json_incref (env->body);
    int rc = job->def->step (self, job, answer);
    json_decref (answer);
    if (rc == 1)
        s_finish (self, s, job);
}

static void
s_handle (actor_t *self, envelope_t **batch, size_t count)
{
    scheduler_t *s = actor_state (self);
    for (size_t i = 0; i < count; i++)
        if ((batch[i]->type == ENVELOPE_HTTP_RESPONSE || batch[i]->type == ENVELOPE_JOB_DONE)
            && batch[i]->re[0])
            s_on_answer (self, s, batch[i]);
}

/* Jobs whose answer is overdue fail; finished ones not yet recorded are
   recorded. */
static void
s_check_jobs (actor_t *self, scheduler_t *s)
{
    int64_t now = zclock_mono ();
    zlistx_t *names = zhashx_keys (s->running);
    for (const char *name = zlistx_first (names); name; name = zlistx_next (names)) {
        job_t *job = zhashx_lookup (s->running, name);
        if (job->finished) {
            if (s_record (self, s, job))
                zhashx_delete (s->running, name);
        }
        else if (job->waiting[0] && now > job->deadline) {
            s_job_fail (job, "no answer from %s in time", job->waiting_on);
            s_finish (self, s, job);
        }
    }
    zlistx_destroy (&names);
}

static void
s_tick (actor_t *self)
{
    scheduler_t *s = actor_state (self);
    char error[512] = "";
    if (!s_connected (self, s, error, sizeof error)) {
        if (error[0] && !s->down)
            log_warn (actor_name (self), "%s; scheduled work waits", error);
        s->down = s->down || error[0];
        return;
    }
    if (s->down)
        log_info (actor_name (self), "PostgreSQL is reachable again");
    s->down = false;
    if (!s->cleaned)
        s_clean_abandoned (self, s);
    s_check_jobs (self, s);
    s_claim_requested (self, s);
    s_claim_due (self, s);
    if (PQstatus (s->pg) != CONNECTION_OK) {
        PQfinish (s->pg);
        s->pg = NULL;
    }
}

static void
s_stop (actor_t *self)
{
    scheduler_t *s = actor_state (self);
    if (!s)
        return;
    /* runs cut short by a shutdown end as errors, not "running" forever */
    if (s->pg && PQstatus (s->pg) == CONNECTION_OK)
        for (job_t *job = zhashx_first (s->running); job; job = zhashx_next (s->running)) {
            if (!job->finished)
                s_job_fail (job, "interrupted: the node stopped");
            s_record (self, s, job);
        }
    zhashx_destroy (&s->waiting);
    zhashx_destroy (&s->running);
    if (s->pg)
        PQfinish (s->pg);
    free (s);
    actor_set_state (self, NULL);
}

const actor_def_t scheduler_actor = {
    .kind = "scheduler",
    .batch_max = 64,
    .tick_ms = SCHEDULER_TICK_MS,
    .start = s_start,
    .handle = s_handle,
    .tick = s_tick,
    .stop = s_stop,
};
