/*  actors/log.c — one line per event on stderr, see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static atomic_int s_level = LOG_LEVEL_INFO;
static const char *const s_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

int
log_set_level (const char *name)
{
    static const char *const lower[] = { "error", "warn", "info", "debug" };
    for (int i = 0; i < 4; i++)
        if (name && strcmp (name, lower[i]) == 0) {
            atomic_store (&s_level, i);
            return 0;
        }
    return -1;
}

int
log_enabled (log_level_t level)
{
    return (int) level <= atomic_load (&s_level);
}

void
log_timestamp (char *out, size_t size)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r (&ts.tv_sec, &tm);
    char stamp[LOG_TIMESTAMP_SIZE];
    size_t n = strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (stamp + n, sizeof stamp - n, ".%03uZ",
              (unsigned) (ts.tv_nsec / 1000000) % 1000u);
    snprintf (out, size, "%s", stamp);
}

void
log_write (log_level_t level, const char *actor, const char *fmt, ...)
{
    if (!log_enabled (level))
        return;
    char stamp[32];
    log_timestamp (stamp, sizeof stamp);
    char line[2048];
    int n = snprintf (line, sizeof line, "%s %-5s %s ", stamp, s_names[level],
                      actor ? actor : "-");
    va_list ap;
    va_start (ap, fmt);
    if (n > 0 && (size_t) n < sizeof line)
        vsnprintf (line + n, sizeof line - (size_t) n, fmt, ap);
    va_end (ap);
    /* One fputs of the whole line keeps lines from interleaving. */
    size_t len = strlen (line);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len] = '\n';
    line[len + 1] = '\0';
    fputs (line, stderr);
}
