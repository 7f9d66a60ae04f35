/*  gateway/metrics.c — counters and the Prometheus text rendering. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metrics_t {
    char gateway[48];
    json_t *http;      /* "200" -> count      */
    json_t *local;     /* name -> value       */
    json_t *actors;    /* actor -> stats body */
};

metrics_t *
metrics_new (const char *gateway_name)
{
    metrics_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    snprintf (self->gateway, sizeof self->gateway, "%s", gateway_name);
    self->http = json_object ();
    self->local = json_object ();
    self->actors = json_object ();
    return self;
}

void
metrics_destroy (metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    json_decref ((*self_p)->http);
    json_decref ((*self_p)->local);
    json_decref ((*self_p)->actors);
    free (*self_p);
    *self_p = NULL;
}

static void
s_add (json_t *object, const char *key, int64_t delta)
{
    json_t *value = json_object_get (object, key);
    json_object_set_new (object, key,
                         json_integer ((value ? json_integer_value (value) : 0) + delta));
}

void
metrics_http (metrics_t *self, int status)
{
    char key[8];
    snprintf (key, sizeof key, "%d", status);
    s_add (self->http, key, 1);
}

void
metrics_add (metrics_t *self, const char *name, int64_t delta)
{
    s_add (self->local, name, delta);
}

void
metrics_actor (metrics_t *self, const json_t *stats)
{
    const char *actor = json_string_value (json_object_get (stats, "actor"));
    if (actor)
        json_object_set_new (self->actors, actor, json_deep_copy (stats));
}

char *
metrics_render (metrics_t *self, size_t *size)
{
    char *text = NULL;
    FILE *out = open_memstream (&text, size);
    const char *key;
    json_t *value;
    fprintf (out, "# HELP parley_http_requests_total HTTP requests answered, by status.\n"
                  "# TYPE parley_http_requests_total counter\n");
    json_object_foreach (self->http, key, value)
        fprintf (out, "parley_http_requests_total{gateway=\"%s\",status=\"%s\"} %lld\n",
                 self->gateway, key, (long long) json_integer_value (value));
    json_object_foreach (self->local, key, value)
        fprintf (out, "# TYPE parley_%s gauge\nparley_%s{gateway=\"%s\"} %lld\n", key,
                 key, self->gateway, (long long) json_integer_value (value));
    fprintf (out, "# HELP parley_actor_envelopes_total Envelopes handled, by actor.\n"
                  "# TYPE parley_actor_envelopes_total counter\n");
    json_object_foreach (self->actors, key, value)
        fprintf (out, "parley_actor_envelopes_total{actor=\"%s\"} %lld\n", key,
                 (long long) json_integer_value (json_object_get (value, "handled")));
    fprintf (out, "# HELP parley_actor_mailbox_depth Largest backlog drained in the last second.\n"
                  "# TYPE parley_actor_mailbox_depth gauge\n");
    json_object_foreach (self->actors, key, value)
        fprintf (out, "parley_actor_mailbox_depth{actor=\"%s\"} %lld\n", key,
                 (long long) json_integer_value (json_object_get (value, "depth")));
    json_object_foreach (self->actors, key, value) {
        const char *figure;
        json_t *n;
        json_object_foreach (json_object_get (value, "figures"), figure, n)
            fprintf (out, "parley_actor_%s{actor=\"%s\"} %lld\n", figure, key,
                     (long long) json_integer_value (n));
    }
    fclose (out);
    return text;
}
