/*  actors/scheduler.h — scheduled work (API.md §2.9, what Celery beat did).
 *
 *  scheduler.0 owns the timing of the `schedules` table and the `task_runs`
 *  history, on a PostgreSQL connection of its own. Every tick it re-reads
 *  the table (so a PATCHed interval or `enabled` applies without a
 *  restart), claims each due schedule in the database —
 *      UPDATE schedules SET last_run_at = now(), next_run_at = now() + interval
 *       WHERE name = ... AND enabled AND next_run_at <= now()
 *  in the same statement as the task_runs insert, so two nodes (or a
 *  restarted one) never run one slot twice — and claims the runs staff asked
 *  for ("run now" inserts an unclaimed task run). It records each run's
 *  end: ok or error, items handled, the error text.
 *
 *  A job does its work by asking the actors that own the state, never by
 *  touching it: persisters run the database parts (actors/ops/jobs.c),
 *  presence.0 the Redis parts, notifier.0 the SMTP part. A job is a chain of
 *  such requests, each answered asynchronously (correlation id); the
 *  scheduler never blocks on another actor. The five jobs:
 *    cleanup-expired-typing-indicators  presence: typing.sweep
 *    cleanup-expired-presence           persister: candidates -> presence:
 *                                       which are not live -> persister:
 *                                       take them offline
 *    sync-presence-to-database          presence: live users (SCAN) ->
 *                                       persister: copy into the tables
 *    process-message-mentions           persister: notify, exactly once
 *    send-message-notification-emails   persister: digests -> notifier:
 *                                       SMTP -> persister: advance cursors
 *                                       of what was sent
 */
#ifndef PARLEY_SCHEDULER_H
#define PARLEY_SCHEDULER_H

#include "actor.h"

extern const actor_def_t scheduler_actor;

#endif
