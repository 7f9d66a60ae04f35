/*  Build (not part of the default build; needs clang with libFuzzer):
 *    clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Ischema schema/envelope.c tests/fuzz/fuzz_envelope.c $(pkg-config --cflags --libs msgpack jansson libsodium) -lm -o fuzz_envelope
 *  Run from the repo root: ./fuzz_envelope -max_len=4096 -max_total_time=300 corpus_dir/
 *
 *  libFuzzer target for the envelope codec: every input goes through
 *  envelope_decode, envelope_peek_id and envelope_msgpack_to_json, and whatever they accept
 *  must encode again and decode to the same value (a crash, leak, sanitizer
 *  report or failed check is a finding).
 */
#include "envelope.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    envelope_err_t err;
    char detail[128];
    envelope_t *env = envelope_decode (data, size, &err, detail, sizeof detail);
    if (env) {
        char *bytes = NULL;
        size_t n = 0;
        if (envelope_encode (env, &bytes, &n, &err) != 0)
            abort ();                       /* accepted but not encodable */
        envelope_t *copy = envelope_decode (bytes, n, &err, NULL, 0);
        if (!copy || copy->type != env->type || strcmp (copy->id, env->id) != 0
            || copy->ts != env->ts || !json_equal (copy->body, env->body))
            abort ();                       /* not the same after a round trip */
        envelope_destroy (&copy);
        free (bytes);
    }
    envelope_destroy (&env);

    char id[ENVELOPE_ID_MAX + 1];
    if (envelope_peek_id (data, size, id, sizeof id) == 0 && strlen (id) > ENVELOPE_ID_MAX)
        abort ();                           /* the bound it promises */

    json_t *value = envelope_msgpack_to_json (data, size, &err);
    if (value) {
        char *bytes = NULL;
        size_t n = 0;
        if (envelope_json_to_msgpack (value, &bytes, &n) != 0)
            abort ();
        json_t *copy = envelope_msgpack_to_json (bytes, n, &err);
        if (!json_equal (copy, value))
            abort ();
        json_decref (copy);
        free (bytes);
    }
    json_decref (value);
    return 0;
}
