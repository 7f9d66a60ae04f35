/*  tools/lib/histogram.c — see histogram.h. State: the counters. */
#include "histogram.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_SUB_BITS   7                          /* 128 sub-buckets per octave */
#define S_SUB        (1u << S_SUB_BITS)
#define S_EXACT      (2u * S_SUB)               /* values below are exact     */
#define S_BUCKETS    (S_EXACT + (64 - S_SUB_BITS - 1) * S_SUB)   /* 7 424 */

struct histogram_t {
    uint64_t counts[S_BUCKETS];
    uint64_t total;
    uint64_t min, max;
    long double sum;
};

int
histogram_bucket (uint64_t value)
{
    if (value < S_EXACT)
        return (int) value;
    int msb = 63 - __builtin_clzll (value);
    int shift = msb - S_SUB_BITS;              /* >= 1 */
    uint64_t mantissa = value >> shift;        /* S_SUB .. 2 S_SUB - 1 */
    return (int) (S_EXACT + (uint64_t) (shift - 1) * S_SUB + (mantissa - S_SUB));
}

uint64_t
histogram_bucket_low (int bucket)
{
    if (bucket < (int) S_EXACT)
        return (uint64_t) bucket;
    int shift = (bucket - (int) S_EXACT) / (int) S_SUB + 1;
    uint64_t mantissa = (uint64_t) ((bucket - (int) S_EXACT) % (int) S_SUB) + S_SUB;
    return mantissa << shift;
}

uint64_t
histogram_bucket_high (int bucket)
{
    if (bucket < (int) S_EXACT)
        return (uint64_t) bucket;
    int shift = (bucket - (int) S_EXACT) / (int) S_SUB + 1;
    return histogram_bucket_low (bucket) + ((uint64_t) 1 << shift) - 1;
}

histogram_t *
histogram_new (void)
{
    return calloc (1, sizeof (histogram_t));
}

void
histogram_destroy (histogram_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

void
histogram_record_n (histogram_t *self, uint64_t value, uint64_t count)
{
    if (count == 0)
        return;
    self->counts[histogram_bucket (value)] += count;
    if (self->total == 0 || value < self->min)
        self->min = value;
    if (value > self->max)
        self->max = value;
    self->total += count;
    self->sum += (long double) value * count;
}

void
histogram_record (histogram_t *self, uint64_t value)
{
    histogram_record_n (self, value, 1);
}

void
histogram_merge (histogram_t *self, const histogram_t *other)
{
    if (other->total == 0)
        return;
    for (int i = 0; i < (int) S_BUCKETS; i++)
        self->counts[i] += other->counts[i];
    if (self->total == 0 || other->min < self->min)
        self->min = other->min;
    if (other->max > self->max)
        self->max = other->max;
    self->total += other->total;
    self->sum += other->sum;
}

void
histogram_reset (histogram_t *self)
{
    memset (self, 0, sizeof *self);
}

uint64_t histogram_count (const histogram_t *self) { return self->total; }
uint64_t histogram_min (const histogram_t *self) { return self->min; }
uint64_t histogram_max (const histogram_t *self) { return self->max; }

double
histogram_mean (const histogram_t *self)
{
    return self->total ? (double) (self->sum / self->total) : 0.0;
}

uint64_t
histogram_percentile (const histogram_t *self, double p)
{
    if (self->total == 0)
        return 0;
    if (p <= 0)
        return self->min;
    if (p >= 100)
        return self->max;
    uint64_t rank = (uint64_t) ceill ((long double) p / 100.0L * self->total);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < (int) S_BUCKETS; i++) {
        seen += self->counts[i];
        if (seen >= rank) {
            uint64_t high = histogram_bucket_high (i);
            return high < self->max ? (high > self->min ? high : self->min) : self->max;
        }
    }
    return self->max;
}
