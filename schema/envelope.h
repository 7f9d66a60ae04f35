/*  schema/envelope.h — Parley's one envelope codec.
 *
 *  Every actor and tool exchanges msgpack envelopes:
 *      {v: 1, type: str, id: str, ts: int (ms since epoch),
 *       user?: str, room?: str, re?: str, from?: str, body: map}
 *  `re` names the id of the envelope this one answers; `from` names the
 *  actor mailbox an answer goes to (internal). The body's shape per type is
 *  declared once in schema/envelopes.def and checked on decode and encode.
 *
 *  Bodies are held as jansson values: the codec converts msgpack <-> JSON
 *  exactly (int64 stays int64, binary is refused, map keys must be strings).
 *  This is the only module of Parley that includes msgpack.h.
 */
#ifndef PARLEY_ENVELOPE_H
#define PARLEY_ENVELOPE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define ENVELOPE_VERSION   1
#define ENVELOPE_MAX_BYTES (2 * 1024 * 1024)  /* a whole encoded envelope   */
#define ENVELOPE_MAX_DEPTH 32                 /* nesting of maps and arrays */
#define ENVELOPE_ID_MAX    64                 /* id, re, user, room, from   */
#define ENVELOPE_STR_MAX   (1024 * 1024)      /* a `str` field of a body    */
#define ENVELOPE_MAX_VALUES 131072            /* scalars, maps and arrays  */
/*  Limits, the same on encode and decode:
 *  - values: every scalar, map and array counts one (map keys do not); more
 *    is ENVELOPE_ERR_TOO_LARGE, which keeps 2 MiB of msgpack from becoming
 *    hundreds of MiB of JSON (an empty map costs ~250 bytes in jansson);
 *  - depth: a value given to the generic converters may nest
 *    ENVELOPE_MAX_DEPTH maps and arrays (like a REST JSON body); in an
 *    envelope each body field's value may, the envelope and body maps
 *    coming on top;
 *  - strings: valid UTF-8 without NUL (what jansson parses by default),
 *    else ENVELOPE_ERR_BAD_UTF8; duplicate map keys are MALFORMED. */

typedef enum {
    ENVELOPE_INVALID = 0,
#define ENVELOPE(e, name, spec) ENVELOPE_##e,
#include "envelopes.def"
#undef ENVELOPE
    ENVELOPE_TYPE_COUNT
} envelope_type_t;

/* Why a decode or encode failed: one table for codes and their strings. */
#define ENVELOPE_ERRORS(X)                                         \
    X (OK,          "ok")                                          \
    X (MALFORMED,   "not a well-formed msgpack map")               \
    X (TRUNCATED,   "truncated")                                   \
    X (TOO_LARGE,   "envelope too large")                          \
    X (TOO_DEEP,    "nesting too deep")                            \
    X (VERSION,     "unsupported envelope version")                \
    X (UNKNOWN_TYPE,"unknown envelope type")                       \
    X (MISSING,     "required field missing")                      \
    X (WRONG_TYPE,  "field has the wrong type")                    \
    X (TOO_LONG,    "field too long")                              \
    X (BAD_UTF8,    "invalid UTF-8")

typedef enum {
#define X(e, s) ENVELOPE_ERR_##e,
    ENVELOPE_ERRORS (X)
#undef X
} envelope_err_t;

typedef struct {
    envelope_type_t type;
    char id[ENVELOPE_ID_MAX + 1];    /* correlation id; never empty       */
    int64_t ts;                      /* ms since epoch                     */
    char user[ENVELOPE_ID_MAX + 1];  /* "" when absent                     */
    char room[ENVELOPE_ID_MAX + 1];  /* "" when absent                     */
    char re[ENVELOPE_ID_MAX + 1];    /* "" when absent                     */
    char from[ENVELOPE_ID_MAX + 1];  /* "" when absent                     */
    json_t *body;                    /* a JSON object, owned; never NULL   */
} envelope_t;

/* Creates an envelope of `type` with a fresh random id, ts = now, and an
   empty body. Caller owns return value; NULL only on out of memory. */
envelope_t *envelope_new (envelope_type_t type);

/* Destroys an envelope and its body; accepts NULL, nulls the pointer. */
void envelope_destroy (envelope_t **self_p);

/* Sets the body, taking ownership of `body` (a JSON object). */
void envelope_set_body (envelope_t *self, json_t *body);

/* Encodes to msgpack. On success returns 0 and sets *data (caller frees with
   free()) and *size. Validates the body against the type's spec first. */
int envelope_encode (const envelope_t *self, char **data, size_t *size,
                     envelope_err_t *err);

/* Decodes and validates msgpack bytes. Returns a new envelope (caller owns)
   or NULL with *err set and, when `detail` is given, a short message naming
   the field (at most detail_size bytes, NUL-terminated). Never asserts. */
envelope_t *envelope_decode (const void *data, size_t size, envelope_err_t *err,
                             char *detail, size_t detail_size);

/* Reads the `id` of an envelope that may not decode (for an error reply),
   even one too large: scans the top-level map for "id", skipping other
   values with the decoder's depth and value-count bounds. 0 with the id copied (NUL-terminated), or -1 when no
   string id of at most ENVELOPE_ID_MAX bytes can be read. */
int envelope_peek_id (const void *data, size_t size, char *id, size_t id_size);

/* Checks a body against a type's spec. Returns ENVELOPE_ERR_OK or the cause,
   writing the offending field's name into `detail` when given. */
envelope_err_t envelope_validate_body (envelope_type_t type, const json_t *body,
                                       char *detail, size_t detail_size);

/* Checks a body against a spec string in envelopes.def syntax
   ("content:str! reply_to:uuid"); envelope_validate_body uses it with the
   type's spec. A malformed spec gives ENVELOPE_ERR_MALFORMED. */
envelope_err_t envelope_validate_spec (const char *spec, const json_t *body,
                                       char *detail, size_t detail_size);

/* The wire name of a type ("message.send"), or NULL for an invalid type. */
const char *envelope_type_name (envelope_type_t type);

/* The type for a wire name, or ENVELOPE_INVALID. */
envelope_type_t envelope_type_from_name (const char *name);

/* A stable snake_case code for an error ("malformed") and its message. */
const char *envelope_err_code (envelope_err_t err);
const char *envelope_err_string (envelope_err_t err);

/* Generic msgpack <-> JSON conversion used by the codec, also for WebSocket
   binary frames (subprotocol parley.msgpack). Same limits and checks. */
int envelope_json_to_msgpack (const json_t *value, char **data, size_t *size);
json_t *envelope_msgpack_to_json (const void *data, size_t size,
                                  envelope_err_t *err);

#endif
