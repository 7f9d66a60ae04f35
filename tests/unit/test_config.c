/*  tests/unit/test_config.c — CUnit suite for actors/config.c.
 *
 *  Defaults, the file format, environment overrides, every kind of error
 *  (each must name the setting, and the file and line where there is one),
 *  ranges of every integer setting, booleans, printing with secrets hidden,
 *  and parley.conf.example against the table.
 *
 *  `test_config --write-example > parley.conf.example` regenerates the
 *  example file from actors/config.h.
 */
#include "config.h"
#include "unit.h"

#include <CUnit/Basic.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PARLEY_SOURCE_DIR
#define PARLEY_SOURCE_DIR "."
#endif

/* --- helpers -------------------------------------------------------------- */

typedef struct {
    const char *name;
    char kind;                   /* 'S', 'I' or 'B' */
    const char *def;
    long long min, max;
} t_setting_t;

static const t_setting_t t_settings[] = {
#define X(name, kind, def, lo, hi, help) { #name, #kind[0], def, lo, hi },
    CONFIG_SETTINGS (X)
#undef X
};
#define T_COUNT (sizeof t_settings / sizeof t_settings[0])

/* Writes `text` to a new temporary file; the caller unlinks `path`. */
static void
t_write_file (char *path, size_t size, const char *text)
{
    snprintf (path, size, "/tmp/parley-test-config-XXXXXX");
    int fd = mkstemp (path);
    CU_ASSERT_FATAL (fd >= 0);
    size_t length = strlen (text);
    CU_ASSERT_FATAL (write (fd, text, length) == (ssize_t) length);
    close (fd);
}

/* Loads `text` as a configuration file. */
static config_t *
t_load_text (const char *text, char *error, size_t error_size, char *path, size_t path_size)
{
    t_write_file (path, path_size, text);
    config_t *config = config_load (path, error, error_size);
    unlink (path);
    return config;
}

/* Loading `text` must fail with exactly "<path>:<want>". */
static void
t_expect_file_error (const char *text, const char *want)
{
    char error[512] = "", path[64], expected[600];
    config_t *config = t_load_text (text, error, sizeof error, path, sizeof path);
    CU_ASSERT_PTR_NULL (config);
    snprintf (expected, sizeof expected, "%s:%s", path, want);
    CU_ASSERT_STRING_EQUAL (error, expected);
    if (strcmp (error, expected) != 0)
        fprintf (stderr, "\n  got:    %s\n  wanted: %s\n", error, expected);
    config_destroy (&config);
}

/* Setting `key` to `value` must fail with an error starting "key: ". */
static void
t_expect_set_error (config_t *config, const char *key, const char *value)
{
    char error[512] = "", prefix[96];
    CU_ASSERT_EQUAL (config_set (config, key, value, error, sizeof error), -1);
    snprintf (prefix, sizeof prefix, "%s: ", key);
    CU_ASSERT_EQUAL (strncmp (error, prefix, strlen (prefix)), 0);
    if (strncmp (error, prefix, strlen (prefix)) != 0)
        fprintf (stderr, "\n  %s = '%s': error '%s'\n", key, value, error);
}

static bool
t_same (const config_t *a, const config_t *b)
{
    bool same = true;
#define X(name, kind, def, lo, hi, help) same = same && T_SAME_##kind (a->name, b->name);
#define T_SAME_STR(x, y)  (strcmp ((x), (y)) == 0)
#define T_SAME_INT(x, y)  ((x) == (y))
#define T_SAME_BOOL(x, y) ((x) == (y))
    CONFIG_SETTINGS (X)
#undef X
    return same;
}

static void
t_env_name (char *out, size_t size, const char *setting)
{
    size_t n = (size_t) snprintf (out, size, "PARLEY_");
    for (; *setting && n + 1 < size; setting++)
        out[n++] = (char) toupper ((unsigned char) *setting);
    out[n] = '\0';
}

/* Removes every PARLEY_<SETTING> variable, so the host cannot interfere. */
static void
t_clear_environment (void)
{
    for (size_t i = 0; i < T_COUNT; i++) {
        char name[96];
        t_env_name (name, sizeof name, t_settings[i].name);
        unsetenv (name);
    }
}

/* --- tests ---------------------------------------------------------------- */

/* Usage: load (defaults, file, environment), read fields, destroy. */
static void
test_usage_example (void)
{
    char error[512], path[64];
    config_t *config = t_load_text ("# my Parley\nhttp_port = 9090\nlog_level = debug\n",
                                    error, sizeof error, path, sizeof path);
    CU_ASSERT_PTR_NOT_NULL_FATAL (config);
    CU_ASSERT_EQUAL (config->http_port, 9090);
    CU_ASSERT_STRING_EQUAL (config->log_level, "debug");
    CU_ASSERT_STRING_EQUAL (config->http_host, "127.0.0.1");   /* a default */
    config_destroy (&config);
    CU_ASSERT_PTR_NULL (config);
    config_destroy (&config);                                   /* NULL-safe */
    config_destroy (NULL);
}

static void
test_defaults (void)
{
    char error[512] = "x";
    config_t *config = config_load (NULL, error, sizeof error);
    CU_ASSERT_PTR_NOT_NULL_FATAL (config);
    CU_ASSERT_STRING_EQUAL (error, "");
#define X(name, kind, def, lo, hi, help) T_DEFAULT_##kind (config->name, def);
#define T_DEFAULT_STR(field, def)  CU_ASSERT_STRING_EQUAL (field, def)
#define T_DEFAULT_INT(field, def)  CU_ASSERT_EQUAL (field, strtoll (def, NULL, 10))
#define T_DEFAULT_BOOL(field, def) do { bool b; CU_ASSERT_EQUAL (config_parse_bool (def, &b), 0); \
                                        CU_ASSERT_EQUAL (field, b); } while (0)
    CONFIG_SETTINGS (X)
#undef X
    CU_ASSERT_EQUAL (config->http_port, 8080);
    CU_ASSERT_STRING_EQUAL (config->jwt_secret, "");
    /* the error buffer is optional */
    config_t *again = config_load (NULL, NULL, 0);
    CU_ASSERT_TRUE (again && t_same (config, again));
    config_destroy (&again);
    config_destroy (&config);
}

static void
test_file_format (void)
{
    char error[512], path[64];
    config_t *config = t_load_text (
        "\xef\xbb\xbf# a comment\n"
        "\n"
        "   # an indented comment\n"
        "http_host=0.0.0.0\n"
        "  http_port   =   8443   \n"
        "smtp_from = \"Parley <parley@example.org>\"\n"
        "var_dir = '/var/lib/parley'\n"
        "public_url = \"  spaced  \"\n"
        "metrics_token = \"\"\n"
        "assistant_username = \"half\n"
        "jwt_secret = a=b#c\r\n"
        "log_level = warn\r\n"
        "room_shards = 0\n"
        "http_port = 8444\n"
        "\t\n",
        error, sizeof error, path, sizeof path);
    CU_ASSERT_PTR_NOT_NULL_FATAL (config);
    CU_ASSERT_STRING_EQUAL (config->http_host, "0.0.0.0");
    CU_ASSERT_EQUAL (config->http_port, 8444);                   /* the last wins */
    CU_ASSERT_STRING_EQUAL (config->smtp_from, "Parley <parley@example.org>");
    CU_ASSERT_STRING_EQUAL (config->var_dir, "/var/lib/parley");
    CU_ASSERT_STRING_EQUAL (config->public_url, "  spaced  ");
    CU_ASSERT_STRING_EQUAL (config->metrics_token, "");
    CU_ASSERT_STRING_EQUAL (config->assistant_username, "\"half");  /* unmatched: kept */
    CU_ASSERT_STRING_EQUAL (config->jwt_secret, "a=b#c");        /* first = splits */
    CU_ASSERT_STRING_EQUAL (config->log_level, "warn");
    CU_ASSERT_EQUAL (config->room_shards, 0);
    config_destroy (&config);

    /* An empty file is all defaults. */
    config = t_load_text ("", error, sizeof error, path, sizeof path);
    config_t *defaults = config_load (NULL, error, sizeof error);
    CU_ASSERT_TRUE (config && defaults && t_same (config, defaults));
    config_destroy (&config);
    config_destroy (&defaults);
}

static void
test_file_errors (void)
{
    t_expect_file_error ("# ok\nhttp_port = abc\n",
                         "2: http_port: must be an integer from 1 to 65535 (got 'abc')");
    t_expect_file_error ("http_port = 0\n",
                         "1: http_port: must be an integer from 1 to 65535 (got '0')");
    t_expect_file_error ("\n\nhtp_port = 80\n", "3: unknown setting 'htp_port'");
    t_expect_file_error ("http_port 80\n", "1: expected 'key = value'");
    t_expect_file_error (" = 80\n", "1: expected 'key = value'");
    t_expect_file_error ("HTTP_PORT = 80\n", "1: unknown setting 'HTTP_PORT'");
    t_expect_file_error ("log_level = verbose\n",
                         "1: log_level: must be error, warn, info or debug (got 'verbose')");
    t_expect_file_error ("pg_dsn = \"\"\n", "1: pg_dsn: must not be empty");
    t_expect_file_error ("redis_url = http://localhost:6379\n",
                         "1: redis_url: must be a redis:// URL");
    t_expect_file_error ("smtp_url = mail://localhost\n",
                         "1: smtp_url: must be an smtp:// or smtps:// URL");
    t_expect_file_error ("inject_endpoint = udp://127.0.0.1:1\n",
                         "1: inject_endpoint: must be a ZeroMQ endpoint: tcp://, ipc:// or "
                         "inproc:// (got 'udp://127.0.0.1:1')");
    t_expect_file_error ("events_endpoint = tcp://\n",
                         "1: events_endpoint: must be a ZeroMQ endpoint: tcp://, ipc:// or "
                         "inproc:// (got 'tcp://')");
    t_expect_file_error ("page_size_max = 10001\n",
                         "1: page_size_max: must be an integer from 1 to 10000 (got '10001')");

    /* A file named explicitly must exist. */
    char error[512] = "";
    config_t *config = config_load ("/nonexistent/parley.conf", error, sizeof error);
    CU_ASSERT_PTR_NULL (config);
    CU_ASSERT_STRING_EQUAL (error, "/nonexistent/parley.conf: cannot open: No such file or directory");
    /* ... and be a readable file */
    config = config_load ("/tmp", error, sizeof error);
    CU_ASSERT_PTR_NULL (config);
    CU_ASSERT_EQUAL (strncmp (error, "/tmp:", 5), 0);
    /* A tiny error buffer is still NUL-terminated. */
    char tiny[8];
    config = config_load ("/nonexistent/parley.conf", tiny, sizeof tiny);
    CU_ASSERT_STRING_EQUAL (tiny, "/nonexi");
}

static void
test_environment (void)
{
    char error[512], path[64];
    setenv ("PARLEY_HTTP_PORT", "9100", 1);
    setenv ("PARLEY_LOG_LEVEL", "error", 1);
    setenv ("PARLEY_JWT_SECRET", "", 1);
    setenv ("PARLEY_NO_SUCH_SETTING", "ignored", 1);
    config_t *config = t_load_text ("http_port = 9000\njwt_secret = from-file\nhttp_host = h\n",
                                    error, sizeof error, path, sizeof path);
    CU_ASSERT_PTR_NOT_NULL_FATAL (config);
    CU_ASSERT_EQUAL (config->http_port, 9100);           /* environment wins */
    CU_ASSERT_STRING_EQUAL (config->log_level, "error");
    CU_ASSERT_STRING_EQUAL (config->jwt_secret, "");     /* even when empty */
    CU_ASSERT_STRING_EQUAL (config->http_host, "h");     /* the file still counts */
    config_destroy (&config);

    /* without a file too */
    config = config_load (NULL, error, sizeof error);
    CU_ASSERT_PTR_NOT_NULL_FATAL (config);
    CU_ASSERT_EQUAL (config->http_port, 9100);
    config_destroy (&config);

    setenv ("PARLEY_HTTP_PORT", "80 80", 1);
    config = config_load (NULL, error, sizeof error);
    CU_ASSERT_PTR_NULL (config);
    CU_ASSERT_STRING_EQUAL (error, "PARLEY_HTTP_PORT (environment): http_port: must be an "
                                   "integer from 1 to 65535 (got '80 80')");
    setenv ("PARLEY_HTTP_PORT", "", 1);
    config = config_load (NULL, error, sizeof error);
    CU_ASSERT_PTR_NULL (config);
    CU_ASSERT_PTR_NOT_NULL (strstr (error, "http_port: must be an integer"));
    unsetenv ("PARLEY_HTTP_PORT");

    setenv ("PARLEY_REDIS_URL", "rediss://secret@host", 1);
    config = config_load (NULL, error, sizeof error);
    CU_ASSERT_PTR_NULL (config);
    CU_ASSERT_STRING_EQUAL (error, "PARLEY_REDIS_URL (environment): redis_url: must be a redis:// URL");
    t_clear_environment ();
    unsetenv ("PARLEY_NO_SUCH_SETTING");
}

/* Every integer setting: its bounds are accepted, one past them is not,
   and so are junk, spaces, fractions and overflow. */
static void
test_ranges (void)
{
    config_t *config = config_load (NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL (config);
    for (size_t i = 0; i < T_COUNT; i++) {
        const t_setting_t *s = &t_settings[i];
        if (s->kind != 'I')
            continue;
        char value[64], error[512];
        snprintf (value, sizeof value, "%lld", s->min);
        CU_ASSERT_EQUAL (config_set (config, s->name, value, error, sizeof error), 0);
        snprintf (value, sizeof value, "%lld", s->max);
        CU_ASSERT_EQUAL (config_set (config, s->name, value, error, sizeof error), 0);
        snprintf (value, sizeof value, "%lld", s->min - 1);
        t_expect_set_error (config, s->name, value);
        snprintf (value, sizeof value, "%lld", s->max + 1);
        t_expect_set_error (config, s->name, value);
        const char *junk[] = { "", "abc", " 5", "5 ", "5x", "1.5", "0x10", "--1", "+",
                               "99999999999999999999", "-99999999999999999999" };
        for (size_t k = 0; k < sizeof junk / sizeof junk[0]; k++)
            t_expect_set_error (config, s->name, junk[k]);
    }
    char error[512];
    CU_ASSERT_EQUAL (config_set (config, "http_port", "+8081", error, sizeof error), 0);
    CU_ASSERT_EQUAL (config->http_port, 8081);
    CU_ASSERT_EQUAL (config_set (config, "room_shards", "007", error, sizeof error), 0);
    CU_ASSERT_EQUAL (config->room_shards, 7);
    CU_ASSERT_EQUAL (config_set (config, "upload_max", "1073741824", error, sizeof error), 0);
    CU_ASSERT_EQUAL (config->upload_max, 1073741824);
    config_destroy (&config);
}

/* String settings with rules, and config_set's own errors. */
static void
test_set (void)
{
    config_t *config = config_load (NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL (config);
    char error[512];
    const char *good[][2] = {
        { "log_level", "debug" }, { "log_level", "error" },
        { "pg_dsn", "host=/tmp port=5433 dbname=parley" },
        { "redis_url", "redis://:pw@127.0.0.1:6380/2" },
        { "smtp_url", "smtps://mail.example.org:465" },
        { "inject_endpoint", "ipc:///tmp/parley.inject" },
        { "events_endpoint", "inproc://events" },
        { "http_host", "" }, { "media_dir", "/srv/media" },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        CU_ASSERT_EQUAL (config_set (config, good[i][0], good[i][1], error, sizeof error), 0);
    }
    CU_ASSERT_STRING_EQUAL (config->inject_endpoint, "ipc:///tmp/parley.inject");
    CU_ASSERT_STRING_EQUAL (config->log_level, "error");
    const char *bad[][2] = {
        { "log_level", "" }, { "log_level", "INFO" }, { "log_level", "warning" },
        { "pg_dsn", "" }, { "redis_url", "" }, { "redis_url", "redis://" },
        { "redis_url", "127.0.0.1:6379" }, { "smtp_url", "smtp:/x" },
        { "inject_endpoint", "" }, { "inject_endpoint", "tcp:/127.0.0.1:1" },
        { "events_endpoint", "epgm://x" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        t_expect_set_error (config, bad[i][0], bad[i][1]);
    /* a failed set leaves the old value */
    CU_ASSERT_STRING_EQUAL (config->log_level, "error");
    /* the value of a URL setting never appears in its error (passwords) */
    CU_ASSERT_EQUAL (config_set (config, "redis_url", "http://:hunter2@x", error, sizeof error), -1);
    CU_ASSERT_PTR_NULL (strstr (error, "hunter2"));

    CU_ASSERT_EQUAL (config_set (config, "nope", "1", error, sizeof error), -1);
    CU_ASSERT_STRING_EQUAL (error, "unknown setting 'nope'");
    CU_ASSERT_EQUAL (config_set (config, NULL, "1", error, sizeof error), -1);
    CU_ASSERT_EQUAL (config_set (config, "http_port", NULL, error, sizeof error), -1);
    CU_ASSERT_STRING_EQUAL (error, "http_port: no value");
    CU_ASSERT_EQUAL (config_set (config, "http_port", "1", NULL, 0), 0);
    CU_ASSERT_EQUAL (config_set (config, "http_port", "x", NULL, 0), -1);
    config_destroy (&config);
}

static void
test_bools (void)
{
    const char *yes[] = { "true", "TRUE", "True", "1", "yes", "YES", "on", "On" };
    const char *no[] = { "false", "FALSE", "0", "no", "No", "off", "OFF" };
    const char *bad[] = { "", "maybe", "2", "t", "y", "enabled", " true", "true ", "01" };
    bool value;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        value = false;
        CU_ASSERT_EQUAL (config_parse_bool (yes[i], &value), 0);
        CU_ASSERT_TRUE (value);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        value = true;
        CU_ASSERT_EQUAL (config_parse_bool (no[i], &value), 0);
        CU_ASSERT_FALSE (value);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        value = true;
        CU_ASSERT_EQUAL (config_parse_bool (bad[i], &value), -1);
        CU_ASSERT_TRUE (value);                         /* left alone */
    }
    CU_ASSERT_EQUAL (config_parse_bool (NULL, &value), -1);
    /* boolean settings, if the table has any, go through the same rules */
    config_t *config = config_load (NULL, NULL, 0);
    for (size_t i = 0; config && i < T_COUNT; i++) {
        if (t_settings[i].kind != 'B')
            continue;
        char error[256];
        CU_ASSERT_EQUAL (config_set (config, t_settings[i].name, "on", error, sizeof error), 0);
        t_expect_set_error (config, t_settings[i].name, "maybe");
    }
    config_destroy (&config);
}

/* Prints the whole configuration, in file syntax, secrets hidden. */
static char *
t_print (const config_t *config)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    config_print (config, out);
    fclose (out);
    return text;
}

static void
test_print (void)
{
    config_t *config = config_load (NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL (config);
    char error[512];
    CU_ASSERT_EQUAL (config_set (config, "http_port", "8181", error, sizeof error), 0);
    CU_ASSERT_EQUAL (config_set (config, "smtp_from", "Parley <p@example.org>", error, sizeof error), 0);

    /* without secrets, the printout loads back to the same configuration */
    char *text = t_print (config);
    CU_ASSERT_PTR_NOT_NULL (strstr (text, "\nhttp_port = 8181\n"));
    CU_ASSERT_PTR_NOT_NULL (strstr (text, "\nhttp_host = \"127.0.0.1\"\n"));
    CU_ASSERT_PTR_NOT_NULL (strstr (text, "\njwt_secret = \"\"\n"));
    char path[64];
    config_t *copy = t_load_text (text, error, sizeof error, path, sizeof path);
    CU_ASSERT_TRUE (copy && t_same (config, copy));
    config_destroy (&copy);
    free (text);

    /* secrets are hidden */
    const char *secrets[][2] = {
        { "jwt_secret", "s3cr3t-jwt" },
        { "metrics_token", "s3cr3t-token" },
        { "pg_dsn", "postgresql://parley:s3cr3t-pg@db:5432/parley?sslmode=require" },
        { "redis_url", "redis://:s3cr3t-redis@cache:6379/0" },
        { "smtp_url", "smtps://mailer:s3cr3t-smtp@mail:465" },
    };
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        CU_ASSERT_EQUAL (config_set (config, secrets[i][0], secrets[i][1], error, sizeof error), 0);
    text = t_print (config);
    CU_ASSERT_PTR_NULL (strstr (text, "s3cr3t"));
    CU_ASSERT_PTR_NOT_NULL (strstr (text, "\njwt_secret = \"********\"\n"));
    CU_ASSERT_PTR_NOT_NULL (strstr (text, "\npg_dsn = \"postgresql://parley:***@db:5432/parley?sslmode=require\"\n"));
    CU_ASSERT_PTR_NOT_NULL (strstr (text, "\nredis_url = \"redis://:***@cache:6379/0\"\n"));
    free (text);

    CU_ASSERT_EQUAL (config_set (config, "pg_dsn", "host=db user=parley password=s3cr3t dbname=p",
                                 error, sizeof error), 0);
    CU_ASSERT_EQUAL (config_set (config, "redis_url", "redis://cache:6379/0?password=s3cr3t&db=1",
                                 error, sizeof error), 0);
    text = t_print (config);
    CU_ASSERT_PTR_NULL (strstr (text, "s3cr3t"));
    CU_ASSERT_PTR_NOT_NULL (strstr (text, "\npg_dsn = \"host=db user=parley password=*** dbname=p\"\n"));
    CU_ASSERT_PTR_NOT_NULL (strstr (text, "\nredis_url = \"redis://cache:6379/0?password=***&db=1\"\n"));
    free (text);
    config_destroy (&config);
}

/* parley.conf.example is what config_write_example writes, and loads to the
   defaults. */
static void
test_example_file (void)
{
    char *generated = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&generated, &size);
    config_write_example (out);
    fclose (out);
    for (size_t i = 0; i < T_COUNT; i++) {
        char line[128];
        snprintf (line, sizeof line, "\n%s = ", t_settings[i].name);
        CU_ASSERT_PTR_NOT_NULL (strstr (generated, line));
    }

    const char *path = PARLEY_SOURCE_DIR "/parley.conf.example";
    FILE *in = fopen (path, "r");
    CU_ASSERT_PTR_NOT_NULL (in);
    char *stored = calloc (1, size + 2);
    size_t got = in ? fread (stored, 1, size + 1, in) : 0;
    if (in)
        fclose (in);
    bool same = got == size && memcmp (stored, generated, size) == 0;
    CU_ASSERT_TRUE (same);
    if (!same)
        fprintf (stderr, "\n  %s is out of date with actors/config.h: regenerate it with\n"
                         "  test_config --write-example > parley.conf.example\n", path);
    free (stored);
    free (generated);

    char error[512];
    config_t *example = config_load (path, error, sizeof error);
    config_t *defaults = config_load (NULL, NULL, 0);
    CU_ASSERT_TRUE (example && defaults && t_same (example, defaults));
    config_destroy (&example);
    config_destroy (&defaults);
}

int
main (int argc, char *argv[])
{
    if (argc == 2 && strcmp (argv[1], "--write-example") == 0) {
        config_write_example (stdout);
        return 0;
    }
    t_clear_environment ();
    CU_TestInfo tests[] = {
        { "usage example", test_usage_example },
        { "defaults", test_defaults },
        { "file format", test_file_format },
        { "file errors", test_file_errors },
        { "environment", test_environment },
        { "ranges", test_ranges },
        { "set", test_set },
        { "bools", test_bools },
        { "print", test_print },
        { "example file", test_example_file },
        CU_TEST_INFO_NULL
    };
    return unit_run ("config", tests);
}
