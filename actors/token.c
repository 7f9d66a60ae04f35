/*  actors/token.c — HS256 JWTs with the checks libjwt 1.10 lacks. */
#include "token.h"

#include <errno.h>
#include <jwt.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void
token_uuid (char *out)
{
    unsigned char b[16];
    randombytes_buf (b, sizeof b);
    b[6] = (unsigned char) ((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char) ((b[8] & 0x3f) | 0x80);
    snprintf (out, TOKEN_ID_SIZE,
              "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
              b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
              b[11], b[12], b[13], b[14], b[15]);
}

void
token_random (char *out, size_t out_size, size_t bytes)
{
    unsigned char b[64];
    if (bytes > sizeof b)
        bytes = sizeof b;
    randombytes_buf (b, bytes);
    sodium_bin2base64 (out, out_size, b, bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

char *
token_issue (const char *secret, const char *user_id, const char *type,
             int64_t ttl_seconds, char *jti)
{
    jwt_t *jwt = NULL;
    char *token = NULL;
    if (jwt_new (&jwt) != 0)
        return NULL;
    time_t now = time (NULL);
    token_uuid (jti);
    if (jwt_add_grant (jwt, "sub", user_id) == 0
        && jwt_add_grant (jwt, "type", type) == 0
        && jwt_add_grant (jwt, "jti", jti) == 0
        && jwt_add_grant_int (jwt, "iat", (long) now) == 0
        && jwt_add_grant_int (jwt, "exp", (long) (now + ttl_seconds)) == 0
        && jwt_set_alg (jwt, JWT_ALG_HS256, (const unsigned char *) secret,
                        (int) strlen (secret)) == 0)
        token = jwt_encode_str (jwt);
    jwt_free (jwt);
    return token;
}

int
token_verify (const char *secret, const char *token, const char *type,
              char *user_id, char *jti)
{
    if (!secret || !*secret || !token || !*token)
        return -1;        /* never decode without a key: alg none would pass */
    jwt_t *jwt = NULL;
    if (jwt_decode (&jwt, token, (const unsigned char *) secret, (int) strlen (secret)) != 0)
        return -1;
    int rc = -1;
    if (jwt_get_alg (jwt) != JWT_ALG_HS256)
        goto done;
    errno = 0;
    long exp = jwt_get_grant_int (jwt, "exp");
    if (errno != 0 || exp <= (long) time (NULL))
        goto done;
    const char *got_type = jwt_get_grant (jwt, "type");
    const char *sub = jwt_get_grant (jwt, "sub");
    const char *id = jwt_get_grant (jwt, "jti");
    if (!got_type || strcmp (got_type, type) != 0 || !sub || strlen (sub) >= TOKEN_ID_SIZE
        || (id && strlen (id) >= TOKEN_ID_SIZE))
        goto done;
    if (user_id)
        snprintf (user_id, TOKEN_ID_SIZE, "%s", sub);
    if (jti)
        snprintf (jti, TOKEN_ID_SIZE, "%s", id ? id : "");
    rc = 0;
done:
    jwt_free (jwt);
    return rc;
}
