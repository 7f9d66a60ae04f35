/*  actors/ops/admin.c — the staff API over scheduled work (API.md §2.8).
 *
 *  Staff only (users.is_staff; 403 for everyone else, made with
 *  `parley-admin create-staff`). The schedules' timing belongs to the
 *  scheduler actor (actors/scheduler.c), which re-reads the table every
 *  tick: a PATCH here takes effect within a tick, without a restart, and
 *  "run now" only records a task run with no claimant (claimed_by NULL),
 *  which the scheduler of some node claims and runs (202 answers at once).
 *
 *  Choices where API.md is silent (see docs/scheduler.md):
 *  - lists are paginated like every list; schedules by name, task runs
 *    newest first; ?schedule= and ?status= filter task runs;
 *  - interval_seconds is 1..31536000 (a year); changing it moves
 *    next_run_at to last run + new interval (or now + interval when never
 *    run), so a shorter interval applies at once;
 *  - run/ works on a disabled schedule too (an explicit request);
 *  - a second run/ while one is pending or running queues another run.
 */
#include "ops.h"

#include <string.h>

#define S_INTERVAL_MAX 31536000LL

/* 403 unless the caller is staff. true when allowed. */
static bool
s_staff (op_t *op)
{
    if (op_is_staff (op))
        return true;
    op_forbidden (op);
    return false;
}

/* GET /api/admin/schedules/ */
static int
s_schedules (op_t *op)
{
    if (!s_staff (op))
        return 0;
    return op_list (op, "SELECT count(*) FROM schedules",
                    "SELECT parley_schedule_json (s) FROM schedules s ORDER BY s.name"
                    " LIMIT $1 OFFSET $2", 0, NULL);
}

/* Answers 200 with schedule `name`, or 404. */
static int
s_reply_schedule (op_t *op, const char *name)
{
    const char *params[] = { name };
    json_t *schedule = op_query_json (op, "SELECT parley_schedule_json (s) FROM schedules s"
                                          " WHERE s.name = $1", 1, params);
    if (!schedule)
        return -1;
    if (json_is_null (schedule)) {
        json_decref (schedule);
        op_not_found (op);
        return 0;
    }
    op_reply (op, 200, schedule);
    return 0;
}

/* GET /api/admin/schedules/{name}/ */
static int
s_schedule (op_t *op)
{
    if (!s_staff (op))
        return 0;
    return s_reply_schedule (op, op_param (op, "name"));
}

/* PATCH /api/admin/schedules/{name}/ {interval_seconds?, enabled?} */
static int
s_schedule_update (op_t *op)
{
    if (!s_staff (op))
        return 0;
    long long interval;
    bool enabled;
    int has_interval = op_body_int (op, "interval_seconds", &interval);
    if (has_interval < 0)
        return 0;
    if (has_interval && (interval < 1 || interval > S_INTERVAL_MAX)) {
        op_field_error (op, "interval_seconds", "Must be between 1 and 31536000.");
        return 0;
    }
    int has_enabled = op_body_bool (op, "enabled", &enabled);
    if (has_enabled < 0)
        return 0;
    char interval_text[24];
    snprintf (interval_text, sizeof interval_text, "%lld", interval);
    const char *params[] = { op_param (op, "name"), has_interval ? interval_text : NULL,
                             has_enabled ? (enabled ? "true" : "false") : NULL };
    if (op_command (op,
            "UPDATE schedules SET"
            " interval_seconds = coalesce ($2::integer, interval_seconds),"
            " enabled = coalesce ($3::boolean, enabled),"
            " next_run_at = CASE WHEN $2::integer IS NULL OR $2::integer = interval_seconds"
            "                    THEN next_run_at"
            "                    ELSE coalesce (last_run_at, now ())"
            "                         + make_interval (secs => $2::integer) END"
            " WHERE name = $1", 3, params) < 0)
        return -1;
    return s_reply_schedule (op, op_param (op, "name"));
}

/* POST /api/admin/schedules/{name}/run/ — 202 with the task run, which the
   scheduler claims and runs. */
static int
s_schedule_run (op_t *op)
{
    if (!s_staff (op))
        return 0;
    const char *params[] = { op_param (op, "name") };
    json_t *run = op_query_json (op,
        "WITH t AS (INSERT INTO task_runs (schedule)"
        "           SELECT name FROM schedules WHERE name = $1 RETURNING *)"
        " SELECT parley_task_run_json (t::task_runs) FROM t", 1, params);
    if (!run)
        return -1;
    if (json_is_null (run)) {
        json_decref (run);
        op_not_found (op);
        return 0;
    }
    op_reply (op, 202, run);
    return 0;
}

/* GET /api/admin/task-runs/ ?schedule= ?status= */
static int
s_task_runs (op_t *op)
{
    if (!s_staff (op))
        return 0;
    const char *params[2] = { NULL, NULL };
    op_query_string (op, "schedule", &params[0]);
    if (op_query_string (op, "status", &params[1]) && strcmp (params[1], "running") != 0
        && strcmp (params[1], "ok") != 0 && strcmp (params[1], "error") != 0) {
        op_field_error (op, "status", "Select a valid choice: running, ok, error.");
        return 0;
    }
#define S_WHERE " WHERE ($1::text IS NULL OR t.schedule = $1)" \
                " AND ($2::text IS NULL OR t.status = $2)"
    return op_list (op, "SELECT count(*) FROM task_runs t" S_WHERE,
                    "SELECT parley_task_run_json (t) FROM task_runs t" S_WHERE
                    " ORDER BY t.started_at DESC, t.id DESC LIMIT $3 OFFSET $4", 2, params);
#undef S_WHERE
}

const op_def_t ops_admin[] = {
    { "admin.schedules",       s_schedules,       false },
    { "admin.schedule",        s_schedule,        false },
    { "admin.schedule_update", s_schedule_update, false },
    { "admin.schedule_run",    s_schedule_run,    false },
    { "admin.task_runs",       s_task_runs,       false },
    { NULL, NULL, false }
};
