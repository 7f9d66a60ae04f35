/*  actors/log.h — Parley's one logging facility.
 *
 *  One line per event on stderr:
 *      2026-11-25T12:00:00.123Z INFO  persister.0 committed batch n=12
 *  The level is set once at start-up from the configuration (log_level);
 *  it is the only process-wide setting, held in an atomic.
 */
#ifndef PARLEY_LOG_H
#define PARLEY_LOG_H

#include <stddef.h>

typedef enum { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG } log_level_t;

/* Sets the level from its name ("error", "warn", "info", "debug");
   returns -1 for an unknown name and leaves the level unchanged. */
int log_set_level (const char *name);

/* True when messages of `level` are written. */
int log_enabled (log_level_t level);

#define LOG_TIMESTAMP_SIZE 32

/* Writes the current UTC time as RFC 3339 with milliseconds
   ("2026-11-25T12:00:00.123Z") into `out` (LOG_TIMESTAMP_SIZE bytes). */
void log_timestamp (char *out, size_t size);

/* Writes one line: timestamp, level, the actor (or program) name, message. */
void log_write (log_level_t level, const char *actor, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

#define log_error(actor, ...) log_write (LOG_LEVEL_ERROR, actor, __VA_ARGS__)
#define log_warn(actor, ...)  log_write (LOG_LEVEL_WARN, actor, __VA_ARGS__)
#define log_info(actor, ...)  log_write (LOG_LEVEL_INFO, actor, __VA_ARGS__)
#define log_debug(actor, ...) \
    do { if (log_enabled (LOG_LEVEL_DEBUG)) log_write (LOG_LEVEL_DEBUG, actor, __VA_ARGS__); } while (0)

#endif
