/*  tests/unit/test_histogram.c — the load tester's latency histogram
 *  (tools/lib/histogram.c). */
#include "histogram.h"
#include "unit.h"

#include <stdlib.h>

/* Usage: record latencies, read percentiles. */
static void
test_usage (void)
{
    histogram_t *h = histogram_new ();
    CU_ASSERT_PTR_NOT_NULL_FATAL (h);
    for (uint64_t v = 1; v <= 100; v++)
        histogram_record (h, v);           /* exact below 256 */
    CU_ASSERT_EQUAL (histogram_count (h), 100);
    CU_ASSERT_EQUAL (histogram_min (h), 1);
    CU_ASSERT_EQUAL (histogram_max (h), 100);
    CU_ASSERT_EQUAL (histogram_percentile (h, 50), 50);
    CU_ASSERT_EQUAL (histogram_percentile (h, 90), 90);
    CU_ASSERT_EQUAL (histogram_percentile (h, 99), 99);
    CU_ASSERT_EQUAL (histogram_percentile (h, 99.9), 100);
    CU_ASSERT_EQUAL (histogram_percentile (h, 100), 100);
    CU_ASSERT_DOUBLE_EQUAL (histogram_mean (h), 50.5, 1e-9);
    histogram_destroy (&h);
    CU_ASSERT_PTR_NULL (h);
    histogram_destroy (&h);                /* NULL-safe */
    histogram_destroy (NULL);
}

static void
test_empty (void)
{
    histogram_t *h = histogram_new ();
    CU_ASSERT_EQUAL (histogram_count (h), 0);
    CU_ASSERT_EQUAL (histogram_percentile (h, 50), 0);
    CU_ASSERT_EQUAL (histogram_max (h), 0);
    CU_ASSERT_DOUBLE_EQUAL (histogram_mean (h), 0, 1e-12);
    histogram_destroy (&h);
}

/* Buckets tile the whole uint64 range, in order, without gaps, each
   narrower than 1/128 of its values. */
static void
test_buckets_tile_the_range (void)
{
    int last = histogram_bucket (UINT64_MAX);
    CU_ASSERT_EQUAL (last, 7423);
    CU_ASSERT_EQUAL (histogram_bucket_low (0), 0);
    CU_ASSERT_EQUAL (histogram_bucket_high (last), UINT64_MAX);
    for (int b = 0; b < last; b++) {
        CU_ASSERT_EQUAL (histogram_bucket_high (b) + 1, histogram_bucket_low (b + 1));
        CU_ASSERT_EQUAL (histogram_bucket (histogram_bucket_low (b)), b);
        CU_ASSERT_EQUAL (histogram_bucket (histogram_bucket_high (b)), b);
        uint64_t width = histogram_bucket_high (b) - histogram_bucket_low (b) + 1;
        CU_ASSERT (width == 1 || width * 128 <= histogram_bucket_low (b));
    }
}

/* Every percentile is within 1/128 of the exact one, on a wide spread. */
static void
test_relative_error_is_bounded (void)
{
    histogram_t *h = histogram_new ();
    enum { N = 100000 };
    uint64_t *values = malloc (N * sizeof *values);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;          /* xorshift64 */
        values[i] = (x % 1000000000ull) >> (x % 20);      /* 0 .. 1 s in ns, skewed */
        histogram_record (h, values[i]);
    }
    /* sort for the exact percentiles */
    for (int gap = N / 2; gap > 0; gap /= 2)
        for (int i = gap; i < N; i++)
            for (int j = i; j >= gap && values[j - gap] > values[j]; j -= gap) {
                uint64_t t = values[j];
                values[j] = values[j - gap];
                values[j - gap] = t;
            }
    double ps[] = { 1, 10, 50, 90, 99, 99.9, 99.99 };
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        uint64_t rank = (uint64_t) ((ps[k] / 100.0) * N + 0.999999);
        uint64_t exact = values[rank - 1];
        uint64_t got = histogram_percentile (h, ps[k]);
        CU_ASSERT (got >= exact);
        CU_ASSERT ((double) (got - exact) <= (double) exact / 128.0 + 1);
    }
    CU_ASSERT_EQUAL (histogram_max (h), values[N - 1]);
    CU_ASSERT_EQUAL (histogram_min (h), values[0]);
    CU_ASSERT_EQUAL (histogram_percentile (h, 100), values[N - 1]);
    free (values);
    histogram_destroy (&h);
}

static void
test_merge_and_reset (void)
{
    histogram_t *a = histogram_new (), *b = histogram_new ();
    histogram_record_n (a, 1000, 3);
    histogram_record (b, 5);
    histogram_record (b, 1000000);
    histogram_merge (a, b);
    CU_ASSERT_EQUAL (histogram_count (a), 5);
    CU_ASSERT_EQUAL (histogram_min (a), 5);
    CU_ASSERT_EQUAL (histogram_max (a), 1000000);
    CU_ASSERT_EQUAL (histogram_percentile (a, 20), 5);
    uint64_t p60 = histogram_percentile (a, 60);
    CU_ASSERT (p60 >= 1000 && p60 <= 1000 + 1000 / 128);
    histogram_record_n (a, 7, 0);                  /* nothing */
    CU_ASSERT_EQUAL (histogram_count (a), 5);
    histogram_reset (a);
    CU_ASSERT_EQUAL (histogram_count (a), 0);
    CU_ASSERT_EQUAL (histogram_percentile (a, 99), 0);
    histogram_merge (a, b);
    CU_ASSERT_EQUAL (histogram_count (a), 2);
    histogram_destroy (&a);
    histogram_destroy (&b);
}

int
main (void)
{
    CU_TestInfo tests[] = {
        { "usage", test_usage },
        { "empty", test_empty },
        { "buckets tile the range", test_buckets_tile_the_range },
        { "relative error is bounded", test_relative_error_is_bounded },
        { "merge and reset", test_merge_and_reset },
        CU_TEST_INFO_NULL,
    };
    return unit_run ("histogram", tests);
}
