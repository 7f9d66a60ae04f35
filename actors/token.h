/*  actors/token.h — Parley's JSON Web Tokens (HS256, libjwt 1.10).
 *
 *  libjwt 1.10 checks neither `exp` nor the algorithm when decoding; this
 *  module pins HS256, never decodes without a key, and checks exp and the
 *  token `type` itself (see DEPENDENCIES.md). Pure functions, no state.
 */
#ifndef PARLEY_TOKEN_H
#define PARLEY_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_ID_SIZE 40   /* room for a UUID and its NUL */

/* Issues a token {sub, iat, exp = now + ttl, jti, type}. Writes its jti into
   `jti` (TOKEN_ID_SIZE bytes). Returns the token (caller frees with free())
   or NULL. */
char *token_issue (const char *secret, const char *user_id, const char *type,
                   int64_t ttl_seconds, char *jti);

/* Verifies signature (HS256 only), exp (> now) and type. On success returns
   0 and writes the subject and jti (TOKEN_ID_SIZE bytes each; either may be
   NULL); otherwise -1. */
int token_verify (const char *secret, const char *token, const char *type,
                  char *user_id, char *jti);

/* Writes a random UUID v4 string into `out` (TOKEN_ID_SIZE bytes). */
void token_uuid (char *out);

/* Writes `bytes` random bytes as URL-safe base64 into `out` (a session id,
   a CSRF token). out_size must hold 4*bytes/3 + 4. */
void token_random (char *out, size_t out_size, size_t bytes);

#endif
