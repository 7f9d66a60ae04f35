/*  tests/unit/test_token.c — JWTs: what libjwt 1.10 accepts and Parley must
 *  not (alg none, other HMACs, expired, wrong type, wrong key). */
#include "token.h"
#include "unit.h"

#include <jwt.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *SECRET = "a-test-secret-that-is-long-enough-0123456789";

/* Usage: issue an access token and verify it. */
static void
test_issue_and_verify (void)
{
    char jti[TOKEN_ID_SIZE], user[TOKEN_ID_SIZE], got_jti[TOKEN_ID_SIZE];
    char *token = token_issue (SECRET, "7b0c5f9e-0000-4000-8000-000000000001", "access", 60, jti);
    CU_ASSERT_PTR_NOT_NULL_FATAL (token);
    CU_ASSERT_EQUAL (token_verify (SECRET, token, "access", user, got_jti), 0);
    CU_ASSERT_STRING_EQUAL (user, "7b0c5f9e-0000-4000-8000-000000000001");
    CU_ASSERT_STRING_EQUAL (got_jti, jti);
    free (token);
}

static void
test_wrong_type_and_key (void)
{
    char jti[TOKEN_ID_SIZE];
    char *token = token_issue (SECRET, "u", "refresh", 60, jti);
    CU_ASSERT_EQUAL (token_verify (SECRET, token, "access", NULL, NULL), -1);
    CU_ASSERT_EQUAL (token_verify ("another-secret-entirely-0123456789", token, "refresh",
                                   NULL, NULL), -1);
    CU_ASSERT_EQUAL (token_verify ("", token, "refresh", NULL, NULL), -1);
    CU_ASSERT_EQUAL (token_verify (SECRET, "not.a.token", "refresh", NULL, NULL), -1);
    CU_ASSERT_EQUAL (token_verify (SECRET, "", "refresh", NULL, NULL), -1);
    free (token);
}

/* Signs claims with `alg` and `key` (NULL key: alg none). */
static char *
s_forge (jwt_alg_t alg, const char *key, long exp, const char *type)
{
    jwt_t *jwt = NULL;
    jwt_new (&jwt);
    jwt_add_grant (jwt, "sub", "7b0c5f9e-0000-4000-8000-000000000001");
    jwt_add_grant (jwt, "type", type);
    jwt_add_grant (jwt, "jti", "x");
    jwt_add_grant_int (jwt, "exp", exp);
    jwt_set_alg (jwt, alg, (const unsigned char *) key, key ? (int) strlen (key) : 0);
    char *token = jwt_encode_str (jwt);
    jwt_free (jwt);
    return token;
}

static void
test_forgeries_refused (void)
{
    long later = (long) time (NULL) + 600;
    char *none = s_forge (JWT_ALG_NONE, NULL, later, "access");
    char *hs512 = s_forge (JWT_ALG_HS512, SECRET, later, "access");
    char *expired = s_forge (JWT_ALG_HS256, SECRET, (long) time (NULL) - 1, "access");
    char *fine = s_forge (JWT_ALG_HS256, SECRET, later, "access");
    CU_ASSERT_EQUAL (token_verify (SECRET, none, "access", NULL, NULL), -1);
    CU_ASSERT_EQUAL (token_verify (SECRET, hs512, "access", NULL, NULL), -1);
    CU_ASSERT_EQUAL (token_verify (SECRET, expired, "access", NULL, NULL), -1);
    CU_ASSERT_EQUAL (token_verify (SECRET, fine, "access", NULL, NULL), 0);
    free (none);
    free (hs512);
    free (expired);
    free (fine);
}

static void
test_random_ids (void)
{
    char a[TOKEN_ID_SIZE], b[TOKEN_ID_SIZE], r[128];
    token_uuid (a);
    token_uuid (b);
    CU_ASSERT_EQUAL (strlen (a), 36);
    CU_ASSERT_EQUAL (a[14], '4');
    CU_ASSERT_STRING_NOT_EQUAL (a, b);
    token_random (r, sizeof r, 32);
    CU_ASSERT_EQUAL (strlen (r), 43);
}

int
main (void)
{
    if (sodium_init () < 0)
        return 2;
    CU_TestInfo tests[] = {
        { "issue and verify", test_issue_and_verify },
        { "wrong type or key", test_wrong_type_and_key },
        { "forgeries refused", test_forgeries_refused },
        { "random ids", test_random_ids },
        CU_TEST_INFO_NULL
    };
    return unit_run ("token", tests);
}
