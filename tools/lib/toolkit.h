/*  tools/lib/toolkit.h — what Parley's command-line tools share: envelopes
 *  to and from JSON (through the one codec, schema/envelope.h), ZeroMQ
 *  client sockets with optional CURVE keys, clocks, option parsing helpers.
 *
 *  Prefix `tool_`. Nothing here keeps state between calls.
 */
#ifndef PARLEY_TOOLKIT_H
#define PARLEY_TOOLKIT_H

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "envelope.h"

#define TOOL_INJECT_ENDPOINT "tcp://127.0.0.1:5560"
#define TOOL_EVENTS_ENDPOINT "tcp://127.0.0.1:5561"

/* CURVE client keys (Z85, 40 characters each); all empty: plain TCP. */
typedef struct {
    char server[41];       /* the server's public key (--server-key)      */
    char public_key[41];   /* this client's (--public-key)                */
    char secret_key[41];   /* this client's (--secret-key)                */
} tool_curve_t;

/* Reads PARLEY_CURVE_SERVER_KEY, _PUBLIC_KEY, _SECRET_KEY defaults. */
void tool_curve_from_env (tool_curve_t *curve);

/* Handles --server-key/--public-key/--secret-key KEY at argv[*i] (moving
   *i past the value). 1 consumed, 0 not a CURVE option, -1 bad value. */
int tool_curve_option (tool_curve_t *curve, int argc, char *argv[], int *i);

/* The --help lines of the CURVE options. */
#define TOOL_CURVE_HELP                                                          \
    "  --server-key Z85     the server's CURVE public key (curve_secret_key's pair)\n" \
    "  --public-key Z85     this client's CURVE public key (in curve_allowed_clients)\n" \
    "  --secret-key Z85     this client's CURVE secret key\n"                     \
    "                       (defaults: PARLEY_CURVE_SERVER_KEY, _PUBLIC_KEY, _SECRET_KEY)\n"

/* Creates a socket of `type` connected to `endpoint`, a CURVE client when
   `curve` has a server key (the client keys are then required). NULL with
   a message in `error`. Caller owns return value. */
zsock_t *tool_connect (int type, const char *endpoint, const tool_curve_t *curve,
                       char *error, size_t error_size);

/* Prints a new CURVE key pair as one JSON line {"public", "secret"}. */
int tool_keygen (FILE *out);

/* Builds an envelope from its JSON form {v?, type, id?, ts?, user?, room?,
   re?, body?}: id defaults to a fresh UUID, ts to now, body to {}; the
   codec checks the body against the type's spec. NULL with a message.
   Caller owns return value. */
envelope_t *tool_envelope_from_json (const json_t *json, char *error, size_t error_size);

/* The JSON form of an envelope (caller owns). */
json_t *tool_envelope_to_json (const envelope_t *env);

/* Encodes and sends an envelope as one frame; 0 or -1. */
int tool_send_envelope (zsock_t *sock, const envelope_t *env);

/* Prints `json` as one compact line and flushes; takes `json`. */
void tool_print_line (FILE *out, json_t *json);

/* Clocks: wall ms since the epoch; monotonic ns. */
int64_t tool_now_ms (void);
int64_t tool_mono_ns (void);

/* Parses a decimal number option value; 0 or -1. */
int tool_parse_long (const char *text, long min, long max, long *out);
int tool_parse_double (const char *text, double min, double max, double *out);

/* Is the endpoint or URL's host a loopback address (127.x, ::1, localhost)? */
bool tool_is_loopback (const char *endpoint_or_url);

#endif
