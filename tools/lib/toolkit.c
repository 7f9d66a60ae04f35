/*  tools/lib/toolkit.c — see toolkit.h. */
#include "toolkit.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void
s_copy_key (char *out, const char *value)
{
    snprintf (out, 41, "%s", value ? value : "");
}

void
tool_curve_from_env (tool_curve_t *curve)
{
    memset (curve, 0, sizeof *curve);
    s_copy_key (curve->server, getenv ("PARLEY_CURVE_SERVER_KEY"));
    s_copy_key (curve->public_key, getenv ("PARLEY_CURVE_PUBLIC_KEY"));
    s_copy_key (curve->secret_key, getenv ("PARLEY_CURVE_SECRET_KEY"));
}

int
tool_curve_option (tool_curve_t *curve, int argc, char *argv[], int *i)
{
    const char *name = argv[*i];
    char *out = streq (name, "--server-key") ? curve->server
              : streq (name, "--public-key") ? curve->public_key
              : streq (name, "--secret-key") ? curve->secret_key : NULL;
    if (!out)
        return 0;
    if (*i + 1 >= argc || strlen (argv[*i + 1]) != 40) {
        fprintf (stderr, "%s: expects a 40-character Z85 key\n", name);
        return -1;
    }
    s_copy_key (out, argv[++*i]);
    return 1;
}

zsock_t *
tool_connect (int type, const char *endpoint, const tool_curve_t *curve, char *error,
              size_t error_size)
{
    zsock_t *sock = zsock_new (type);
    if (!sock) {
        snprintf (error, error_size, "cannot create a socket");
        return NULL;
    }
    zsock_set_linger (sock, 0);
    if (curve && curve->server[0]) {
        if (!curve->public_key[0] || !curve->secret_key[0]) {
            snprintf (error, error_size,
                      "--server-key needs this client's --public-key and --secret-key");
            zsock_destroy (&sock);
            return NULL;
        }
        zsock_set_curve_serverkey (sock, curve->server);
        zsock_set_curve_publickey (sock, curve->public_key);
        zsock_set_curve_secretkey (sock, curve->secret_key);
    }
    if (zsock_connect (sock, "%s", endpoint) != 0) {
        snprintf (error, error_size, "cannot connect to %s: %s", endpoint,
                  zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
    }
    return sock;
}

int
tool_keygen (FILE *out)
{
    char public_key[41], secret_key[41];
    if (zmq_curve_keypair (public_key, secret_key) != 0)
        return -1;
    tool_print_line (out, json_pack ("{s:s s:s}", "public", public_key, "secret", secret_key));
    return 0;
}

/* Copies an optional header string of the JSON form; false when invalid. */
static bool
s_header (const json_t *json, const char *name, char *out, char *error, size_t error_size)
{
    const json_t *value = json_object_get (json, name);
    if (!value || json_is_null (value))
        return true;
    if (!json_is_string (value) || json_string_length (value) > ENVELOPE_ID_MAX) {
        snprintf (error, error_size, "%s: expected a string of at most %d bytes", name,
                  ENVELOPE_ID_MAX);
        return false;
    }
    memcpy (out, json_string_value (value), json_string_length (value) + 1);
    return true;
}

envelope_t *
tool_envelope_from_json (const json_t *json, char *error, size_t error_size)
{
    if (!json_is_object (json)) {
        snprintf (error, error_size, "an envelope is a JSON object");
        return NULL;
    }
    const json_t *v = json_object_get (json, "v");
    if (v && !(json_is_integer (v) && json_integer_value (v) == ENVELOPE_VERSION)) {
        snprintf (error, error_size, "v: must be %d", ENVELOPE_VERSION);
        return NULL;
    }
    const char *type = json_string_value (json_object_get (json, "type"));
    envelope_type_t t = envelope_type_from_name (type);
    if (t == ENVELOPE_INVALID) {
        snprintf (error, error_size, "type: %s", type ? "unknown envelope type" : "required");
        return NULL;
    }
    envelope_t *env = envelope_new (t);
    const json_t *ts = json_object_get (json, "ts");
    const json_t *body = json_object_get (json, "body");
    if (!s_header (json, "id", env->id, error, error_size)
        || !s_header (json, "user", env->user, error, error_size)
        || !s_header (json, "room", env->room, error, error_size)
        || !s_header (json, "re", env->re, error, error_size))
        goto fail;
    if (!env->id[0]) {                    /* "id": "" asks for a fresh one */
        envelope_t *fresh = envelope_new (t);
        memcpy (env->id, fresh->id, sizeof env->id);
        envelope_destroy (&fresh);
    }
    if (ts && !json_is_null (ts)) {
        if (!json_is_integer (ts)) {
            snprintf (error, error_size, "ts: expected an integer (ms since the epoch)");
            goto fail;
        }
        env->ts = json_integer_value (ts);
    }
    if (body && !json_is_null (body))
        envelope_set_body (env, json_deep_copy (body));
    char detail[160];
    envelope_err_t err = envelope_validate_body (t, env->body, detail, sizeof detail);
    if (err != ENVELOPE_ERR_OK) {
        snprintf (error, error_size, "%s", detail[0] ? detail : envelope_err_string (err));
        goto fail;
    }
    return env;
fail:
    envelope_destroy (&env);
    return NULL;
}

json_t *
tool_envelope_to_json (const envelope_t *env)
{
    json_t *json = json_pack ("{s:i s:s s:s s:I}", "v", ENVELOPE_VERSION, "type",
                              envelope_type_name (env->type), "id", env->id, "ts",
                              (json_int_t) env->ts);
    const char *names[] = { "user", "room", "re", "from" };
    const char *values[] = { env->user, env->room, env->re, env->from };
    for (size_t i = 0; i < 4; i++)
        if (values[i][0])
            json_object_set_new (json, names[i], json_string (values[i]));
    json_object_set (json, "body", env->body);
    return json;
}

int
tool_send_envelope (zsock_t *sock, const envelope_t *env)
{
    char *data = NULL;
    size_t size = 0;
    envelope_err_t err;
    if (envelope_encode (env, &data, &size, &err) != 0)
        return -1;
    int rc = zmq_send (zsock_resolve (sock), data, size, 0) < 0 ? -1 : 0;
    free (data);
    return rc;
}

void
tool_print_line (FILE *out, json_t *json)
{
    char *text = json ? json_dumps (json, JSON_COMPACT) : NULL;
    if (text) {
        fputs (text, out);
        fputc ('\n', out);
        fflush (out);
    }
    free (text);
    json_decref (json);
}

int64_t
tool_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
tool_mono_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int
tool_parse_long (const char *text, long min, long max, long *out)
{
    if (!text || !*text)
        return -1;
    char *end;
    errno = 0;
    long value = strtol (text, &end, 10);
    if (errno || *end || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

int
tool_parse_double (const char *text, double min, double max, double *out)
{
    if (!text || !*text)
        return -1;
    char *end;
    errno = 0;
    double value = strtod (text, &end);
    if (errno || *end || !isfinite (value) || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

bool
tool_is_loopback (const char *endpoint)
{
    if (strncmp (endpoint, "ipc://", 6) == 0 || strncmp (endpoint, "inproc://", 9) == 0)
        return true;
    const char *host = strstr (endpoint, "://");
    host = host ? host + 3 : endpoint;
    if (strncmp (host, "[::1]", 5) == 0)
        return true;
    size_t length = strcspn (host, ":/");
    if (length == 9 && strncmp (host, "localhost", 9) == 0)
        return true;
    if (length < 4 || strncmp (host, "127.", 4) != 0)
        return false;
    return strspn (host, "0123456789.") >= length;
}
