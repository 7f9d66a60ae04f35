/*  tools/lib/histogram.h — a log-linear latency histogram (HdrHistogram's
 *  layout, simplified) for the load tester and benchmarks.
 *
 *  Values (any unit; the tools record nanoseconds) below 256 are counted
 *  exactly; above, each power of two is split into 128 equal sub-buckets,
 *  so a reported value is within 1/128 (0.78 %) of the true one. The whole
 *  uint64 range fits in 7 424 counters (58 KiB); recording is a few
 *  instructions, no allocation. Percentiles report the highest value of
 *  the bucket that holds the rank (HdrHistogram's "highest equivalent
 *  value"), clamped to the largest value recorded.
 */
#ifndef PARLEY_HISTOGRAM_H
#define PARLEY_HISTOGRAM_H

#include <stdint.h>

typedef struct histogram_t histogram_t;

/* Creates an empty histogram. Caller owns return value; NULL on OOM. */
histogram_t *histogram_new (void);

/* Destroys it; accepts NULL, nulls the pointer. */
void histogram_destroy (histogram_t **self_p);

/* Counts `value` once, or `count` times. */
void histogram_record (histogram_t *self, uint64_t value);
void histogram_record_n (histogram_t *self, uint64_t value, uint64_t count);

/* Adds every count of `other` into `self`. */
void histogram_merge (histogram_t *self, const histogram_t *other);

/* Forgets every value. */
void histogram_reset (histogram_t *self);

/* Values counted; smallest and largest (0 when empty); mean. */
uint64_t histogram_count (const histogram_t *self);
uint64_t histogram_min (const histogram_t *self);
uint64_t histogram_max (const histogram_t *self);
double histogram_mean (const histogram_t *self);

/* The value at percentile `p` (0..100): the smallest bucket value v such
   that at least p % of the values are <= v, reported as that bucket's
   highest value. 0 when empty. */
uint64_t histogram_percentile (const histogram_t *self, double p);

/* The bucket index of `value` and the range a bucket covers (for tests). */
int histogram_bucket (uint64_t value);
uint64_t histogram_bucket_low (int bucket);
uint64_t histogram_bucket_high (int bucket);

#endif
