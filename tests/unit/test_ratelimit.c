/*  tests/unit/test_ratelimit.c — token buckets: burst, refill, sweep. */
#include "ratelimit.h"
#include "unit.h"

/* Usage: a burst of 50 passes, the 51st waits for a refill at 20/s. */
static void
test_burst_then_limited (void)
{
    config_t config = { .rate_limit_per_sec = 20, .rate_limit_burst = 50 };
    zhashx_t *buckets = ratelimit_new ();
    double retry = 0;
    for (int i = 0; i < 50; i++)
        CU_ASSERT_EQUAL (ratelimit_take_at (buckets, "u1", &config, 1000, &retry), 0);
    CU_ASSERT_EQUAL (ratelimit_take_at (buckets, "u1", &config, 1000, &retry), -1);
    CU_ASSERT_DOUBLE_EQUAL (retry, 0.05, 0.001);
    /* another user is not affected */
    CU_ASSERT_EQUAL (ratelimit_take_at (buckets, "u2", &config, 1000, &retry), 0);
    /* 50 ms later one token is back */
    CU_ASSERT_EQUAL (ratelimit_take_at (buckets, "u1", &config, 1050, &retry), 0);
    CU_ASSERT_EQUAL (ratelimit_take_at (buckets, "u1", &config, 1050, &retry), -1);
    zhashx_destroy (&buckets);
}

static void
test_sweep_drops_full_buckets (void)
{
    config_t config = { .rate_limit_per_sec = 20, .rate_limit_burst = 50 };
    zhashx_t *buckets = ratelimit_new ();
    double retry;
    ratelimit_take_at (buckets, "u1", &config, 0, &retry);
    ratelimit_sweep (buckets, &config, 10);
    CU_ASSERT_EQUAL (zhashx_size (buckets), 1);
    ratelimit_sweep (buckets, &config, 60000);
    CU_ASSERT_EQUAL (zhashx_size (buckets), 0);
    zhashx_destroy (&buckets);
}

int
main (void)
{
    CU_TestInfo tests[] = {
        { "burst then limited", test_burst_then_limited },
        { "sweep drops full buckets", test_sweep_drops_full_buckets },
        CU_TEST_INFO_NULL
    };
    return unit_run ("ratelimit", tests);
}
