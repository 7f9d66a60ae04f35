/*  actors/ops/auth.c — accounts, logins and tokens (API.md §1).
 *
 *  A login makes one `sessions` row (the `sessionid` cookie, with its CSRF
 *  token) and one refresh-token family: every refresh row of a login carries
 *  that session's id, so logging out ends the cookie session and every
 *  refresh token of the login together. Access tokens are stateless JWTs
 *  checked by the gateway; refresh tokens are JWTs whose `jti` must also be
 *  a live row of `refresh_tokens` (that is what makes them revocable).
 *
 *  Choices where API.md is silent (see also docs):
 *  - Usernames are ASCII letters, digits and `_.-` (Django's rule without its
 *    Unicode letters and `@+`): a username is typed in `@mentions`.
 *  - Reusing a rotated refresh token answers 401 and revokes nothing more:
 *    a refused request changes nothing (the persister rolls back every
 *    status >= 400), like simplejwt's blacklist, which also only refuses the
 *    used token.
 *  - Logout never fails: an invalid or unknown refresh token is ignored, the
 *    answer is 204 and the cookies are cleared either way.
 *  - Argon2id runs inside the persister's transaction: its cost
 *    (password_ops, password_mem_kib) delays the batch it is in.
 */
#include "ops.h"
#include "token.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_USERNAME_MIN   3
#define AUTH_USERNAME_MAX   150
#define AUTH_PASSWORD_MIN   8
#define AUTH_PASSWORD_MAX   4096   /* characters; Argon2 would take more */
#define AUTH_NAME_MAX       150
#define AUTH_EMAIL_MAX      254
#define AUTH_SECRET_BYTES   32     /* session id and CSRF token entropy */

static const char *const s_invalid_credentials =
    "No active account found with the given credentials";
static const char *const s_required = "This field is required.";

/* --- input ---------------------------------------------------------------- */

/* Characters (code points) of valid UTF-8 text. */
static size_t
s_chars (const char *text)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        n += (*p & 0xC0) != 0x80;
    return n;
}

/* Adds `message` to `errors[field]` (DRF reports every field at once). */
static void
s_error (json_t *errors, const char *field, const char *message)
{
    json_t *list = json_object_get (errors, field);
    if (!list) {
        list = json_array ();
        json_object_set_new (errors, field, list);
    }
    json_array_append_new (list, json_string (message));
}

/* Reads body string `field` into `out`: NULL when absent or null; records
   a type error, or a missing-field error when `required`. */
static void
s_text (op_t *op, json_t *errors, const char *field, bool required, const char **out)
{
    json_t *value = op->body ? json_object_get (op->body, field) : NULL;
    *out = NULL;
    if (!value || json_is_null (value)) {
        if (required)
            s_error (errors, field, s_required);
    }
    else if (!json_is_string (value))
        s_error (errors, field, "Not a valid string.");
    else if (required && !*json_string_value (value))
        s_error (errors, field, "This field may not be blank.");
    else
        *out = json_string_value (value);
}

static void
s_check_username (json_t *errors, const char *username)
{
    size_t len = strlen (username);
    if (len < AUTH_USERNAME_MIN)
        s_error (errors, "username", "Ensure this field has at least 3 characters.");
    else if (len > AUTH_USERNAME_MAX)
        s_error (errors, "username", "Ensure this field has no more than 150 characters.");
    else if (strspn (username, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789_.-") != len)
        s_error (errors, "username", "Enter a valid username. This value may contain"
                                     " only letters, numbers, and ./-/_ characters.");
}

/* A basic shape check (local@domain.tld), not RFC 5322: the address is only
   used to send notification emails. */
static bool
s_email_ok (const char *email)
{
    const char *at = strchr (email, '@');
    if (!at || at == email || strchr (at + 1, '@') || strlen (email) > AUTH_EMAIL_MAX
        || at - email > 64)
        return false;
    for (const unsigned char *p = (const unsigned char *) email; *p; p++)
        if (*p <= ' ' || *p == 0x7F || *p == '"' || *p == '<' || *p == '>'
            || *p == ',' || *p == ';' || *p == '\\')
            return false;
    const char *domain = at + 1;
    const char *dot = strrchr (domain, '.');
    return dot && dot > domain && dot[1] && domain[0] != '-' && domain[0] != '.'
           && !strstr (domain, "..");
}

static void
s_check_fields (json_t *errors, const char *password, const char *email,
                const char *display_name)
{
    if (password && s_chars (password) < AUTH_PASSWORD_MIN)
        s_error (errors, "password",
                 "This password is too short. It must contain at least 8 characters.");
    else if (password && s_chars (password) > AUTH_PASSWORD_MAX)
        s_error (errors, "password", "Ensure this field has no more than 4096 characters.");
    if (email && *email && !s_email_ok (email))
        s_error (errors, "email", "Enter a valid email address.");
    if (display_name && s_chars (display_name) > AUTH_NAME_MAX)
        s_error (errors, "display_name", "Ensure this field has no more than 150 characters.");
}

/* --- register ------------------------------------------------------------- */

/* 1 when `username` is taken, 0 when free, -1 on database failure. */
static int
s_username_taken (op_t *op, const char *username)
{
    char id[40];
    const char *params[] = { username };
    return op_query_text (op, "SELECT id FROM users WHERE username = $1", 1, params,
                          id, sizeof id);
}

/* Inserts the user; the users_created trigger (001_core.sql) makes their
   presence and notification_settings rows. Answers 201 or 400. */
static int
s_insert_user (op_t *op, const char *username, const char *hash, const char *email,
               const char *display_name)
{
    const char *params[] = { username, hash, email ? email : "",
                             display_name ? display_name : "" };
    json_t *user = op_query_json (op,
        "WITH u AS (INSERT INTO users (username, password_hash, email, display_name)"
        " VALUES ($1, $2, $3, $4) RETURNING *)"
        " SELECT parley_user_json(u, u.id) FROM u", 4, params);
    if (!user && strcmp (op_sqlstate (op), "23505") == 0) {
        /* registered concurrently since our check */
        op_field_error (op, "username", "A user with that username already exists.");
        return 0;
    }
    if (!user)
        return -1;
    op_reply (op, 201, user);
    return 0;
}

static int
s_register (op_t *op)
{
    json_t *errors = json_object ();
    const char *username, *password, *email, *display_name;
    s_text (op, errors, "username", true, &username);
    s_text (op, errors, "password", true, &password);
    s_text (op, errors, "email", false, &email);
    s_text (op, errors, "display_name", false, &display_name);
    if (username)
        s_check_username (errors, username);
    s_check_fields (errors, password, email, display_name);
    if (username && !json_object_get (errors, "username")) {
        int taken = s_username_taken (op, username);
        if (taken < 0) {
            json_decref (errors);
            return -1;
        }
        if (taken)
            s_error (errors, "username", "A user with that username already exists.");
    }
    if (json_object_size (errors) > 0) {
        op_reply (op, 400, errors);
        return 0;
    }
    json_decref (errors);
    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str (hash, password, strlen (password),
                           (unsigned long long) op->config->password_ops,
                           (size_t) op->config->password_mem_kib * 1024) != 0)
        return -1;   /* out of memory */
    return s_insert_user (op, username, hash, email, display_name);
}

/* --- tokens and sessions ---------------------------------------------------- */

/* Issues an access token and a refresh token for `user`, records the refresh
   token (bound to `session`, may be NULL; its jti goes to `refresh_jti`,
   TOKEN_ID_SIZE bytes) and sets "access" and "refresh" in `out`. Returns 0
   or -1. */
static int
s_issue_pair (op_t *op, const char *user, const char *session, json_t *out,
              char *refresh_jti)
{
    const config_t *config = op->config;
    char jti[TOKEN_ID_SIZE], ttl[24];
    char *access = token_issue (config->jwt_secret, user, "access",
                                config->access_token_ttl, jti);
    char *refresh = token_issue (config->jwt_secret, user, "refresh",
                                 config->refresh_token_ttl, refresh_jti);
    int rc = -1;
    if (!access || !refresh)
        goto cleanup;
    snprintf (ttl, sizeof ttl, "%lld", (long long) config->refresh_token_ttl);
    const char *params[] = { refresh_jti, user, session, ttl };
    if (op_command (op,
            "INSERT INTO refresh_tokens (jti, user_id, session_id, expires_at)"
            " VALUES ($1::uuid, $2::uuid, $3, now() + $4::bigint * interval '1 second')",
            4, params) != 1)
        goto cleanup;
    json_object_set_new (out, "access", json_string (access));
    json_object_set_new (out, "refresh", json_string (refresh));
    rc = 0;
cleanup:
    free (access);
    free (refresh);
    return rc;
}

/* Starts a cookie session for `user` and sets its two cookies. Writes the
   session id into `sid` (sid_size bytes). Returns 0 or -1. */
static int
s_start_session (op_t *op, const char *user, char *sid, size_t sid_size)
{
    char csrf[64], ttl[24], cookie[256];
    token_random (sid, sid_size, AUTH_SECRET_BYTES);
    token_random (csrf, sizeof csrf, AUTH_SECRET_BYTES);
    snprintf (ttl, sizeof ttl, "%lld", (long long) op->config->refresh_token_ttl);
    const char *params[] = { sid, user, csrf, ttl };
    if (op_command (op,
            "INSERT INTO sessions (id, user_id, csrf_token, expires_at)"
            " VALUES ($1, $2::uuid, $3, now() + $4::bigint * interval '1 second')",
            4, params) != 1)
        return -1;
    snprintf (cookie, sizeof cookie, "sessionid=%s; HttpOnly; SameSite=Lax; Path=/; Max-Age=%s",
              sid, ttl);
    op_header (op, "Set-Cookie", cookie);
    /* readable by scripts: they copy it into X-CSRFToken */
    snprintf (cookie, sizeof cookie, "csrftoken=%s; SameSite=Lax; Path=/; Max-Age=%s",
              csrf, ttl);
    op_header (op, "Set-Cookie", cookie);
    return 0;
}

/* Ends the session `sid` and every refresh token of its login. */
static int
s_end_session (op_t *op, const char *sid)
{
    const char *params[] = { sid };
    if (op_command (op, "UPDATE sessions SET revoked_at = now()"
                        " WHERE id = $1 AND revoked_at IS NULL", 1, params) < 0)
        return -1;
    return op_command (op, "UPDATE refresh_tokens SET revoked_at = now()"
                           " WHERE session_id = $1 AND revoked_at IS NULL",
                       1, params) < 0 ? -1 : 0;
}

/* --- login ---------------------------------------------------------------- */

/* Re-hashes a correct password stored with other Argon2id limits than the
   configured ones (as Django upgrades hashes at login). 0 or -1. */
static int
s_rehash (op_t *op, const char *user, const char *password, const char *stored)
{
    unsigned long long ops = (unsigned long long) op->config->password_ops;
    size_t mem = (size_t) op->config->password_mem_kib * 1024;
    if (crypto_pwhash_str_needs_rehash (stored, ops, mem) == 0)
        return 0;
    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str (hash, password, strlen (password), ops, mem) != 0)
        return -1;
    const char *params[] = { hash, user };
    return op_command (op, "UPDATE users SET password_hash = $1 WHERE id = $2::uuid",
                       2, params) == 1 ? 0 : -1;
}

/* Looks the user up and checks the password: 1 with the id in `user`
   (TOKEN_ID_SIZE), 0 for wrong credentials, -1 on database failure. An
   unknown username answers faster than a wrong password; register/ tells
   taken names apart anyway (400), so that reveals nothing more. */
static int
s_check_credentials (op_t *op, const char *username, const char *password, char *user)
{
    const char *params[] = { username };
    PGresult *res = op_exec (op, "SELECT id, password_hash FROM users WHERE username = $1",
                             1, params);
    if (!res)
        return -1;
    int ok = PQntuples (res) == 1
             && crypto_pwhash_str_verify (PQgetvalue (res, 0, 1), password,
                                          strlen (password)) == 0;
    if (ok) {
        snprintf (user, TOKEN_ID_SIZE, "%s", PQgetvalue (res, 0, 0));
        if (s_rehash (op, user, password, PQgetvalue (res, 0, 1)) != 0)
            ok = -1;
    }
    PQclear (res);
    return ok;
}

static int
s_login (op_t *op)
{
    json_t *errors = json_object ();
    const char *username, *password;
    s_text (op, errors, "username", true, &username);
    s_text (op, errors, "password", true, &password);
    if (json_object_size (errors) > 0) {
        op_reply (op, 400, errors);
        return 0;
    }
    json_decref (errors);
    char user[TOKEN_ID_SIZE], sid[64], jti[TOKEN_ID_SIZE];
    int found = s_check_credentials (op, username, password, user);
    if (found <= 0) {
        if (found == 0)
            op_detail (op, 401, s_invalid_credentials);
        return found;
    }
    /* a new login replaces the session the client came with (no fixation) */
    const char *old = json_string_value (json_object_get (op->auth, "session"));
    if (old && s_end_session (op, old) != 0)
        return -1;
    json_t *answer = json_object ();
    if (s_start_session (op, user, sid, sizeof sid) != 0
        || s_issue_pair (op, user, sid, answer, jti) != 0) {
        json_decref (answer);
        return -1;
    }
    const char *params[] = { user };
    json_t *me = op_query_json (op, "SELECT parley_user_json(u, u.id) FROM users u"
                                    " WHERE u.id = $1::uuid", 1, params);
    if (!me) {
        json_decref (answer);
        return -1;
    }
    json_object_set_new (answer, "user", me);
    op_reply (op, 200, answer);
    return 0;
}

/* --- refresh -------------------------------------------------------------- */

static void
s_token_not_valid (op_t *op)
{
    op_reply (op, 401, json_pack ("{s:s s:s}", "detail", "Token is invalid or expired",
                                  "code", "token_not_valid"));
    op_header (op, "WWW-Authenticate", "Bearer realm=\"api\"");
}

/* Replaces the used refresh token `jti` by a new pair in the same family
   (session); answers 200 {"access", "refresh"}. */
static int
s_rotate (op_t *op, const char *user, const char *jti, const char *session)
{
    json_t *answer = json_object ();
    char next[TOKEN_ID_SIZE];
    if (s_issue_pair (op, user, *session ? session : NULL, answer, next) != 0) {
        json_decref (answer);
        return -1;
    }
    const char *params[] = { jti, next };
    if (op_command (op, "UPDATE refresh_tokens SET replaced_by = $2::uuid"
                        " WHERE jti = $1::uuid", 2, params) < 0) {
        json_decref (answer);
        return -1;
    }
    op_reply (op, 200, answer);
    return 0;
}

static int
s_refresh (op_t *op)
{
    json_t *errors = json_object ();
    const char *token;
    s_text (op, errors, "refresh", true, &token);
    if (json_object_size (errors) > 0) {
        op_reply (op, 400, errors);
        return 0;
    }
    json_decref (errors);
    char user[TOKEN_ID_SIZE], jti[TOKEN_ID_SIZE], session[64] = "";
    if (token_verify (op->config->jwt_secret, token, "refresh", user, jti) != 0
        || !op_is_uuid (jti) || !op_is_uuid (user)) {
        s_token_not_valid (op);
        return 0;
    }
    /* the row lock makes concurrent uses of one token race for one winner */
    const char *params[] = { jti, user };
    PGresult *res = op_exec (op,
        "UPDATE refresh_tokens SET used_at = now() WHERE jti = $1::uuid"
        " AND user_id = $2::uuid AND used_at IS NULL AND revoked_at IS NULL"
        " AND expires_at > now() RETURNING coalesce(session_id, '')", 2, params);
    if (!res)
        return -1;
    bool live = PQntuples (res) == 1;
    if (live)
        snprintf (session, sizeof session, "%s", PQgetvalue (res, 0, 0));
    PQclear (res);
    if (!live) {
        s_token_not_valid (op);
        return 0;
    }
    return s_rotate (op, user, jti, session);
}

/* --- logout --------------------------------------------------------------- */

/* The refresh token in the body, if it is a valid one: its login ends. A
   bearer secret proves itself, whoever sends it. */
static int
s_logout_refresh (op_t *op)
{
    json_t *value = op->body ? json_object_get (op->body, "refresh") : NULL;
    if (!json_is_string (value))
        return 0;
    char user[TOKEN_ID_SIZE], jti[TOKEN_ID_SIZE], session[64];
    if (token_verify (op->config->jwt_secret, json_string_value (value), "refresh",
                      user, jti) != 0 || !op_is_uuid (jti))
        return 0;
    const char *params[] = { jti };
    int found = op_query_text (op,
        "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now())"
        " WHERE jti = $1::uuid RETURNING session_id", 1, params, session, sizeof session);
    if (found <= 0)
        return found;
    return s_end_session (op, session);
}

static int
s_logout (op_t *op)
{
    json_t *value = op->body ? json_object_get (op->body, "refresh") : NULL;
    if (value && !json_is_null (value) && !json_is_string (value)) {
        op_field_error (op, "refresh", "Not a valid string.");
        return 0;
    }
    if (s_logout_refresh (op) != 0)
        return -1;
    const char *sid = json_string_value (json_object_get (op->auth, "session"));
    if (sid && s_end_session (op, sid) != 0)
        return -1;
    op_header (op, "Set-Cookie", "sessionid=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0");
    op_header (op, "Set-Cookie", "csrftoken=; SameSite=Lax; Path=/; Max-Age=0");
    op_reply (op, 204, NULL);
    return 0;
}

/* --- me and users --------------------------------------------------------- */

static int
s_me (op_t *op)
{
    const char *params[] = { op->user_id };
    int rc = op_query_reply (op, 200, "SELECT parley_user_json(u, u.id) FROM users u"
                                      " WHERE u.id = $1::uuid", 1, params);
    if (rc == 0) {
        /* a valid token of a user that no longer exists */
        op_detail (op, 401, "User not found");
        op_header (op, "WWW-Authenticate", "Bearer realm=\"api\"");
    }
    return rc < 0 ? -1 : 0;
}

/* `?search=` as Django's icontains: a literal substring, so LIKE's own
   wildcards in it are escaped. Caller frees. */
static char *
s_like_pattern (const char *search)
{
    char *pattern = malloc (2 * strlen (search) + 3);
    if (!pattern)
        return NULL;
    char *out = pattern;
    *out++ = '%';
    for (const char *p = search; *p; p++) {
        if (*p == '%' || *p == '_' || *p == '\\')
            *out++ = '\\';
        *out++ = *p;
    }
    *out++ = '%';
    *out = '\0';
    return pattern;
}

static int
s_users_list (op_t *op)
{
    const char *search = NULL;
    op_query_string (op, "search", &search);
    char *pattern = search ? s_like_pattern (search) : NULL;
    if (search && !pattern)
        return -1;
    const char *params[] = { pattern };
    int rc = op_list (op,
        "SELECT count(*) FROM users u WHERE $1::text IS NULL"
        " OR u.username ILIKE $1 OR u.display_name ILIKE $1",
        "SELECT parley_user_brief_json(u) FROM users u WHERE $1::text IS NULL"
        " OR u.username ILIKE $1 OR u.display_name ILIKE $1"
        " ORDER BY u.username, u.id LIMIT $2 OFFSET $3", 1, params);
    free (pattern);
    return rc;
}

const op_def_t ops_auth[] = {
    { "auth.register", s_register,   true },
    { "auth.login",    s_login,      true },
    { "auth.refresh",  s_refresh,    true },
    { "auth.logout",   s_logout,     true },
    { "auth.me",       s_me,         false },
    { "users.list",    s_users_list, false },
    { NULL, NULL, false }
};
