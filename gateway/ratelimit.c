/*  gateway/ratelimit.c — token buckets, see ratelimit.h. */
#include "ratelimit.h"

#include <time.h>

typedef struct {
    double tokens;
    int64_t at_ms;
} bucket_t;

static void
s_bucket_free (void **item)
{
    free (*item);
    *item = NULL;
}

zhashx_t *
ratelimit_new (void)
{
    zhashx_t *buckets = zhashx_new ();
    if (buckets)
        zhashx_set_destructor (buckets, s_bucket_free);
    return buckets;
}

static double
s_refill (const bucket_t *b, const config_t *config, int64_t now_ms)
{
    double tokens = b->tokens
                    + (double) (now_ms - b->at_ms) * (double) config->rate_limit_per_sec / 1000.0;
    return tokens > (double) config->rate_limit_burst ? (double) config->rate_limit_burst
                                                      : tokens;
}

int
ratelimit_take_at (zhashx_t *buckets, const char *user, const config_t *config,
                   int64_t now_ms, double *retry_after)
{
    bucket_t *b = zhashx_lookup (buckets, user);
    if (!b) {
        b = calloc (1, sizeof *b);
        if (!b)
            return 0;
        b->tokens = (double) config->rate_limit_burst;
        b->at_ms = now_ms;
        zhashx_insert (buckets, user, b);
    }
    b->tokens = s_refill (b, config, now_ms);
    b->at_ms = now_ms;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        *retry_after = 0;
        return 0;
    }
    *retry_after = (1.0 - b->tokens) / (double) config->rate_limit_per_sec;
    return -1;
}

int
ratelimit_take (zhashx_t *buckets, const char *user, const config_t *config,
                double *retry_after)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return ratelimit_take_at (buckets, user, config,
                              (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000, retry_after);
}

void
ratelimit_sweep (zhashx_t *buckets, const config_t *config, int64_t now_ms)
{
    zlistx_t *keys = zhashx_keys (buckets);
    for (const char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
        bucket_t *b = zhashx_lookup (buckets, key);
        if (s_refill (b, config, now_ms) >= (double) config->rate_limit_burst)
            zhashx_delete (buckets, key);
    }
    zlistx_destroy (&keys);
}
