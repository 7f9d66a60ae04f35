/*  tests/unit/test_envelope.c — CUnit suite for schema/envelope.c.
 *
 *  Round trips of every type in envelopes.def (driven by the table itself),
 *  the msgpack <-> JSON converters at their limits, and a corpus of bad
 *  input: truncation at every byte, wrong headers, wrong field types, bin,
 *  ext, bad UTF-8, depth, size, trailing bytes, and a seeded fuzz loop.
 *  Hand-made msgpack is written with a tiny writer here, so the tests do not
 *  need msgpack.h (the codec is the only file that includes it).
 */
#include "envelope.h"
#include "unit.h"

#include <CUnit/Basic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- the table, as the tests see it -------------------------------------- */

typedef struct {
    envelope_type_t type;
    const char *name;
    const char *spec;
} t_type_t;

static const t_type_t t_types[] = {
#define ENVELOPE(e, name, spec) { ENVELOPE_##e, name, spec },
#include "envelopes.def"
#undef ENVELOPE
};
#define T_TYPE_COUNT (sizeof t_types / sizeof t_types[0])

#define T_UUID "123e4567-E89B-12d3-a456-426614174000"

/* --- a tiny msgpack writer for hand-made input --------------------------- */

typedef struct {
    uint8_t *data;
    size_t size, capacity;
} t_buf_t;

static void
t_put (t_buf_t *b, const void *bytes, size_t size)
{
    if (b->size + size > b->capacity) {
        b->capacity = (b->size + size) * 2 + 64;
        b->data = realloc (b->data, b->capacity);
        CU_ASSERT_FATAL (b->data != NULL);
    }
    if (size)
        memcpy (b->data + b->size, bytes, size);
    b->size += size;
}

static void
t_byte (t_buf_t *b, uint8_t byte)
{
    t_put (b, &byte, 1);
}

static void
t_be (t_buf_t *b, uint64_t value, int width)
{
    for (int i = width - 1; i >= 0; i--)
        t_byte (b, (uint8_t) (value >> (8 * i)));
}

static void
t_strn (t_buf_t *b, const char *text, size_t size)
{
    if (size < 32)
        t_byte (b, (uint8_t) (0xa0 | size));
    else {
        t_byte (b, 0xdb);
        t_be (b, size, 4);
    }
    t_put (b, text, size);
}

static void t_str (t_buf_t *b, const char *text) { t_strn (b, text, strlen (text)); }
static void t_map (t_buf_t *b, uint32_t n) { t_byte (b, 0xdf); t_be (b, n, 4); }
static void t_array (t_buf_t *b, uint32_t n) { t_byte (b, 0xdd); t_be (b, n, 4); }
static void t_int (t_buf_t *b, int64_t v) { t_byte (b, 0xd3); t_be (b, (uint64_t) v, 8); }
static void t_free (t_buf_t *b) { free (b->data); *b = (t_buf_t) { 0 }; }

/* Starts a hand-made envelope map of `extra` + 4 pairs: v, type, id, ts. */
static void
t_header (t_buf_t *b, const char *type, uint32_t extra)
{
    t_map (b, 4 + extra);
    t_str (b, "v");
    t_int (b, 1);
    t_str (b, "type");
    t_str (b, type);
    t_str (b, "id");
    t_str (b, "id-1");
    t_str (b, "ts");
    t_int (b, 1700000000000);
}

/* --- helpers -------------------------------------------------------------- */

static json_t *t_value_for (const char *kind, bool wrong);
static json_t *t_body_for (const char *spec, bool all);

/* The first type whose spec has an `any` field (http.request's body, say):
   tests of depth and size put their values there. */
static const t_type_t *
t_any_type (char *field, size_t size)
{
    for (size_t t = 0; t < sizeof t_types / sizeof t_types[0]; t++) {
        const char *any = strstr (t_types[t].spec, ":any");
        if (!any)
            continue;
        const char *start = any;
        while (start > t_types[t].spec && start[-1] != ' ')
            start--;
        snprintf (field, size, "%.*s", (int) (any - start), start);
        return &t_types[t];
    }
    CU_FAIL_FATAL ("no type in envelopes.def has an `any` field");
    return NULL;
}

/* A valid body of that type with `value` (taken) in its `any` field. */
static json_t *
t_any_body (envelope_type_t *type, json_t *value)
{
    char field[64];
    const t_type_t *t = t_any_type (field, sizeof field);
    *type = t->type;
    json_t *body = t_body_for (t->spec, false);
    json_object_set_new (body, field, value);
    return body;
}

/* A hand-made envelope of that type whose `any` field holds `raw` bytes. */
static void t_header (t_buf_t *b, const char *type, uint32_t extra);
static void
t_any_envelope (t_buf_t *b, const void *raw, size_t raw_size)
{
    char field[64];
    const t_type_t *t = t_any_type (field, sizeof field);
    json_t *body = t_body_for (t->spec, false);
    json_object_del (body, field);
    t_header (b, t->name, 1);
    t_str (b, "body");
    t_map (b, (uint32_t) json_object_size (body) + 1);
    const char *key;
    json_t *value;
    json_object_foreach (body, key, value) {
        char *data = NULL;
        size_t size = 0;
        CU_ASSERT_EQUAL_FATAL (envelope_json_to_msgpack (value, &data, &size), 0);
        t_str (b, key);
        t_put (b, data, size);
        free (data);
    }
    t_str (b, field);
    t_put (b, raw, raw_size);
    json_decref (body);
}

static envelope_t *
t_decode_buf (const t_buf_t *b, envelope_err_t *err, char *detail, size_t size)
{
    return envelope_decode (b->data, b->size, err, detail, size);
}

/* Decodes bytes that must fail with `want`; the detail must contain `part`. */
static void
t_expect_bytes (const void *data, size_t size, envelope_err_t want, const char *part)
{
    envelope_err_t err = ENVELOPE_ERR_OK;
    char detail[160] = "?";
    envelope_t *env = envelope_decode (data, size, &err, detail, sizeof detail);
    CU_ASSERT_PTR_NULL (env);
    CU_ASSERT_EQUAL (err, want);
    if (err != want)
        fprintf (stderr, "\n  wanted %s, got %s (%s)\n", envelope_err_code (want),
                 envelope_err_code (err), detail);
    if (part) {
        CU_ASSERT_PTR_NOT_NULL (strstr (detail, part));
        if (!strstr (detail, part))
            fprintf (stderr, "\n  detail '%s' lacks '%s'\n", detail, part);
    }
    envelope_destroy (&env);
}

/* Encodes a JSON document as msgpack and expects the envelope decode to fail. */
static void
t_expect_json (json_t *doc, envelope_err_t want, const char *part)
{
    CU_ASSERT_FATAL (doc != NULL);
    char *data = NULL;
    size_t size = 0;
    CU_ASSERT_EQUAL_FATAL (envelope_json_to_msgpack (doc, &data, &size), 0);
    t_expect_bytes (data, size, want, part);
    free (data);
    json_decref (doc);
}

/* A valid envelope as JSON, for tests that break one part of it. */
static json_t *
t_valid_doc (void)
{
    return json_pack ("{s:i s:s s:s s:I s:s s:s s:{s:s}}", "v", 1, "type",
                      "message.send", "id", "abc", "ts", (json_int_t) 1700000000000,
                      "user", "u1", "room", "r1", "body", "content", "hi");
}

static void
t_assert_same (const envelope_t *a, const envelope_t *b)
{
    CU_ASSERT_EQUAL (a->type, b->type);
    CU_ASSERT_STRING_EQUAL (a->id, b->id);
    CU_ASSERT_EQUAL (a->ts, b->ts);
    CU_ASSERT_STRING_EQUAL (a->user, b->user);
    CU_ASSERT_STRING_EQUAL (a->room, b->room);
    CU_ASSERT_STRING_EQUAL (a->re, b->re);
    CU_ASSERT_STRING_EQUAL (a->from, b->from);
    CU_ASSERT_TRUE (json_equal (a->body, b->body));
}

/* Encodes, decodes, and checks the copy matches; returns the copy's error. */
static envelope_err_t
t_round_trip (const envelope_t *env)
{
    char *data = NULL;
    size_t size = 0;
    envelope_err_t err = ENVELOPE_ERR_MALFORMED;
    if (envelope_encode (env, &data, &size, &err) != 0)
        return err;
    char detail[160];
    envelope_t *copy = envelope_decode (data, size, &err, detail, sizeof detail);
    CU_ASSERT_PTR_NOT_NULL (copy);
    if (copy)
        t_assert_same (env, copy);
    else
        fprintf (stderr, "\n  round trip failed: %s\n", detail);
    envelope_destroy (&copy);
    free (data);
    return err;
}

/* A value of the given spec kind, and one of the wrong kind (NULL: none). */
static json_t *
t_value_for (const char *kind, bool wrong)
{
    if (strcmp (kind, "str") == 0)
        return wrong ? json_integer (42) : json_string ("héllo, 世界 🎉");
    if (strcmp (kind, "uuid") == 0)
        return wrong ? json_string ("123e4567-e89b-12d3-a456-42661417400") : json_string (T_UUID);
    if (strcmp (kind, "int") == 0)
        return wrong ? json_string ("7") : json_integer (INT64_MIN);
    if (strcmp (kind, "bool") == 0)
        return wrong ? json_integer (1) : json_true ();
    if (strcmp (kind, "num") == 0)
        return wrong ? json_string ("1.5") : json_real (2.5);
    if (strcmp (kind, "map") == 0)
        return wrong ? json_array () : json_pack ("{s:[i,n,s] s:{s:b}}", "k", 1, "v", "n", "x", 1);
    if (strcmp (kind, "array") == 0)
        return wrong ? json_object () : json_pack ("[i,s,{s:n},[]]", 1, "a", "b");
    if (strcmp (kind, "any") == 0)
        return wrong ? NULL : json_pack ("{s:[i,f,s]}", "deep", 1, 2.25, "x");
    CU_FAIL ("unknown kind in envelopes.def");
    return NULL;
}

typedef struct {
    char name[64];
    char kind[16];
    bool required;
} t_field_t;

/* Splits a spec into fields; returns how many. */
static size_t
t_fields (const char *spec, t_field_t *fields, size_t max)
{
    size_t count = 0;
    char copy[1024];
    snprintf (copy, sizeof copy, "%s", spec);
    for (char *save, *token = strtok_r (copy, " ", &save); token && count < max;
         token = strtok_r (NULL, " ", &save)) {
        char *colon = strchr (token, ':');
        if (!colon)
            continue;
        t_field_t *f = &fields[count++];
        snprintf (f->name, sizeof f->name, "%.*s", (int) (colon - token), token);
        snprintf (f->kind, sizeof f->kind, "%s", colon + 1);
        size_t n = strlen (f->kind);
        f->required = n && f->kind[n - 1] == '!';
        if (f->required)
            f->kind[n - 1] = '\0';
    }
    return count;
}

/* A body with every field of the spec (or only the required ones). */
static json_t *
t_body_for (const char *spec, bool all)
{
    t_field_t fields[32];
    size_t count = t_fields (spec, fields, 32);
    json_t *body = json_object ();
    for (size_t i = 0; i < count; i++)
        if (all || fields[i].required)
            json_object_set_new (body, fields[i].name, t_value_for (fields[i].kind, false));
    return body;
}

static envelope_t *
t_envelope (envelope_type_t type, json_t *body)
{
    envelope_t *env = envelope_new (type);
    CU_ASSERT_FATAL (env != NULL);
    envelope_set_body (env, body);
    return env;
}

/* Nested arrays `depth` deep around 1. */
static json_t *
t_nest (int depth)
{
    json_t *value = json_integer (1);
    for (int i = 0; i < depth; i++) {
        json_t *outer = json_array ();
        json_array_append_new (outer, value);
        value = outer;
    }
    return value;
}

/* --- tests ---------------------------------------------------------------- */

/* Usage: build an envelope, encode it, decode the bytes, compare. */
static void
test_usage_example (void)
{
    envelope_t *env = envelope_new (ENVELOPE_MESSAGE_SEND);
    CU_ASSERT_PTR_NOT_NULL_FATAL (env);
    snprintf (env->user, sizeof env->user, "%s", "user-42");
    snprintf (env->room, sizeof env->room, "%s", T_UUID);
    envelope_set_body (env, json_pack ("{s:s s:s}", "content", "hello", "client_id", "c-1"));

    char *data = NULL;
    size_t size = 0;
    envelope_err_t err;
    CU_ASSERT_EQUAL_FATAL (envelope_encode (env, &data, &size, &err), 0);
    CU_ASSERT_EQUAL (err, ENVELOPE_ERR_OK);

    char detail[128];
    envelope_t *copy = envelope_decode (data, size, &err, detail, sizeof detail);
    CU_ASSERT_PTR_NOT_NULL_FATAL (copy);
    CU_ASSERT_EQUAL (err, ENVELOPE_ERR_OK);
    CU_ASSERT_EQUAL (copy->type, ENVELOPE_MESSAGE_SEND);
    CU_ASSERT_STRING_EQUAL (envelope_type_name (copy->type), "message.send");
    CU_ASSERT_STRING_EQUAL (copy->user, "user-42");
    CU_ASSERT_STRING_EQUAL (copy->re, "");
    CU_ASSERT_STRING_EQUAL (json_string_value (json_object_get (copy->body, "content")),
                            "hello");
    t_assert_same (env, copy);

    /* The same bytes read as plain JSON, e.g. for a WebSocket msgpack frame. */
    json_t *doc = envelope_msgpack_to_json (data, size, &err);
    CU_ASSERT_PTR_NOT_NULL (doc);
    CU_ASSERT_EQUAL (json_integer_value (json_object_get (doc, "v")), 1);
    CU_ASSERT_STRING_EQUAL (json_string_value (json_object_get (doc, "type")), "message.send");
    json_decref (doc);

    envelope_destroy (&copy);
    envelope_destroy (&env);
    CU_ASSERT_PTR_NULL (env);
    envelope_destroy (&env);           /* NULL-safe */
    envelope_destroy (NULL);
    free (data);
}

/* Every type in the table, with every field of its spec, and with only the
   required ones; every header string set. */
static void
test_round_trip_every_type (void)
{
    for (size_t t = 0; t < T_TYPE_COUNT; t++) {
        for (int all = 0; all <= 1; all++) {
            envelope_t *env = t_envelope (t_types[t].type, t_body_for (t_types[t].spec, all));
            if (all) {
                snprintf (env->user, sizeof env->user, "%s", "user-1");
                snprintf (env->room, sizeof env->room, "%s", T_UUID);
                snprintf (env->re, sizeof env->re, "%s", "0123456789012345678901234567890123456789012345678901234567890123");
                snprintf (env->from, sizeof env->from, "%s", "room.3");
            }
            CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_OK);
            envelope_destroy (&env);
        }
    }
}

/* For every type, each required field missing or null, and every field
   given a value of the wrong kind: refused on encode and on decode. */
static void
test_fields_checked_every_type (void)
{
    for (size_t t = 0; t < T_TYPE_COUNT; t++) {
        t_field_t fields[32];
        size_t count = t_fields (t_types[t].spec, fields, 32);
        for (size_t f = 0; f < count; f++) {
            for (int how = 0; how < 3; how++) {   /* 0 absent, 1 null, 2 wrong */
                if (how < 2 && !fields[f].required)
                    continue;
                json_t *bad = how == 2 ? t_value_for (fields[f].kind, true) : NULL;
                if (how == 2 && !bad)
                    continue;                       /* `any` has no wrong kind */
                json_t *body = t_body_for (t_types[t].spec, true);
                if (how == 0)
                    json_object_del (body, fields[f].name);
                else
                    json_object_set_new (body, fields[f].name, how == 1 ? json_null () : bad);
                envelope_err_t want = how == 2 ? ENVELOPE_ERR_WRONG_TYPE : ENVELOPE_ERR_MISSING;

                char detail[160], part[96];
                snprintf (part, sizeof part, "body.%.63s: ", fields[f].name);
                CU_ASSERT_EQUAL (envelope_validate_body (t_types[t].type, body, detail, sizeof detail), want);
                CU_ASSERT_PTR_NOT_NULL (strstr (detail, part));

                envelope_t *env = t_envelope (t_types[t].type, json_incref (body));
                char *data = NULL;
                size_t size = 0;
                envelope_err_t err;
                CU_ASSERT_EQUAL (envelope_encode (env, &data, &size, &err), -1);
                CU_ASSERT_EQUAL (err, want);
                CU_ASSERT_PTR_NULL (data);
                envelope_destroy (&env);

                json_t *doc = json_pack ("{s:i s:s s:s s:i s:o}", "v", 1, "type",
                                         t_types[t].name, "id", "x", "ts", 5, "body", body);
                t_expect_json (doc, want, part);
            }
        }
    }
}

/* Optional fields given null count as absent; unknown fields are ignored. */
static void
test_optional_null_and_unknown_fields (void)
{
    json_t *body = json_pack ("{s:s s:n s:n s:n s:{} s:i}", "content", "x", "reply_to",
                              "message_type", "attachment", "no_such_field", "another", 3);
    char detail[128];
    CU_ASSERT_EQUAL (envelope_validate_body (ENVELOPE_MESSAGE_SEND, body, detail, sizeof detail),
                     ENVELOPE_ERR_OK);
    json_t *doc = json_pack ("{s:i s:s s:s s:i s:n s:n s:n s:n s:O s:[i]}", "v", 1, "type",
                             "message.send", "id", "x", "ts", 5, "user", "room", "re",
                             "from", "body", body, "extra_top_level", 1);
    char *data = NULL;
    size_t size = 0;
    CU_ASSERT_EQUAL_FATAL (envelope_json_to_msgpack (doc, &data, &size), 0);
    envelope_err_t err;
    envelope_t *env = envelope_decode (data, size, &err, detail, sizeof detail);
    CU_ASSERT_PTR_NOT_NULL_FATAL (env);
    CU_ASSERT_STRING_EQUAL (env->user, "");
    CU_ASSERT_STRING_EQUAL (env->from, "");
    CU_ASSERT_TRUE (json_equal (env->body, body));
    envelope_destroy (&env);
    free (data);
    json_decref (doc);
    json_decref (body);
}

/* Each kind of a spec, directly, including the edges of uuid and num. */
static void
test_spec_kinds (void)
{
    char detail[128];
    struct {
        const char *spec;
        const char *json;
        envelope_err_t want;
    } cases[] = {
        { "a:str!", "{\"a\": \"\"}", ENVELOPE_ERR_OK },
        { "a:str!", "{\"a\": 1}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:str!", "{\"a\": null}", ENVELOPE_ERR_MISSING },
        { "a:str!", "{}", ENVELOPE_ERR_MISSING },
        { "a:uuid", "{\"a\": \"123e4567-e89b-12d3-a456-426614174000\"}", ENVELOPE_ERR_OK },
        { "a:uuid", "{\"a\": \"123E4567-E89B-12D3-A456-426614174000\"}", ENVELOPE_ERR_OK },
        { "a:uuid", "{\"a\": \"123e4567e89b12d3a456426614174000\"}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:uuid", "{\"a\": \"123e4567-e89b-12d3-a456-42661417400g\"}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:uuid", "{\"a\": \"123e4567-e89b-12d3-a456_426614174000\"}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:uuid", "{\"a\": \"{123e4567-e89b-12d3-a456-426614174000}\"}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:uuid", "{\"a\": \"123e4567-e89b-12d3-a456-4266141740000\"}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:uuid", "{\"a\": 5}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:uuid", "{\"a\": null}", ENVELOPE_ERR_OK },
        { "a:int", "{\"a\": -5}", ENVELOPE_ERR_OK },
        { "a:int", "{\"a\": 1.0}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:int", "{\"a\": \"5\"}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:bool", "{\"a\": false}", ENVELOPE_ERR_OK },
        { "a:bool", "{\"a\": 0}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:bool", "{\"a\": \"true\"}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:num", "{\"a\": 3}", ENVELOPE_ERR_OK },
        { "a:num", "{\"a\": 3.5}", ENVELOPE_ERR_OK },
        { "a:num", "{\"a\": true}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:map", "{\"a\": {}}", ENVELOPE_ERR_OK },
        { "a:map", "{\"a\": []}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:array", "{\"a\": []}", ENVELOPE_ERR_OK },
        { "a:array", "{\"a\": \"[]\"}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:any!", "{\"a\": false}", ENVELOPE_ERR_OK },
        { "a:any!", "{\"a\": null}", ENVELOPE_ERR_MISSING },
        { "  a:int!   b:str  ", "{\"a\": 1, \"b\": \"x\"}", ENVELOPE_ERR_OK },
        { "a:int ...strict", "{\"a\": 1}", ENVELOPE_ERR_OK },
        { "a:int ...strict", "{\"a\": 1, \"b\": 2}", ENVELOPE_ERR_WRONG_TYPE },
        { "a:integer", "{}", ENVELOPE_ERR_MALFORMED },
        { "a", "{}", ENVELOPE_ERR_MALFORMED },
        { ":int", "{}", ENVELOPE_ERR_MALFORMED },
        { "", "{}", ENVELOPE_ERR_OK },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *body = json_loads (cases[i].json, 0, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL (body);
        envelope_err_t err = envelope_validate_spec (cases[i].spec, body, detail, sizeof detail);
        CU_ASSERT_EQUAL (err, cases[i].want);
        if (err != cases[i].want)
            fprintf (stderr, "\n  case %zu (%s %s): got %s\n", i, cases[i].spec,
                     cases[i].json, envelope_err_code (err));
        if (cases[i].want == ENVELOPE_ERR_OK)
            CU_ASSERT_STRING_EQUAL (detail, "");
        json_decref (body);
    }
    /* body itself: absent, null, not a map */
    json_t *array = json_array ();
    CU_ASSERT_EQUAL (envelope_validate_spec ("a:int", NULL, detail, sizeof detail),
                     ENVELOPE_ERR_MISSING);
    CU_ASSERT_EQUAL (envelope_validate_spec ("a:int", json_null (), detail, sizeof detail),
                     ENVELOPE_ERR_MISSING);
    CU_ASSERT_EQUAL (envelope_validate_spec ("a:int", array, detail, sizeof detail),
                     ENVELOPE_ERR_WRONG_TYPE);
    CU_ASSERT_STRING_EQUAL (detail, "body: expected a map");
    CU_ASSERT_EQUAL (envelope_validate_body (ENVELOPE_INVALID, array, detail, sizeof detail),
                     ENVELOPE_ERR_UNKNOWN_TYPE);
    CU_ASSERT_EQUAL (envelope_validate_body (ENVELOPE_TYPE_COUNT, array, NULL, 0),
                     ENVELOPE_ERR_UNKNOWN_TYPE);
    json_decref (array);
    /* Every spec in the table is well-formed. */
    json_t *empty = json_object ();
    for (size_t t = 0; t < T_TYPE_COUNT; t++)
        CU_ASSERT_NOT_EQUAL (envelope_validate_spec (t_types[t].spec, empty, NULL, 0),
                             ENVELOPE_ERR_MALFORMED);
    json_decref (empty);
}

/* str fields are capped at ENVELOPE_STR_MAX bytes. */
static void
test_str_field_length (void)
{
    char *text = malloc (ENVELOPE_STR_MAX + 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL (text);
    memset (text, 'x', ENVELOPE_STR_MAX + 1);
    text[ENVELOPE_STR_MAX + 1] = '\0';
    json_t *body = json_pack ("{s:s%}", "content", text, (size_t) ENVELOPE_STR_MAX);
    char detail[128];
    CU_ASSERT_EQUAL (envelope_validate_body (ENVELOPE_MESSAGE_SEND, body, detail, sizeof detail),
                     ENVELOPE_ERR_OK);
    envelope_t *env = t_envelope (ENVELOPE_MESSAGE_SEND, body);
    CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_OK);
    envelope_set_body (env, json_pack ("{s:s}", "content", text));
    CU_ASSERT_EQUAL (envelope_validate_body (ENVELOPE_MESSAGE_SEND, env->body, detail, sizeof detail),
                     ENVELOPE_ERR_TOO_LONG);
    CU_ASSERT_PTR_NOT_NULL (strstr (detail, "body.content: "));
    CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_TOO_LONG);
    envelope_destroy (&env);
    free (text);
}

static void
test_int64_extremes (void)
{
    int64_t values[] = { INT64_MIN, INT64_MIN + 1, -2147483649LL, -2147483648LL, -32769, -32768,
                         -129, -128, -33, -32, -1, 0, 1, 127, 128, 255, 256, 65535, 65536,
                         2147483647LL, 2147483648LL, 4294967295LL, 4294967296LL,
                         INT64_MAX - 1, INT64_MAX };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        json_t *value = json_pack ("{s:I s:[I]}", "n", (json_int_t) values[i], "a",
                                   (json_int_t) values[i]);
        char *data = NULL;
        size_t size = 0;
        CU_ASSERT_EQUAL_FATAL (envelope_json_to_msgpack (value, &data, &size), 0);
        envelope_err_t err;
        json_t *copy = envelope_msgpack_to_json (data, size, &err);
        CU_ASSERT_PTR_NOT_NULL (copy);
        CU_ASSERT_TRUE (json_equal (value, copy));
        CU_ASSERT_EQUAL (json_integer_value (json_object_get (copy, "n")), values[i]);
        json_decref (copy);
        json_decref (value);
        free (data);

        envelope_t *env = t_envelope (ENVELOPE_ROOM_EVENT,
                                      json_pack ("{s:I s:s s:s}", "seq", (json_int_t) values[i],
                                                 "event", "e", "payload", "{}"));
        env->ts = values[i];
        CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_OK);
        envelope_destroy (&env);
    }
    /* Every integer width msgpack has, read back. */
    struct {
        uint8_t bytes[9];
        size_t size;
        int64_t want;
    } ints[] = {
        { { 0x7f }, 1, 127 },
        { { 0xe0 }, 1, -32 },
        { { 0xcc, 0xff }, 2, 255 },
        { { 0xcd, 0xff, 0xff }, 3, 65535 },
        { { 0xce, 0xff, 0xff, 0xff, 0xff }, 5, 4294967295LL },
        { { 0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 9, INT64_MAX },
        { { 0xd0, 0x80 }, 2, -128 },
        { { 0xd1, 0x80, 0x00 }, 3, -32768 },
        { { 0xd2, 0x80, 0x00, 0x00, 0x00 }, 5, -2147483648LL },
        { { 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0 }, 9, INT64_MIN },
        { { 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, 9, -1 },
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        envelope_err_t err;
        json_t *value = envelope_msgpack_to_json (ints[i].bytes, ints[i].size, &err);
        CU_ASSERT_TRUE (json_is_integer (value));
        CU_ASSERT_EQUAL (json_integer_value (value), ints[i].want);
        json_decref (value);
    }
    /* uint64 above INT64_MAX has no JSON integer: refused. */
    const uint8_t big[] = { 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0 };
    const uint8_t max[] = { 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    envelope_err_t err;
    CU_ASSERT_PTR_NULL (envelope_msgpack_to_json (big, sizeof big, &err));
    CU_ASSERT_EQUAL (err, ENVELOPE_ERR_WRONG_TYPE);
    CU_ASSERT_PTR_NULL (envelope_msgpack_to_json (max, sizeof max, &err));
    CU_ASSERT_EQUAL (err, ENVELOPE_ERR_WRONG_TYPE);
    /* ... and as an envelope's ts */
    t_buf_t b = { 0 };
    t_map (&b, 5);
    t_str (&b, "v"); t_int (&b, 1);
    t_str (&b, "type"); t_str (&b, "health");
    t_str (&b, "id"); t_str (&b, "x");
    t_str (&b, "ts"); t_put (&b, big, sizeof big);
    t_str (&b, "body"); t_map (&b, 0);
    t_expect_bytes (b.data, b.size, ENVELOPE_ERR_WRONG_TYPE, "byte");
    t_free (&b);
}

static void
test_floats (void)
{
    envelope_err_t err;
    const uint8_t f32[] = { 0xca, 0x3f, 0xc0, 0x00, 0x00 };            /* 1.5 */
    const uint8_t f64[] = { 0xcb, 0xc0, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18 };  /* -pi */
    const uint8_t nan32[] = { 0xca, 0x7f, 0xc0, 0x00, 0x00 };
    const uint8_t inf64[] = { 0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0 };
    json_t *value = envelope_msgpack_to_json (f32, sizeof f32, &err);
    CU_ASSERT_TRUE (json_is_real (value));
    CU_ASSERT_DOUBLE_EQUAL (json_real_value (value), 1.5, 0.0);
    json_decref (value);
    value = envelope_msgpack_to_json (f64, sizeof f64, &err);
    CU_ASSERT_DOUBLE_EQUAL (json_real_value (value), -3.141592653589793, 0.0);
    json_decref (value);
    CU_ASSERT_PTR_NULL (envelope_msgpack_to_json (nan32, sizeof nan32, &err));
    CU_ASSERT_EQUAL (err, ENVELOPE_ERR_WRONG_TYPE);
    CU_ASSERT_PTR_NULL (envelope_msgpack_to_json (inf64, sizeof inf64, &err));
    CU_ASSERT_EQUAL (err, ENVELOPE_ERR_WRONG_TYPE);

    double reals[] = { 0.0, -0.0, 1e-308, 5e-324, 1.7976931348623157e308, -2.5, 0.1 };
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) {
        json_t *doc = json_pack ("[f]", reals[i]);
        char *data = NULL;
        size_t size = 0;
        CU_ASSERT_EQUAL_FATAL (envelope_json_to_msgpack (doc, &data, &size), 0);
        json_t *copy = envelope_msgpack_to_json (data, size, &err);
        CU_ASSERT_TRUE (json_is_real (json_array_get (copy, 0)));
        CU_ASSERT_TRUE (json_equal (doc, copy));
        json_decref (copy);
        json_decref (doc);
        free (data);
    }
}

/* Known bytes for a small document: the converter writes standard msgpack. */
static void
test_known_bytes (void)
{
    json_t *doc = json_pack ("{s:[i,n,b,s]}", "a", 1, 1, "hé");
    char *data = NULL;
    size_t size = 0;
    CU_ASSERT_EQUAL_FATAL (envelope_json_to_msgpack (doc, &data, &size), 0);
    const uint8_t want[] = { 0x81, 0xa1, 'a', 0x94, 0x01, 0xc0, 0xc3, 0xa3, 'h', 0xc3, 0xa9 };
    CU_ASSERT_EQUAL (size, sizeof want);
    CU_ASSERT_TRUE (size == sizeof want && memcmp (data, want, size) == 0);
    free (data);
    json_decref (doc);
    /* Bad arguments */
    CU_ASSERT_EQUAL (envelope_json_to_msgpack (NULL, &data, &size), -1);
    /* str8, str16, array16, map16 forms are read too */
    const uint8_t forms[] = { 0xde, 0x00, 0x02, 0xd9, 0x01, 'k', 0xdc, 0x00, 0x01, 0xda, 0x00,
                              0x01, 'v', 0xa1, 'n', 0xc2 };
    envelope_err_t err;
    json_t *value = envelope_msgpack_to_json (forms, sizeof forms, &err);
    CU_ASSERT_PTR_NOT_NULL (value);
    CU_ASSERT_STRING_EQUAL (json_string_value (json_array_get (json_object_get (value, "k"), 0)), "v");
    CU_ASSERT_TRUE (json_is_false (json_object_get (value, "n")));
    json_decref (value);
    /* Scalars at the top level are fine for the generic converter. */
    const uint8_t nil[] = { 0xc0 };
    value = envelope_msgpack_to_json (nil, 1, NULL);
    CU_ASSERT_TRUE (json_is_null (value));
    json_decref (value);
}

static void
test_utf8 (void)
{
    const char *good[] = { "plain", "é", "€", "𝄞", "\xf4\x8f\xbf\xbf", "\xef\xbf\xbf",
                           "ed: \xed\x9f\xbf", "" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        t_buf_t b = { 0 };
        t_str (&b, good[i]);
        envelope_err_t err;
        json_t *value = envelope_msgpack_to_json (b.data, b.size, &err);
        CU_ASSERT_PTR_NOT_NULL (value);
        CU_ASSERT_STRING_EQUAL (json_string_value (value), good[i]);
        json_decref (value);
        t_free (&b);
    }
    struct {
        const char *bytes;
        size_t size;
    } bad[] = {
        { "\x80", 1 },                  /* lone continuation */
        { "\xc0\x80", 2 },              /* overlong NUL */
        { "\xc1\xbf", 2 },              /* overlong */
        { "\xe0\x80\xaf", 3 },          /* overlong */
        { "\xf0\x8f\xbf\xbf", 4 },      /* overlong */
        { "\xed\xa0\x80", 3 },          /* surrogate */
        { "\xf4\x90\x80\x80", 4 },      /* above U+10FFFF */
        { "\xf5\x80\x80\x80", 4 },
        { "\xfe", 1 },
        { "\xff", 1 },
        { "a\xc3", 2 },                 /* cut short */
        { "\xe2\x82", 2 },
        { "\xe2\x28\xa1", 3 },          /* bad continuation */
        { "a\0b", 3 },                  /* NUL */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t_buf_t b = { 0 };
        t_strn (&b, bad[i].bytes, bad[i].size);
        envelope_err_t err = ENVELOPE_ERR_OK;
        CU_ASSERT_PTR_NULL (envelope_msgpack_to_json (b.data, b.size, &err));
        CU_ASSERT_EQUAL (err, ENVELOPE_ERR_BAD_UTF8);
        t_free (&b);

        /* in a body value, in a map key, and in a header string */
        for (int where = 0; where < 3; where++) {
            t_header (&b, "message.send", 1 + (where == 2));
            if (where == 2) {
                t_str (&b, "user");
                t_strn (&b, bad[i].bytes, bad[i].size);
            }
            t_str (&b, "body");
            t_map (&b, 1);
            if (where == 1) {
                t_strn (&b, bad[i].bytes, bad[i].size);
                t_int (&b, 1);
            }
            else {
                t_str (&b, "content");
                t_strn (&b, where == 0 ? bad[i].bytes : "ok", where == 0 ? bad[i].size : 2);
            }
            t_expect_bytes (b.data, b.size, ENVELOPE_ERR_BAD_UTF8, "byte");
            t_free (&b);
        }
    }
    /* Strings jansson was told to hold without checks are refused on encode. */
    json_t *doc = json_pack ("{s:o}", "content", json_stringn_nocheck ("a\0b", 3));
    char *data = NULL;
    size_t size = 0;
    CU_ASSERT_EQUAL (envelope_json_to_msgpack (doc, &data, &size), -1);
    envelope_t *env = t_envelope (ENVELOPE_MESSAGE_SEND, doc);
    CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_BAD_UTF8);
    envelope_set_body (env, json_pack ("{s:s}", "content", "x"));
    memcpy (env->room, "\xc3\x28", 3);
    CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_BAD_UTF8);
    envelope_destroy (&env);
}

/* Every strict prefix of a valid envelope is TRUNCATED, never accepted. */
static void
test_truncated_everywhere (void)
{
    envelope_t *env = t_envelope (ENVELOPE_MESSAGE_SEND,
                                  t_body_for (t_types[ENVELOPE_MESSAGE_SEND - 1].spec, true));
    snprintf (env->user, sizeof env->user, "u");
    snprintf (env->re, sizeof env->re, "r");
    char *data = NULL;
    size_t size = 0;
    envelope_err_t err;
    CU_ASSERT_EQUAL_FATAL (envelope_encode (env, &data, &size, &err), 0);
    for (size_t cut = 0; cut < size; cut++) {
        t_expect_bytes (data, cut, ENVELOPE_ERR_TRUNCATED, "truncated");
        CU_ASSERT_PTR_NULL (envelope_msgpack_to_json (data, cut, &err));
        CU_ASSERT_EQUAL (err, ENVELOPE_ERR_TRUNCATED);
    }
    t_expect_bytes (NULL, 0, ENVELOPE_ERR_TRUNCATED, NULL);
    t_expect_bytes ("", 0, ENVELOPE_ERR_TRUNCATED, NULL);
    t_expect_bytes (NULL, 5, ENVELOPE_ERR_MALFORMED, NULL);
    /* A header claiming 4G elements with nothing behind it fails fast. */
    const uint8_t huge[] = { 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0 };
    t_expect_bytes (huge, sizeof huge, ENVELOPE_ERR_TRUNCATED, NULL);
    const uint8_t huge_map[] = { 0xdf, 0xff, 0xff, 0xff, 0xff };
    t_expect_bytes (huge_map, sizeof huge_map, ENVELOPE_ERR_TRUNCATED, NULL);
    /* Trailing bytes after the envelope. */
    char *longer = malloc (size + 1);
    memcpy (longer, data, size);
    longer[size] = (char) 0xc0;
    t_expect_bytes (longer, size + 1, ENVELOPE_ERR_MALFORMED, NULL);
    CU_ASSERT_PTR_NULL (envelope_msgpack_to_json (longer, size + 1, &err));
    CU_ASSERT_EQUAL (err, ENVELOPE_ERR_MALFORMED);
    free (longer);
    free (data);
    envelope_destroy (&env);
}

/* The envelope's own fields: v, type, id, ts, header strings, body. */
static void
test_header_errors (void)
{
    json_t *doc;
    doc = t_valid_doc (); json_object_set_new (doc, "v", json_integer (2));
    t_expect_json (doc, ENVELOPE_ERR_VERSION, "v: ");
    doc = t_valid_doc (); json_object_del (doc, "v");
    t_expect_json (doc, ENVELOPE_ERR_VERSION, "v: ");
    doc = t_valid_doc (); json_object_set_new (doc, "v", json_string ("1"));
    t_expect_json (doc, ENVELOPE_ERR_VERSION, "v: ");
    doc = t_valid_doc (); json_object_set_new (doc, "v", json_real (1.0));
    t_expect_json (doc, ENVELOPE_ERR_VERSION, "v: ");
    doc = t_valid_doc (); json_object_set_new (doc, "type", json_string ("message.sendx"));
    t_expect_json (doc, ENVELOPE_ERR_UNKNOWN_TYPE, "type: ");
    doc = t_valid_doc (); json_object_set_new (doc, "type", json_string (""));
    t_expect_json (doc, ENVELOPE_ERR_UNKNOWN_TYPE, "type: ");
    doc = t_valid_doc (); json_object_set_new (doc, "type", json_integer (7));
    t_expect_json (doc, ENVELOPE_ERR_WRONG_TYPE, "type: ");
    doc = t_valid_doc (); json_object_del (doc, "type");
    t_expect_json (doc, ENVELOPE_ERR_MISSING, "type: ");
    doc = t_valid_doc (); json_object_del (doc, "id");
    t_expect_json (doc, ENVELOPE_ERR_MISSING, "id: ");
    doc = t_valid_doc (); json_object_set_new (doc, "id", json_null ());
    t_expect_json (doc, ENVELOPE_ERR_MISSING, "id: ");
    doc = t_valid_doc (); json_object_set_new (doc, "id", json_string (""));
    t_expect_json (doc, ENVELOPE_ERR_MISSING, "id: ");
    doc = t_valid_doc (); json_object_set_new (doc, "id", json_integer (12));
    t_expect_json (doc, ENVELOPE_ERR_WRONG_TYPE, "id: ");
    doc = t_valid_doc ();
    json_object_set_new (doc, "id", json_string ("01234567890123456789012345678901234567890123456789012345678901234"));
    t_expect_json (doc, ENVELOPE_ERR_TOO_LONG, "id: ");
    doc = t_valid_doc (); json_object_del (doc, "ts");
    t_expect_json (doc, ENVELOPE_ERR_MISSING, "ts: ");
    doc = t_valid_doc (); json_object_set_new (doc, "ts", json_string ("now"));
    t_expect_json (doc, ENVELOPE_ERR_WRONG_TYPE, "ts: ");
    doc = t_valid_doc (); json_object_set_new (doc, "ts", json_real (1.5));
    t_expect_json (doc, ENVELOPE_ERR_WRONG_TYPE, "ts: ");
    const char *headers[] = { "user", "room", "re", "from" };
    for (size_t i = 0; i < 4; i++) {
        char part[16];
        snprintf (part, sizeof part, "%s: ", headers[i]);
        doc = t_valid_doc ();
        json_object_set_new (doc, headers[i], json_integer (1));
        t_expect_json (doc, ENVELOPE_ERR_WRONG_TYPE, part);
        doc = t_valid_doc ();
        json_object_set_new (doc, headers[i], json_string ("0123456789012345678901234567890123456789012345678901234567890123x"));
        t_expect_json (doc, ENVELOPE_ERR_TOO_LONG, part);
    }
    doc = t_valid_doc (); json_object_del (doc, "body");
    t_expect_json (doc, ENVELOPE_ERR_MISSING, "body: ");
    doc = t_valid_doc (); json_object_set_new (doc, "body", json_null ());
    t_expect_json (doc, ENVELOPE_ERR_MISSING, "body: ");
    doc = t_valid_doc (); json_object_set_new (doc, "body", json_pack ("[s]", "content"));
    t_expect_json (doc, ENVELOPE_ERR_WRONG_TYPE, "body: ");
    doc = t_valid_doc (); json_object_set_new (doc, "body", json_string ("{}"));
    t_expect_json (doc, ENVELOPE_ERR_WRONG_TYPE, "body: ");
    /* The top level must be a map. */
    t_expect_json (json_pack ("[i,s]", 1, "message.send"), ENVELOPE_ERR_MALFORMED, NULL);
    t_expect_json (json_integer (1), ENVELOPE_ERR_MALFORMED, NULL);

    /* Encoding refuses what decoding would refuse. */
    envelope_t *env = t_envelope (ENVELOPE_HEALTH, json_pack ("{s:s s:b}", "store", "pg", "ok", 1));
    CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_OK);
    env->id[0] = '\0';
    CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_MISSING);
    memset (env->id, 'i', sizeof env->id);          /* not terminated */
    CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_TOO_LONG);
    snprintf (env->id, sizeof env->id, "ok");
    env->type = ENVELOPE_INVALID;
    CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_UNKNOWN_TYPE);
    env->type = ENVELOPE_TYPE_COUNT;
    CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_UNKNOWN_TYPE);
    env->type = ENVELOPE_HEALTH;
    envelope_set_body (env, NULL);                  /* a failed json_pack */
    CU_ASSERT_PTR_NOT_NULL (env->body);
    CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_MISSING);
    envelope_set_body (env, json_array ());
    CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_WRONG_TYPE);
    envelope_err_t err;
    char *data = NULL;
    size_t size = 0;
    CU_ASSERT_EQUAL (envelope_encode (NULL, &data, &size, &err), -1);
    CU_ASSERT_EQUAL (envelope_encode (env, &data, &size, NULL), -1);
    envelope_destroy (&env);
    envelope_set_body (NULL, json_object ());       /* frees the body */
}

/* Structure: keys, duplicates, bin, ext, the unused tag. */
static void
test_structure_errors (void)
{
    t_buf_t b = { 0 };
    /* non-string map key, at the top and in the body */
    t_map (&b, 1); t_int (&b, 1); t_int (&b, 2);
    t_expect_bytes (b.data, b.size, ENVELOPE_ERR_MALFORMED, "byte 5");
    t_free (&b);
    t_header (&b, "message.send", 1);
    t_str (&b, "body"); t_map (&b, 2); t_str (&b, "content"); t_str (&b, "x");
    t_byte (&b, 0xc0); t_int (&b, 2);               /* nil key */
    t_expect_bytes (b.data, b.size, ENVELOPE_ERR_MALFORMED, NULL);
    t_free (&b);
    t_header (&b, "message.send", 1);
    t_str (&b, "body"); t_map (&b, 1); t_array (&b, 0); t_int (&b, 2);  /* array key */
    t_expect_bytes (b.data, b.size, ENVELOPE_ERR_MALFORMED, NULL);
    t_free (&b);
    /* duplicate keys */
    t_header (&b, "message.send", 1);
    t_str (&b, "body"); t_map (&b, 2); t_str (&b, "content"); t_str (&b, "x");
    t_str (&b, "content"); t_str (&b, "y");
    t_expect_bytes (b.data, b.size, ENVELOPE_ERR_MALFORMED, NULL);
    t_free (&b);
    t_header (&b, "message.send", 2);
    t_str (&b, "id"); t_str (&b, "again");
    t_str (&b, "body"); t_map (&b, 1); t_str (&b, "content"); t_str (&b, "x");
    t_expect_bytes (b.data, b.size, ENVELOPE_ERR_MALFORMED, NULL);
    t_free (&b);
    /* bin and ext, each form, inside a body */
    const uint8_t refused[][4] = {
        { 0xc4, 0x01, 'x' }, { 0xc5, 0x00, 0x01, 'x' }, { 0xc6, 0x00, 0x00, 0x00 },
        { 0xc7, 0x01, 0x05, 'x' }, { 0xc8, 0x00, 0x01, 0x05 }, { 0xc9, 0x00, 0x00, 0x00 },
        { 0xd4, 0x05, 'x' }, { 0xd5, 0x05, 'x', 'y' }, { 0xd6, 0x05, 1, 2 },
        { 0xd7, 0x05, 1, 2 }, { 0xd8, 0x05, 1, 2 },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        t_any_envelope (&b, refused[i], 4);
        t_expect_bytes (b.data, b.size, ENVELOPE_ERR_WRONG_TYPE, NULL);
        t_free (&b);
    }
    /* 0xc1 is never used */
    t_any_envelope (&b, "\xc1", 1);
    t_expect_bytes (b.data, b.size, ENVELOPE_ERR_MALFORMED, NULL);
    t_free (&b);
}

/* Depth: 32 levels in a converted value or a body field, not 33. */
static void
test_depth (void)
{
    for (int depth = ENVELOPE_MAX_DEPTH; depth <= ENVELOPE_MAX_DEPTH + 1; depth++) {
        bool fits = depth <= ENVELOPE_MAX_DEPTH;
        json_t *nest = t_nest (depth);
        char *data = NULL;
        size_t size = 0;
        CU_ASSERT_EQUAL (envelope_json_to_msgpack (nest, &data, &size), fits ? 0 : -1);
        free (data);

        /* the same nesting as raw msgpack: arrays around an empty array */
        t_buf_t b = { 0 };
        for (int i = 0; i < depth - 1; i++)
            t_byte (&b, 0x91);
        t_byte (&b, 0x90);
        envelope_err_t err = ENVELOPE_ERR_OK;
        json_t *value = envelope_msgpack_to_json (b.data, b.size, &err);
        CU_ASSERT_EQUAL (value != NULL, fits);
        CU_ASSERT_EQUAL (err, fits ? ENVELOPE_ERR_OK : ENVELOPE_ERR_TOO_DEEP);
        json_decref (value);

        /* in an envelope: a body field's value may nest as deep */
        envelope_type_t type;
        json_t *body = t_any_body (&type, json_incref (nest));
        envelope_t *env = t_envelope (type, body);
        CU_ASSERT_EQUAL (t_round_trip (env), fits ? ENVELOPE_ERR_OK : ENVELOPE_ERR_TOO_DEEP);
        envelope_destroy (&env);

        t_buf_t e = { 0 };
        t_any_envelope (&e, b.data, b.size);
        env = t_decode_buf (&e, &err, NULL, 0);
        CU_ASSERT_EQUAL (env != NULL, fits);
        CU_ASSERT_EQUAL (err, fits ? ENVELOPE_ERR_OK : ENVELOPE_ERR_TOO_DEEP);
        envelope_destroy (&env);
        t_free (&e);
        t_free (&b);
        json_decref (nest);
    }
    /* Maps count as levels too; a very deep input stops at the limit. */
    t_buf_t b = { 0 };
    for (int i = 0; i < 100000; i++) {
        t_byte (&b, 0x81);
        t_str (&b, "k");
    }
    t_byte (&b, 0xc0);
    t_expect_bytes (b.data, b.size, ENVELOPE_ERR_TOO_DEEP, "nesting too deep at byte 102");
    t_free (&b);
}

/* Size: the whole envelope is bounded, on decode and on encode. */
static void
test_size (void)
{
    size_t length = ENVELOPE_MAX_BYTES - 200;
    char *text = malloc (length + 1);
    memset (text, 'a', length);
    text[length] = '\0';
    /* a large `any` value in a body fits... */
    envelope_type_t type;
    envelope_t *env = t_envelope (ENVELOPE_INVALID, NULL);
    envelope_set_body (env, t_any_body (&type, json_string (text)));
    env->type = type;
    CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_OK);
    /* ...a larger one does not */
    envelope_set_body (env, t_any_body (&type, json_pack ("[s,s]", text, text)));
    char *data = NULL;
    size_t size = 0;
    envelope_err_t err;
    CU_ASSERT_EQUAL (envelope_encode (env, &data, &size, &err), -1);
    CU_ASSERT_EQUAL (err, ENVELOPE_ERR_TOO_LARGE);
    CU_ASSERT_EQUAL (envelope_json_to_msgpack (env->body, &data, &size), -1);
    envelope_destroy (&env);
    /* and bytes longer than the limit are refused before being read */
    char *bytes = calloc (1, ENVELOPE_MAX_BYTES + 1);
    t_expect_bytes (bytes, ENVELOPE_MAX_BYTES + 1, ENVELOPE_ERR_TOO_LARGE, NULL);
    CU_ASSERT_PTR_NULL (envelope_msgpack_to_json (bytes, ENVELOPE_MAX_BYTES + 1, &err));
    CU_ASSERT_EQUAL (err, ENVELOPE_ERR_TOO_LARGE);
    free (bytes);
    free (text);
}

/* Values: ENVELOPE_MAX_VALUES in all, counted alike on encode and decode. */
static void
test_value_count (void)
{
    /* the converters: an array of n nils is n + 1 values */
    for (size_t n = ENVELOPE_MAX_VALUES - 1; n <= ENVELOPE_MAX_VALUES; n++) {
        bool fits = n + 1 <= ENVELOPE_MAX_VALUES;
        t_buf_t b = { 0 };
        t_array (&b, (uint32_t) n);
        for (size_t i = 0; i < n; i++)
            t_byte (&b, 0xc0);
        envelope_err_t err;
        json_t *value = envelope_msgpack_to_json (b.data, b.size, &err);
        CU_ASSERT_EQUAL (err, fits ? ENVELOPE_ERR_OK : ENVELOPE_ERR_TOO_LARGE);
        json_t *nils = json_array ();
        for (size_t i = 0; i < n; i++)
            json_array_append_new (nils, json_null ());
        char *data = NULL;
        size_t size = 0;
        CU_ASSERT_EQUAL (envelope_json_to_msgpack (nils, &data, &size), fits ? 0 : -1);
        free (data);
        json_decref (value);
        t_free (&b);

        /* an envelope: its map, v, type, id, ts, the body map, the body's
           other fields and the array count too */
        envelope_type_t type;
        json_t *body = t_any_body (&type, json_null ());
        size_t others = json_object_size (body) - 1;
        json_decref (body);
        size_t items = n - 6 - others;
        json_t *array = json_array ();
        for (size_t i = 0; i < items; i++)
            json_array_append_new (array, json_null ());
        envelope_t *env = t_envelope (type, t_any_body (&type, json_incref (array)));
        CU_ASSERT_EQUAL (t_round_trip (env), fits ? ENVELOPE_ERR_OK : ENVELOPE_ERR_TOO_LARGE);
        envelope_destroy (&env);
        t_buf_t nested = { 0 }, e = { 0 };
        t_array (&nested, (uint32_t) items);
        for (size_t i = 0; i < items; i++)
            t_byte (&nested, 0xc0);
        t_any_envelope (&e, nested.data, nested.size);
        env = t_decode_buf (&e, &err, NULL, 0);
        CU_ASSERT_EQUAL (err, fits ? ENVELOPE_ERR_OK : ENVELOPE_ERR_TOO_LARGE);
        envelope_destroy (&env);
        t_free (&nested);
        t_free (&e);
        json_decref (array);
        json_decref (nils);
    }
    /* 2 MiB of empty maps would be ~500 MB of JSON: refused early */
    t_buf_t b = { 0 };
    t_array (&b, ENVELOPE_MAX_BYTES - 5);
    for (size_t i = 0; i < ENVELOPE_MAX_BYTES - 5; i++)
        t_byte (&b, 0x80);
    envelope_err_t err;
    CU_ASSERT_PTR_NULL (envelope_msgpack_to_json (b.data, b.size, &err));
    CU_ASSERT_EQUAL (err, ENVELOPE_ERR_TOO_LARGE);
    t_free (&b);
}

static void
test_names_and_codes (void)
{
    for (size_t t = 0; t < T_TYPE_COUNT; t++) {
        CU_ASSERT_STRING_EQUAL (envelope_type_name (t_types[t].type), t_types[t].name);
        CU_ASSERT_EQUAL (envelope_type_from_name (t_types[t].name), t_types[t].type);
    }
    CU_ASSERT_EQUAL (T_TYPE_COUNT, ENVELOPE_TYPE_COUNT - 1);
    CU_ASSERT_PTR_NULL (envelope_type_name (ENVELOPE_INVALID));
    CU_ASSERT_PTR_NULL (envelope_type_name (ENVELOPE_TYPE_COUNT));
    CU_ASSERT_PTR_NULL (envelope_type_name ((envelope_type_t) -1));
    CU_ASSERT_EQUAL (envelope_type_from_name ("nope"), ENVELOPE_INVALID);
    CU_ASSERT_EQUAL (envelope_type_from_name (""), ENVELOPE_INVALID);
    CU_ASSERT_EQUAL (envelope_type_from_name (NULL), ENVELOPE_INVALID);

    /* codes are the enum names in snake_case; every error has a message */
    struct {
        envelope_err_t err;
        const char *name;
        const char *string;
    } errors[] = {
#define X(e, s) { ENVELOPE_ERR_##e, #e, s },
        ENVELOPE_ERRORS (X)
#undef X
    };
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        char lower[32];
        size_t n = 0;
        for (; errors[i].name[n] && n < sizeof lower - 1; n++)
            lower[n] = (char) (errors[i].name[n] >= 'A' && errors[i].name[n] <= 'Z'
                                   ? errors[i].name[n] + 32 : errors[i].name[n]);
        lower[n] = '\0';
        CU_ASSERT_STRING_EQUAL (envelope_err_code (errors[i].err), lower);
        CU_ASSERT_STRING_EQUAL (envelope_err_string (errors[i].err), errors[i].string);
    }
    CU_ASSERT_STRING_EQUAL (envelope_err_code (ENVELOPE_ERR_TOO_LARGE), "too_large");
    CU_ASSERT_STRING_EQUAL (envelope_err_code ((envelope_err_t) 99), "unknown");
    CU_ASSERT_STRING_EQUAL (envelope_err_string ((envelope_err_t) -1), "unknown error");
}

static bool
t_is_uuid_v4 (const char *id)
{
    if (strlen (id) != 36 || id[14] != '4' || !strchr ("89ab", id[19]))
        return false;
    for (int i = 0; i < 36; i++)
        if (i == 8 || i == 13 || i == 18 || i == 23 ? id[i] != '-' : !strchr ("0123456789abcdef", id[i]))
            return false;
    return true;
}

static void
test_new (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    int64_t ms = (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
    envelope_t *a = envelope_new (ENVELOPE_REPLY);
    envelope_t *b = envelope_new (ENVELOPE_REPLY);
    CU_ASSERT_PTR_NOT_NULL_FATAL (a);
    CU_ASSERT_PTR_NOT_NULL_FATAL (b);
    CU_ASSERT_TRUE (t_is_uuid_v4 (a->id));
    CU_ASSERT_TRUE (t_is_uuid_v4 (b->id));
    CU_ASSERT_STRING_NOT_EQUAL (a->id, b->id);
    CU_ASSERT_TRUE (a->ts >= ms && a->ts < ms + 60000);
    CU_ASSERT_TRUE (json_is_object (a->body) && json_object_size (a->body) == 0);
    CU_ASSERT_STRING_EQUAL (a->user, "");
    CU_ASSERT_EQUAL (a->type, ENVELOPE_REPLY);
    envelope_destroy (&a);
    envelope_destroy (&b);
}

/* xorshift64*: a fixed seed makes any failure reproducible. */
static uint64_t
t_random (uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ULL;
}

/* Whatever decodes must encode again to the same envelope. */
static void
t_fuzz_one (const uint8_t *data, size_t size, size_t *accepted)
{
    envelope_err_t err = ENVELOPE_ERR_OK;
    char detail[96];
    envelope_t *env = envelope_decode (data, size, &err, detail, sizeof detail);
    CU_ASSERT_EQUAL (env == NULL, err != ENVELOPE_ERR_OK);
    CU_ASSERT_TRUE ((int) err >= 0 && (int) err <= ENVELOPE_ERR_BAD_UTF8);
    if (env) {
        (*accepted)++;
        CU_ASSERT_EQUAL (t_round_trip (env), ENVELOPE_ERR_OK);
    }
    envelope_destroy (&env);
    json_t *value = envelope_msgpack_to_json (data, size, &err);
    if (value) {
        char *bytes = NULL;
        size_t n = 0;
        CU_ASSERT_EQUAL (envelope_json_to_msgpack (value, &bytes, &n), 0);
        json_t *copy = envelope_msgpack_to_json (bytes, n, &err);
        CU_ASSERT_TRUE (json_equal (value, copy));
        json_decref (copy);
        free (bytes);
    }
    json_decref (value);
}

static void
test_fuzz_random (void)
{
    uint64_t state = 0x9e3779b97f4a7c15ULL;
    envelope_t *env = t_envelope (ENVELOPE_ROOM_CREATE,
                                  t_body_for (t_types[ENVELOPE_ROOM_CREATE - 1].spec, true));
    snprintf (env->room, sizeof env->room, "%s", T_UUID);
    char *seed = NULL;
    size_t seed_size = 0;
    envelope_err_t err;
    CU_ASSERT_EQUAL_FATAL (envelope_encode (env, &seed, &seed_size, &err), 0);
    envelope_destroy (&env);

    uint8_t buffer[512];
    size_t accepted = 0;
    for (int i = 0; i < 20000; i++) {
        size_t size;
        if (i % 2 == 0) {                   /* random bytes, often map-shaped */
            size = t_random (&state) % 96;
            for (size_t k = 0; k < size; k++)
                buffer[k] = (uint8_t) t_random (&state);
            if (size && i % 4 == 0)
                buffer[0] = (uint8_t) (0x80 | (buffer[0] & 0x0f));
        }
        else {                              /* a valid envelope, mutated */
            size = seed_size;
            memcpy (buffer, seed, size);
            int flips = 1 + (int) (t_random (&state) % 4);
            for (int k = 0; k < flips; k++)
                buffer[t_random (&state) % size] = (uint8_t) t_random (&state);
            if (t_random (&state) % 4 == 0)
                size = t_random (&state) % (seed_size + 1);
        }
        t_fuzz_one (buffer, size, &accepted);
    }
    /* some mutants stay valid; the property above was exercised */
    CU_ASSERT_TRUE (accepted > 0);
    free (seed);
}

/* envelope_peek_id: the id of an envelope that does not decode, for the
   inject's error replies; bounded like the decoder on any input. */
static void
test_peek_id (void)
{
    char id[ENVELOPE_ID_MAX + 1];
    t_buf_t b = { 0 };
    /* an id behind values the decoder refuses: bin, ext, a deep body */
    t_map (&b, 4);
    t_str (&b, "body");
    t_byte (&b, 0xc4), t_byte (&b, 2), t_byte (&b, 0), t_byte (&b, 1);   /* bin 8 */
    t_str (&b, "x");
    t_byte (&b, 0xd6), t_byte (&b, 1), t_be (&b, 7, 4);                  /* fixext 4 */
    t_str (&b, "deep");
    for (int i = 0; i < 20; i++)
        t_array (&b, 1);
    t_byte (&b, 0xc0);
    t_str (&b, "id");
    t_str (&b, "req-7");
    CU_ASSERT_PTR_NULL (envelope_decode (b.data, b.size, NULL, NULL, 0));
    CU_ASSERT_EQUAL (envelope_peek_id (b.data, b.size, id, sizeof id), 0);
    CU_ASSERT_STRING_EQUAL (id, "req-7");
    /* trailing bytes after the map do not matter */
    t_byte (&b, 0xc1);
    CU_ASSERT_EQUAL (envelope_peek_id (b.data, b.size, id, sizeof id), 0);
    t_free (&b);

    /* no id, an id that is not a string or too long, not a map, truncated */
    const char *long_id = "0123456789012345678901234567890123456789012345678901234567890123X";
    for (int how = 0; how < 6; how++) {
        t_map (&b, 1);
        t_str (&b, how == 0 ? "idx" : "id");
        if (how == 1)
            t_int (&b, 5);
        else if (how == 2)
            t_str (&b, long_id);
        else
            t_str (&b, "ok-id");
        size_t size = how == 4 ? b.size - 2 : b.size;
        const uint8_t *data = how == 3 ? (const uint8_t *) "\x91\xa2id" : b.data;
        if (how == 3)
            size = 4;
        int want = how == 5 ? 0 : -1;
        CU_ASSERT_EQUAL (envelope_peek_id (data, size, id, sizeof id), want);
        CU_ASSERT_STRING_EQUAL (id, how == 5 ? "ok-id" : "");
        t_free (&b);
    }
    /* a 4 G-entry map header in 5 bytes; a huge skipped string length */
    CU_ASSERT_EQUAL (envelope_peek_id ("\xdf\xff\xff\xff\xff", 5, id, sizeof id), -1);
    t_map (&b, 2);
    t_str (&b, "a");
    t_byte (&b, 0xdb), t_be (&b, 0xffffffffu, 4);
    CU_ASSERT_EQUAL (envelope_peek_id (b.data, b.size, id, sizeof id), -1);
    t_free (&b);
    CU_ASSERT_EQUAL (envelope_peek_id (NULL, 0, id, sizeof id), -1);
    /* nesting past the decoder's bound before the id: refused, no crash */
    t_map (&b, 2);
    t_str (&b, "a");
    for (int i = 0; i < 100000; i++)
        t_byte (&b, 0x91);
    t_byte (&b, 0xc0);
    t_str (&b, "id");
    t_str (&b, "late");
    CU_ASSERT_EQUAL (envelope_peek_id (b.data, b.size, id, sizeof id), -1);
    t_free (&b);
}

int
main (void)
{
    CU_TestInfo tests[] = {
        { "usage example", test_usage_example },
        { "round trip of every type", test_round_trip_every_type },
        { "fields checked for every type", test_fields_checked_every_type },
        { "optional null and unknown fields", test_optional_null_and_unknown_fields },
        { "spec kinds", test_spec_kinds },
        { "str field length", test_str_field_length },
        { "int64 extremes", test_int64_extremes },
        { "floats", test_floats },
        { "known bytes", test_known_bytes },
        { "utf-8", test_utf8 },
        { "truncated everywhere", test_truncated_everywhere },
        { "header errors", test_header_errors },
        { "structure errors", test_structure_errors },
        { "depth", test_depth },
        { "size", test_size },
        { "value count", test_value_count },
        { "names and codes", test_names_and_codes },
        { "new", test_new },
        { "fuzz random", test_fuzz_random },
        { "peek id", test_peek_id },
        CU_TEST_INFO_NULL
    };
    return unit_run ("envelope", tests);
}
