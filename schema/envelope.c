/*  schema/envelope.c — the envelope codec: msgpack <-> envelope_t / jansson.
 *
 *  The only file of Parley that includes msgpack.h. It owns no state: the
 *  type table comes from envelopes.def at compile time, body specs are read
 *  on the fly at each validation, and nothing here is mutable or static.
 *
 *  Decoding reads msgpack with a bounds-checked reader of its own rather
 *  than msgpack_unpack_next, for three reasons measured on msgpack-c 4.0:
 *  the unpacker allocates count * 16 bytes up front for an array or map
 *  header (five bytes of input ask for 64 GiB), it reports "nesting deeper
 *  than its compiled-in stack of 32" and "out of memory" with the same code,
 *  and that stack of 32 cannot hold an envelope whose body carries a JSON
 *  document of the depth the REST API accepts (32, plus envelope and body).
 *  Encoding uses msgpack-c's packer and sbuffer.
 */
#include "envelope.h"

#include <math.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The envelope map and its body map come on top of a body field's value. */
#define S_WIRE_DEPTH (ENVELOPE_MAX_DEPTH + 2)

/* --- the tables ---------------------------------------------------------- */

static const char *const s_type_names[] = {
    [ENVELOPE_INVALID] = NULL,
#define ENVELOPE(e, name, spec) [ENVELOPE_##e] = name,
#include "envelopes.def"
#undef ENVELOPE
};

static const char *const s_type_specs[] = {
    [ENVELOPE_INVALID] = NULL,
#define ENVELOPE(e, name, spec) [ENVELOPE_##e] = spec,
#include "envelopes.def"
#undef ENVELOPE
};

enum {
#define X(e, s) +1
    S_ERR_COUNT = 0 ENVELOPE_ERRORS (X)
#undef X
};

static const char *const s_err_strings[] = {
#define X(e, s) [ENVELOPE_ERR_##e] = s,
    ENVELOPE_ERRORS (X)
#undef X
};

/* snake_case of each enum name; the unit test checks they match. */
static const char *const s_err_codes[] = {
    [ENVELOPE_ERR_OK] = "ok",
    [ENVELOPE_ERR_MALFORMED] = "malformed",
    [ENVELOPE_ERR_TRUNCATED] = "truncated",
    [ENVELOPE_ERR_TOO_LARGE] = "too_large",
    [ENVELOPE_ERR_TOO_DEEP] = "too_deep",
    [ENVELOPE_ERR_VERSION] = "version",
    [ENVELOPE_ERR_UNKNOWN_TYPE] = "unknown_type",
    [ENVELOPE_ERR_MISSING] = "missing",
    [ENVELOPE_ERR_WRONG_TYPE] = "wrong_type",
    [ENVELOPE_ERR_TOO_LONG] = "too_long",
    [ENVELOPE_ERR_BAD_UTF8] = "bad_utf8",
};
_Static_assert (sizeof s_err_codes / sizeof s_err_codes[0] == S_ERR_COUNT,
                "s_err_codes must list every ENVELOPE_ERRORS entry");

/* --- small helpers ------------------------------------------------------- */

/* Writes a message into the caller's detail buffer, if there is one. */
static void
s_detail (char *detail, size_t detail_size, const char *format, ...)
{
    if (!detail || detail_size == 0)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (detail, detail_size, format, args);
    va_end (args);
}

/* Checks that `bytes` is well-formed UTF-8 (RFC 3629: no overlong forms, no
   surrogates, nothing above U+10FFFF) without NUL, which jansson's parser
   refuses by default and PostgreSQL text cannot hold. */
static bool
s_text_ok (const uint8_t *bytes, size_t size)
{
    size_t i = 0;
    while (i < size) {
        /* ASCII without NUL, eight bytes at a time (most JSON text) */
        while (size - i >= 8) {
            uint64_t w;
            memcpy (&w, bytes + i, 8);
            if (((w | ((w - 0x0101010101010101ull) & ~w)) & 0x8080808080808080ull) != 0)
                break;
            i += 8;
        }
        if (i == size)
            break;
        uint8_t c = bytes[i];
        if (c >= 0x01 && c <= 0x7f) {
            i++;
            continue;
        }
        size_t extra;
        uint8_t lo = 0x80, hi = 0xbf;  /* range of the second byte */
        if (c >= 0xc2 && c <= 0xdf)
            extra = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            if (c == 0xe0)
                lo = 0xa0;              /* overlong */
            else if (c == 0xed)
                hi = 0x9f;              /* surrogates */
        }
        else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            if (c == 0xf0)
                lo = 0x90;              /* overlong */
            else if (c == 0xf4)
                hi = 0x8f;              /* above U+10FFFF */
        }
        else
            return false;               /* NUL, continuation, C0, C1, F5..FF */
        if (size - i <= extra)
            return false;
        if (bytes[i + 1] < lo || bytes[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= extra; k++)
            if (bytes[i + k] < 0x80 || bytes[i + k] > 0xbf)
                return false;
        i += extra + 1;
    }
    return true;
}

/* Is `text` a canonical 8-4-4-4-12 hex UUID (either case)? */
static bool
s_is_uuid (const char *text, size_t size)
{
    if (size != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        char c = text[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        }
        else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                   || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

/* --- msgpack reader: bytes -> jansson ----------------------------------- */

typedef struct {
    const uint8_t *start;
    const uint8_t *p;
    const uint8_t *end;
    int max_depth;
    size_t budget;               /* values still allowed */
    envelope_err_t err;
    size_t err_at;               /* byte offset of the first error */
} s_reader_t;

static json_t *s_read_value (s_reader_t *r, int depth);

/* Records the first error and its offset; returns NULL for tail calls. */
static void *
s_fail (s_reader_t *r, envelope_err_t err, const uint8_t *at)
{
    if (r->err == ENVELOPE_ERR_OK) {
        r->err = err;
        r->err_at = (size_t) (at - r->start);
    }
    return NULL;
}

/* A jansson constructor's result; NULL from it means out of memory. */
static json_t *
s_made (s_reader_t *r, json_t *value)
{
    if (!value)
        s_fail (r, ENVELOPE_ERR_TOO_LARGE, r->p);
    return value;
}

/* Takes `size` bytes; false (TRUNCATED) when the input ends first. */
static bool
s_take (s_reader_t *r, size_t size, const uint8_t **bytes)
{
    if ((size_t) (r->end - r->p) < size) {
        s_fail (r, ENVELOPE_ERR_TRUNCATED, r->end);
        return false;
    }
    *bytes = r->p;
    r->p += size;
    return true;
}

/* Reads a big-endian unsigned integer of `width` bytes (1, 2, 4 or 8). */
static bool
s_take_uint (s_reader_t *r, size_t width, uint64_t *value)
{
    const uint8_t *bytes;
    if (!s_take (r, width, &bytes))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v = (v << 8) | bytes[i];
    *value = v;
    return true;
}

/* For a string tag (fixstr, str8/16/32), reads its length; else false. */
static bool
s_str_length (s_reader_t *r, uint8_t tag, size_t *length)
{
    uint64_t n;
    if (tag >= 0xa0 && tag <= 0xbf)
        n = tag & 0x1f;
    else if (tag == 0xd9 || tag == 0xda || tag == 0xdb) {
        if (!s_take_uint (r, (size_t) 1 << (tag - 0xd9), &n))
            return false;
    }
    else
        return false;
    *length = (size_t) n;
    return true;
}

/* Reads `length` bytes of text, checked; *text points into the input. */
static bool
s_take_text (s_reader_t *r, size_t length, const char **text)
{
    const uint8_t *bytes;
    if (!s_take (r, length, &bytes))
        return false;
    if (!s_text_ok (bytes, length)) {
        s_fail (r, ENVELOPE_ERR_BAD_UTF8, bytes);
        return false;
    }
    *text = (const char *) bytes;
    return true;
}

static json_t *
s_read_array (s_reader_t *r, uint64_t count, int depth, const uint8_t *at)
{
    if (depth + 1 > r->max_depth)
        return s_fail (r, ENVELOPE_ERR_TOO_DEEP, at);
    json_t *array = s_made (r, json_array ());
    for (uint64_t i = 0; array && i < count; i++) {
        json_t *item = s_read_value (r, depth + 1);
        if (!item || json_array_append_new (array, item) != 0) {
            s_fail (r, ENVELOPE_ERR_TOO_LARGE, r->p);  /* only if not set */
            json_decref (array);
            array = NULL;
        }
    }
    return array;
}

/* Reads a map key: a string (else MALFORMED) of checked text. */
static bool
s_read_key (s_reader_t *r, const char **key, size_t *length)
{
    const uint8_t *at = r->p, *tag;
    if (!s_take (r, 1, &tag))
        return false;
    if (!s_str_length (r, *tag, length)) {
        if (r->err == ENVELOPE_ERR_OK)
            s_fail (r, ENVELOPE_ERR_MALFORMED, at);
        return false;
    }
    return s_take_text (r, *length, key);
}

static json_t *
s_read_map (s_reader_t *r, uint64_t count, int depth, const uint8_t *at)
{
    if (depth + 1 > r->max_depth)
        return s_fail (r, ENVELOPE_ERR_TOO_DEEP, at);
    json_t *map = s_made (r, json_object ());
    for (uint64_t i = 0; map && i < count; i++) {
        const uint8_t *key_at = r->p;
        const char *key = NULL;
        size_t length = 0;
        json_t *value = NULL;
        if (s_read_key (r, &key, &length)) {
            if (json_object_getn (map, key, length))
                s_fail (r, ENVELOPE_ERR_MALFORMED, key_at);   /* duplicate key */
            else
                value = s_read_value (r, depth + 1);
        }
        if (!value || json_object_setn_new_nocheck (map, key, length, value) != 0) {
            s_fail (r, ENVELOPE_ERR_TOO_LARGE, r->p);       /* only if not set */
            json_decref (map);
            map = NULL;
        }
    }
    return map;
}

static json_t *
s_read_int (s_reader_t *r, uint8_t tag, const uint8_t *at)
{
    uint64_t u;
    if (tag >= 0xcc && tag <= 0xcf) {              /* uint 8/16/32/64 */
        if (!s_take_uint (r, (size_t) 1 << (tag - 0xcc), &u))
            return NULL;
        if (u > INT64_MAX)
            return s_fail (r, ENVELOPE_ERR_WRONG_TYPE, at);
        return s_made (r, json_integer ((json_int_t) u));
    }
    size_t width = (size_t) 1 << (tag - 0xd0);     /* int 8/16/32/64 */
    if (!s_take_uint (r, width, &u))
        return NULL;
    int64_t v;
    if (width == 1)
        v = (int8_t) u;
    else if (width == 2)
        v = (int16_t) u;
    else if (width == 4)
        v = (int32_t) u;
    else
        v = (int64_t) u;
    return s_made (r, json_integer (v));
}

static json_t *
s_read_float (s_reader_t *r, uint8_t tag, const uint8_t *at)
{
    uint64_t bits;
    double value;
    if (!s_take_uint (r, tag == 0xca ? 4 : 8, &bits))
        return NULL;
    if (tag == 0xca) {
        uint32_t bits32 = (uint32_t) bits;
        float f;
        memcpy (&f, &bits32, sizeof f);
        value = f;
    }
    else
        memcpy (&value, &bits, sizeof value);
    if (!isfinite (value))                         /* JSON has no NaN, inf */
        return s_fail (r, ENVELOPE_ERR_WRONG_TYPE, at);
    return s_made (r, json_real (value));
}

/* Reads one value nested inside `depth` containers. NULL with r->err set. */
static json_t *
s_read_value (s_reader_t *r, int depth)
{
    const uint8_t *at = r->p, *b;
    if (!s_take (r, 1, &b))
        return NULL;
    if (r->budget == 0)
        return s_fail (r, ENVELOPE_ERR_TOO_LARGE, at);
    r->budget--;
    uint8_t tag = *b;
    uint64_t n;
    size_t length;
    const char *text;

    if (tag <= 0x7f)
        return s_made (r, json_integer (tag));
    if (tag >= 0xe0)
        return s_made (r, json_integer ((int8_t) tag));
    if (tag <= 0x8f)
        return s_read_map (r, tag & 0x0f, depth, at);
    if (tag <= 0x9f)
        return s_read_array (r, tag & 0x0f, depth, at);
    if (tag <= 0xbf || (tag >= 0xd9 && tag <= 0xdb)) {
        if (!s_str_length (r, tag, &length) || !s_take_text (r, length, &text))
            return NULL;
        return s_made (r, json_stringn_nocheck (text, length));
    }
    switch (tag) {
        case 0xc0: return json_null ();
        case 0xc2: return json_false ();
        case 0xc3: return json_true ();
        case 0xca: case 0xcb:
            return s_read_float (r, tag, at);
        case 0xcc: case 0xcd: case 0xce: case 0xcf:
        case 0xd0: case 0xd1: case 0xd2: case 0xd3:
            return s_read_int (r, tag, at);
        case 0xdc: case 0xdd:
            if (!s_take_uint (r, tag == 0xdc ? 2 : 4, &n))
                return NULL;
            return s_read_array (r, n, depth, at);
        case 0xde: case 0xdf:
            if (!s_take_uint (r, tag == 0xde ? 2 : 4, &n))
                return NULL;
            return s_read_map (r, n, depth, at);
        case 0xc4: case 0xc5: case 0xc6:               /* bin */
        case 0xc7: case 0xc8: case 0xc9:               /* ext */
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:  /* fixext */
            return s_fail (r, ENVELOPE_ERR_WRONG_TYPE, at);
        default:                                       /* 0xc1, never used */
            return s_fail (r, ENVELOPE_ERR_MALFORMED, at);
    }
}

/* Converts one whole msgpack value (nothing may follow it) to JSON. */
static json_t *
s_unpack (const void *data, size_t size, int max_depth, envelope_err_t *err,
          char *detail, size_t detail_size)
{
    if (size > ENVELOPE_MAX_BYTES) {
        *err = ENVELOPE_ERR_TOO_LARGE;
        s_detail (detail, detail_size, "%zu bytes, more than %d", size,
                  ENVELOPE_MAX_BYTES);
        return NULL;
    }
    if (!data && size > 0) {
        *err = ENVELOPE_ERR_MALFORMED;
        s_detail (detail, detail_size, "no data");
        return NULL;
    }
    static const uint8_t nothing[1] = { 0 };
    const uint8_t *bytes = data ? data : nothing;
    s_reader_t r = { bytes, bytes, bytes + size, max_depth, ENVELOPE_MAX_VALUES,
                     ENVELOPE_ERR_OK, 0 };
    json_t *value = s_read_value (&r, 0);
    if (value && r.p != r.end) {
        json_decref (value);
        value = s_fail (&r, ENVELOPE_ERR_MALFORMED, r.p);  /* trailing bytes */
    }
    *err = r.err;
    if (!value)
        s_detail (detail, detail_size, "%s at byte %zu", s_err_strings[r.err],
                  r.err_at);
    return value;
}

/* --- packer: jansson -> msgpack ----------------------------------------- */

typedef struct {
    msgpack_packer pk;
    int max_depth;
    size_t budget;               /* values still allowed, as on decode */
} s_writer_t;

/* Packs a JSON value nested inside `depth` containers. */
static envelope_err_t
s_pack (s_writer_t *w, const json_t *value, int depth)
{
    msgpack_packer *pk = &w->pk;
    int rc = 0;
    if (w->budget == 0)
        return ENVELOPE_ERR_TOO_LARGE;
    w->budget--;
    switch (json_typeof (value)) {
        case JSON_NULL: rc = msgpack_pack_nil (pk); break;
        case JSON_TRUE: rc = msgpack_pack_true (pk); break;
        case JSON_FALSE: rc = msgpack_pack_false (pk); break;
        case JSON_INTEGER:
            rc = msgpack_pack_int64 (pk, json_integer_value (value));
            break;
        case JSON_REAL: rc = msgpack_pack_double (pk, json_real_value (value)); break;
        case JSON_STRING: {
            const char *text = json_string_value (value);
            size_t length = json_string_length (value);
            if (!s_text_ok ((const uint8_t *) text, length))
                return ENVELOPE_ERR_BAD_UTF8;
            rc = msgpack_pack_str (pk, length) || msgpack_pack_str_body (pk, text, length);
            break;
        }
        case JSON_ARRAY: {
            if (depth + 1 > w->max_depth)
                return ENVELOPE_ERR_TOO_DEEP;
            size_t count = json_array_size (value);
            rc = msgpack_pack_array (pk, count);
            for (size_t i = 0; rc == 0 && i < count; i++) {
                envelope_err_t err = s_pack (w, json_array_get (value, i), depth + 1);
                if (err != ENVELOPE_ERR_OK)
                    return err;
            }
            break;
        }
        case JSON_OBJECT: {
            if (depth + 1 > w->max_depth)
                return ENVELOPE_ERR_TOO_DEEP;
            const char *key;
            size_t key_length;
            json_t *item;
            rc = msgpack_pack_map (pk, json_object_size (value));
            json_object_keylen_foreach ((json_t *) value, key, key_length, item) {
                if (!s_text_ok ((const uint8_t *) key, key_length))
                    return ENVELOPE_ERR_BAD_UTF8;
                rc = rc || msgpack_pack_str (pk, key_length)
                     || msgpack_pack_str_body (pk, key, key_length);
                if (rc != 0)
                    break;
                envelope_err_t err = s_pack (w, item, depth + 1);
                if (err != ENVELOPE_ERR_OK)
                    return err;
            }
            break;
        }
    }
    return rc == 0 ? ENVELOPE_ERR_OK : ENVELOPE_ERR_TOO_LARGE;  /* out of memory */
}

/* Hands the buffer to the caller if it is within ENVELOPE_MAX_BYTES. */
static envelope_err_t
s_release (msgpack_sbuffer *buffer, envelope_err_t err, char **data, size_t *size)
{
    if (err == ENVELOPE_ERR_OK && buffer->size > ENVELOPE_MAX_BYTES)
        err = ENVELOPE_ERR_TOO_LARGE;
    if (err == ENVELOPE_ERR_OK) {
        *size = buffer->size;
        *data = msgpack_sbuffer_release (buffer);
        if (!*data)                      /* an empty buffer was never allocated */
            err = ENVELOPE_ERR_TOO_LARGE;
    }
    msgpack_sbuffer_destroy (buffer);
    return err;
}

int
envelope_json_to_msgpack (const json_t *value, char **data, size_t *size)
{
    if (!value || !data || !size)
        return -1;
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    s_writer_t w = { .max_depth = ENVELOPE_MAX_DEPTH, .budget = ENVELOPE_MAX_VALUES };
    msgpack_packer_init (&w.pk, &buffer, msgpack_sbuffer_write);
    envelope_err_t err = s_pack (&w, value, 0);
    return s_release (&buffer, err, data, size) == ENVELOPE_ERR_OK ? 0 : -1;
}

json_t *
envelope_msgpack_to_json (const void *data, size_t size, envelope_err_t *err)
{
    envelope_err_t ignored;
    return s_unpack (data, size, ENVELOPE_MAX_DEPTH, err ? err : &ignored, NULL, 0);
}

/* --- peeking at an envelope that does not decode ------------------------ */

/* Skips one value nested inside `depth` containers, building nothing:
   bounds, depth and the value budget checked as when decoding. */
static bool
s_skip_value (s_reader_t *r, int depth)
{
    const uint8_t *b, *bytes;
    uint64_t n = 0;
    if (!s_take (r, 1, &b) || r->budget == 0)
        return false;
    r->budget--;
    uint8_t tag = *b;
    bool map = false;
    if (tag <= 0x7f || tag >= 0xe0 || tag == 0xc0 || tag == 0xc2 || tag == 0xc3)
        return true;
    if (tag <= 0x9f) {                                   /* fixmap, fixarray */
        map = tag <= 0x8f;
        n = tag & 0x0f;
    }
    else if (tag <= 0xbf)                                /* fixstr */
        return s_take (r, tag & 0x1f, &bytes);
    else if (tag == 0xc4 || tag == 0xc5 || tag == 0xc6)  /* bin 8/16/32 */
        return s_take_uint (r, (size_t) 1 << (tag - 0xc4), &n) && s_take (r, n, &bytes);
    else if (tag == 0xd9 || tag == 0xda || tag == 0xdb)  /* str 8/16/32 */
        return s_take_uint (r, (size_t) 1 << (tag - 0xd9), &n) && s_take (r, n, &bytes);
    else if (tag == 0xc7 || tag == 0xc8 || tag == 0xc9)  /* ext 8/16/32 */
        return s_take_uint (r, (size_t) 1 << (tag - 0xc7), &n) && s_take (r, n + 1, &bytes);
    else if (tag == 0xca || tag == 0xcb)                 /* float 32/64 */
        return s_take (r, tag == 0xca ? 4 : 8, &bytes);
    else if (tag >= 0xcc && tag <= 0xcf)                 /* uint */
        return s_take (r, (size_t) 1 << (tag - 0xcc), &bytes);
    else if (tag >= 0xd0 && tag <= 0xd3)                 /* int */
        return s_take (r, (size_t) 1 << (tag - 0xd0), &bytes);
    else if (tag >= 0xd4 && tag <= 0xd8)                 /* fixext 1..16 */
        return s_take (r, ((size_t) 1 << (tag - 0xd4)) + 1, &bytes);
    else if (tag >= 0xdc && tag <= 0xdf) {               /* array/map 16/32 */
        map = tag >= 0xde;
        if (!s_take_uint (r, (tag & 1) ? 4 : 2, &n))
            return false;
    }
    else
        return false;                                    /* 0xc1 */
    if (depth + 1 > r->max_depth)
        return false;
    for (uint64_t i = 0; i < (map ? 2 * n : n); i++)
        if (!s_skip_value (r, depth + 1))
            return false;
    return true;
}

int
envelope_peek_id (const void *data, size_t size, char *id, size_t id_size)
{
    if (id_size)
        id[0] = '\0';
    if (!data || size == 0)          /* any size: it only scans what is there */
        return -1;
    s_reader_t r = { data, data, (const uint8_t *) data + size, S_WIRE_DEPTH,
                     ENVELOPE_MAX_VALUES, ENVELOPE_ERR_OK, 0 };
    const uint8_t *tag;
    uint64_t count;
    if (!s_take (&r, 1, &tag))
        return -1;
    if (*tag >= 0x80 && *tag <= 0x8f)
        count = *tag & 0x0f;
    else if ((*tag != 0xde && *tag != 0xdf) || !s_take_uint (&r, *tag == 0xde ? 2 : 4, &count))
        return -1;
    for (uint64_t i = 0; i < count; i++) {
        const char *key;
        size_t length;
        if (!s_read_key (&r, &key, &length))
            return -1;
        if (length == 2 && memcmp (key, "id", 2) == 0) {
            json_t *value = s_read_value (&r, 1);
            int rc = json_is_string (value) && json_string_length (value) <= ENVELOPE_ID_MAX
                     && json_string_length (value) < id_size ? 0 : -1;
            if (rc == 0)
                memcpy (id, json_string_value (value), json_string_length (value) + 1);
            json_decref (value);
            return rc;
        }
        if (!s_skip_value (&r, 1))
            return -1;
    }
    return -1;
}

/* --- body specs ---------------------------------------------------------- */

typedef enum { S_STR, S_UUID, S_INT, S_BOOL, S_NUM, S_MAP, S_ARRAY, S_ANY } s_kind_t;

static const char *const s_kind_names[] = { "str", "uuid", "int", "bool",
                                            "num", "map", "array", "any" };
static const char *const s_kind_wanted[] = {
    "a string", "a UUID string", "an integer", "a boolean",
    "a number", "a map", "an array", "a value"
};

typedef struct {
    const char *name;
    size_t name_length;
    s_kind_t kind;
    bool required;
} s_field_t;

/* Reads the next `name:type[!]` token of a spec at *cursor. Returns 1 with
   `field` filled, 0 at the end, -1 for a malformed token (a programmer
   error in envelopes.def, reported rather than asserted). */
static int
s_spec_next (const char **cursor, s_field_t *field, bool *strict)
{
    const char *p = *cursor;
    while (*p == ' ')
        p++;
    if (*p == '\0')
        return 0;
    const char *end = p + strcspn (p, " ");
    *cursor = end;
    if ((size_t) (end - p) == strlen ("...strict") && memcmp (p, "...strict", 9) == 0) {
        *strict = true;
        return s_spec_next (cursor, field, strict);
    }
    const char *colon = memchr (p, ':', (size_t) (end - p));
    if (!colon || colon == p)
        return -1;
    field->name = p;
    field->name_length = (size_t) (colon - p);
    const char *type = colon + 1;
    size_t type_length = (size_t) (end - type);
    field->required = type_length > 0 && type[type_length - 1] == '!';
    if (field->required)
        type_length--;
    for (size_t k = 0; k < sizeof s_kind_names / sizeof s_kind_names[0]; k++)
        if (strlen (s_kind_names[k]) == type_length
            && memcmp (s_kind_names[k], type, type_length) == 0) {
            field->kind = (s_kind_t) k;
            return 1;
        }
    return -1;
}

/* Does `value` have the kind a field wants? TOO_LONG for long strings. */
static envelope_err_t
s_check_kind (s_kind_t kind, const json_t *value)
{
    switch (kind) {
        case S_STR:
            if (!json_is_string (value))
                return ENVELOPE_ERR_WRONG_TYPE;
            return json_string_length (value) > ENVELOPE_STR_MAX ? ENVELOPE_ERR_TOO_LONG
                                                                 : ENVELOPE_ERR_OK;
        case S_UUID:
            return json_is_string (value)
                           && s_is_uuid (json_string_value (value), json_string_length (value))
                       ? ENVELOPE_ERR_OK : ENVELOPE_ERR_WRONG_TYPE;
        case S_INT: return json_is_integer (value) ? ENVELOPE_ERR_OK : ENVELOPE_ERR_WRONG_TYPE;
        case S_BOOL: return json_is_boolean (value) ? ENVELOPE_ERR_OK : ENVELOPE_ERR_WRONG_TYPE;
        case S_NUM: return json_is_number (value) ? ENVELOPE_ERR_OK : ENVELOPE_ERR_WRONG_TYPE;
        case S_MAP: return json_is_object (value) ? ENVELOPE_ERR_OK : ENVELOPE_ERR_WRONG_TYPE;
        case S_ARRAY: return json_is_array (value) ? ENVELOPE_ERR_OK : ENVELOPE_ERR_WRONG_TYPE;
        case S_ANY: return ENVELOPE_ERR_OK;
    }
    return ENVELOPE_ERR_WRONG_TYPE;
}

/* With `...strict`: is every field of `body` listed in the spec? */
static envelope_err_t
s_check_unlisted (const char *spec, const json_t *body, char *detail, size_t detail_size)
{
    const char *key;
    size_t key_length;
    json_t *value;
    json_object_keylen_foreach ((json_t *) body, key, key_length, value) {
        const char *cursor = spec;
        s_field_t field;
        bool strict = false, listed = false;
        while (!listed && s_spec_next (&cursor, &field, &strict) == 1)
            listed = field.name_length == key_length
                     && memcmp (field.name, key, key_length) == 0;
        if (!listed) {
            s_detail (detail, detail_size, "body: unknown field");
            return ENVELOPE_ERR_WRONG_TYPE;
        }
    }
    return ENVELOPE_ERR_OK;
}

envelope_err_t
envelope_validate_spec (const char *spec, const json_t *body, char *detail,
                        size_t detail_size)
{
    s_detail (detail, detail_size, "%s", "");
    if (!spec) {
        s_detail (detail, detail_size, "type: no spec");
        return ENVELOPE_ERR_UNKNOWN_TYPE;
    }
    if (!body || json_is_null (body)) {
        s_detail (detail, detail_size, "body: required field missing");
        return ENVELOPE_ERR_MISSING;
    }
    if (!json_is_object (body)) {
        s_detail (detail, detail_size, "body: expected a map");
        return ENVELOPE_ERR_WRONG_TYPE;
    }
    const char *cursor = spec;
    s_field_t field;
    bool strict = false;
    int more;
    while ((more = s_spec_next (&cursor, &field, &strict)) == 1) {
        const json_t *value = json_object_getn (body, field.name, field.name_length);
        int n = (int) field.name_length;
        if (!value || json_is_null (value)) {
            if (!field.required)
                continue;
            s_detail (detail, detail_size, "body.%.*s: required field missing", n,
                      field.name);
            return ENVELOPE_ERR_MISSING;
        }
        envelope_err_t err = s_check_kind (field.kind, value);
        if (err == ENVELOPE_ERR_TOO_LONG)
            s_detail (detail, detail_size, "body.%.*s: longer than %d bytes", n,
                      field.name, ENVELOPE_STR_MAX);
        else if (err != ENVELOPE_ERR_OK)
            s_detail (detail, detail_size, "body.%.*s: expected %s", n, field.name,
                      s_kind_wanted[field.kind]);
        if (err != ENVELOPE_ERR_OK)
            return err;
    }
    if (more < 0) {
        s_detail (detail, detail_size, "spec: malformed near '%.20s'", cursor);
        return ENVELOPE_ERR_MALFORMED;
    }
    return strict ? s_check_unlisted (spec, body, detail, detail_size) : ENVELOPE_ERR_OK;
}

envelope_err_t
envelope_validate_body (envelope_type_t type, const json_t *body, char *detail,
                        size_t detail_size)
{
    if (!envelope_type_name (type)) {
        s_detail (detail, detail_size, "type: unknown envelope type");
        return ENVELOPE_ERR_UNKNOWN_TYPE;
    }
    return envelope_validate_spec (s_type_specs[type], body, detail, detail_size);
}

/* --- names --------------------------------------------------------------- */

const char *
envelope_type_name (envelope_type_t type)
{
    if ((int) type <= ENVELOPE_INVALID || type >= ENVELOPE_TYPE_COUNT)
        return NULL;
    return s_type_names[type];
}

envelope_type_t
envelope_type_from_name (const char *name)
{
    if (!name)
        return ENVELOPE_INVALID;
    for (int t = ENVELOPE_INVALID + 1; t < ENVELOPE_TYPE_COUNT; t++)
        if (strcmp (s_type_names[t], name) == 0)
            return (envelope_type_t) t;
    return ENVELOPE_INVALID;
}

const char *
envelope_err_code (envelope_err_t err)
{
    return (int) err >= 0 && (int) err < S_ERR_COUNT ? s_err_codes[err] : "unknown";
}

const char *
envelope_err_string (envelope_err_t err)
{
    return (int) err >= 0 && (int) err < S_ERR_COUNT ? s_err_strings[err] : "unknown error";
}

/* --- envelopes ----------------------------------------------------------- */

envelope_t *
envelope_new (envelope_type_t type)
{
    envelope_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->body = json_object ();
    if (!self->body || sodium_init () < 0) {
        envelope_destroy (&self);
        return NULL;
    }
    self->type = type;
    uint8_t u[16];
    randombytes_buf (u, sizeof u);
    u[6] = (uint8_t) ((u[6] & 0x0f) | 0x40);   /* version 4 */
    u[8] = (uint8_t) ((u[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
    snprintf (self->id, sizeof self->id,
              "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
              u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10],
              u[11], u[12], u[13], u[14], u[15]);
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    self->ts = (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
    return self;
}

void
envelope_destroy (envelope_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    json_decref ((*self_p)->body);
    free (*self_p);
    *self_p = NULL;
}

void
envelope_set_body (envelope_t *self, json_t *body)
{
    if (!self) {
        json_decref (body);
        return;
    }
    json_decref (self->body);
    /* A NULL body (a failed json_pack) leaves an empty one, so the body is
       never NULL and encoding reports the missing fields. */
    self->body = body ? body : json_object ();
}

/* The envelope's header strings, in wire order after v, type, id, ts. */
#define S_OPTIONAL_FIELDS(X) X (user) X (room) X (re) X (from)

/* Checks a header string before encoding: length and text. */
static envelope_err_t
s_check_header (const char *value, bool required)
{
    size_t length = strnlen (value, ENVELOPE_ID_MAX + 1);
    if (length > ENVELOPE_ID_MAX)
        return ENVELOPE_ERR_TOO_LONG;
    if (required && length == 0)
        return ENVELOPE_ERR_MISSING;
    return s_text_ok ((const uint8_t *) value, length) ? ENVELOPE_ERR_OK
                                                       : ENVELOPE_ERR_BAD_UTF8;
}

static int
s_pack_cstr (msgpack_packer *pk, const char *text)
{
    size_t length = strlen (text);
    return msgpack_pack_str (pk, length) || msgpack_pack_str_body (pk, text, length);
}

static envelope_err_t
s_check_envelope (const envelope_t *self)
{
    if (!envelope_type_name (self->type))
        return ENVELOPE_ERR_UNKNOWN_TYPE;
    envelope_err_t err = s_check_header (self->id, true);
#define X(field)                                                               \
    if (err == ENVELOPE_ERR_OK)                                                \
        err = s_check_header (self->field, false);
    S_OPTIONAL_FIELDS (X)
#undef X
    if (err == ENVELOPE_ERR_OK)
        err = envelope_validate_body (self->type, self->body, NULL, 0);
    return err;
}

int
envelope_encode (const envelope_t *self, char **data, size_t *size, envelope_err_t *err)
{
    envelope_err_t ignored;
    err = err ? err : &ignored;
    *err = self && data && size ? s_check_envelope (self) : ENVELOPE_ERR_MISSING;
    if (*err != ENVELOPE_ERR_OK)
        return -1;

    size_t fields = 5;
#define X(field) fields += self->field[0] != '\0';
    S_OPTIONAL_FIELDS (X)
#undef X
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    /* the body is the second level: its field values may nest MAX_DEPTH
       deep; the envelope map and its other values count as on decode */
    s_writer_t w = { .max_depth = S_WIRE_DEPTH, .budget = ENVELOPE_MAX_VALUES - fields };
    msgpack_packer *pk = &w.pk;
    msgpack_packer_init (pk, &buffer, msgpack_sbuffer_write);
    int rc = msgpack_pack_map (pk, fields)
             || s_pack_cstr (pk, "v") || msgpack_pack_int64 (pk, ENVELOPE_VERSION)
             || s_pack_cstr (pk, "type") || s_pack_cstr (pk, s_type_names[self->type])
             || s_pack_cstr (pk, "id") || s_pack_cstr (pk, self->id)
             || s_pack_cstr (pk, "ts") || msgpack_pack_int64 (pk, self->ts);
#define X(field)                                                               \
    if (rc == 0 && self->field[0] != '\0')                                     \
        rc = s_pack_cstr (pk, #field) || s_pack_cstr (pk, self->field);
    S_OPTIONAL_FIELDS (X)
#undef X
    if (rc == 0)
        rc = s_pack_cstr (pk, "body");
    *err = rc ? ENVELOPE_ERR_TOO_LARGE : s_pack (&w, self->body, 1);
    *err = s_release (&buffer, *err, data, size);
    return *err == ENVELOPE_ERR_OK ? 0 : -1;
}

/* Copies an optional or required header string out of the decoded map. */
static envelope_err_t
s_take_header (const json_t *map, const char *name, bool required, char *out,
               char *detail, size_t detail_size)
{
    const json_t *value = json_object_get (map, name);
    if (!value || json_is_null (value)) {
        if (!required)
            return ENVELOPE_ERR_OK;
        s_detail (detail, detail_size, "%s: required field missing", name);
        return ENVELOPE_ERR_MISSING;
    }
    if (!json_is_string (value)) {
        s_detail (detail, detail_size, "%s: expected a string", name);
        return ENVELOPE_ERR_WRONG_TYPE;
    }
    size_t length = json_string_length (value);
    if (length > ENVELOPE_ID_MAX) {
        s_detail (detail, detail_size, "%s: longer than %d bytes", name, ENVELOPE_ID_MAX);
        return ENVELOPE_ERR_TOO_LONG;
    }
    if (required && length == 0) {
        s_detail (detail, detail_size, "%s: must not be empty", name);
        return ENVELOPE_ERR_MISSING;
    }
    memcpy (out, json_string_value (value), length + 1);
    return ENVELOPE_ERR_OK;
}

/* Fills `self` from the decoded top-level map; v, type, id, ts, headers. */
static envelope_err_t
s_take_fields (envelope_t *self, const json_t *map, char *detail, size_t detail_size)
{
    const json_t *v = json_object_get (map, "v");
    if (!json_is_integer (v) || json_integer_value (v) != ENVELOPE_VERSION) {
        s_detail (detail, detail_size, "v: must be %d", ENVELOPE_VERSION);
        return ENVELOPE_ERR_VERSION;
    }
    const json_t *type = json_object_get (map, "type");
    if (!type || json_is_null (type)) {
        s_detail (detail, detail_size, "type: required field missing");
        return ENVELOPE_ERR_MISSING;
    }
    if (!json_is_string (type)) {
        s_detail (detail, detail_size, "type: expected a string");
        return ENVELOPE_ERR_WRONG_TYPE;
    }
    self->type = envelope_type_from_name (json_string_value (type));
    if (self->type == ENVELOPE_INVALID) {
        s_detail (detail, detail_size, "type: unknown envelope type");
        return ENVELOPE_ERR_UNKNOWN_TYPE;
    }
    envelope_err_t err = s_take_header (map, "id", true, self->id, detail, detail_size);
    if (err != ENVELOPE_ERR_OK)
        return err;
    const json_t *ts = json_object_get (map, "ts");
    if (!ts || !json_is_integer (ts)) {
        s_detail (detail, detail_size, "ts: %s",
                  ts && !json_is_null (ts) ? "expected an integer" : "required field missing");
        return ts && !json_is_null (ts) ? ENVELOPE_ERR_WRONG_TYPE : ENVELOPE_ERR_MISSING;
    }
    self->ts = json_integer_value (ts);
#define X(field)                                                               \
    if (err == ENVELOPE_ERR_OK)                                                \
        err = s_take_header (map, #field, false, self->field, detail, detail_size);
    S_OPTIONAL_FIELDS (X)
#undef X
    return err;
}

envelope_t *
envelope_decode (const void *data, size_t size, envelope_err_t *err, char *detail,
                 size_t detail_size)
{
    envelope_err_t ignored;
    err = err ? err : &ignored;
    s_detail (detail, detail_size, "%s", "");
    envelope_t *self = NULL;
    json_t *map = s_unpack (data, size, S_WIRE_DEPTH, err, detail, detail_size);
    if (!map)
        return NULL;
    if (!json_is_object (map)) {
        *err = ENVELOPE_ERR_MALFORMED;
        s_detail (detail, detail_size, "envelope: expected a map");
        goto cleanup;
    }
    self = calloc (1, sizeof *self);
    if (!self) {
        *err = ENVELOPE_ERR_TOO_LARGE;
        goto cleanup;
    }
    *err = s_take_fields (self, map, detail, detail_size);
    if (*err == ENVELOPE_ERR_OK) {
        self->body = json_incref (json_object_get (map, "body"));
        *err = envelope_validate_body (self->type, self->body, detail, detail_size);
    }
    if (*err != ENVELOPE_ERR_OK)
        envelope_destroy (&self);
cleanup:
    json_decref (map);
    return self;
}
