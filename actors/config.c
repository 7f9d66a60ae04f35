/*  actors/config.c — loads Parley's settings: defaults, file, environment.
 *
 *  Everything is driven by the CONFIG_SETTINGS table in config.h: a static
 *  const array of descriptors (name, kind, default, range, help, offset of
 *  the field in config_t) is the only state here, and it is read-only.
 *  A config_t owns its strings. Values that are more than a string, an
 *  integer in range or a boolean (log levels, URL schemes) are checked by
 *  the small validators below, listed by field offset so that renaming a
 *  setting in the table without updating them does not compile.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { S_STR, S_INT, S_BOOL } s_kind_t;

typedef struct {
    const char *name;
    s_kind_t kind;
    const char *def;
    int64_t min, max;
    const char *help;
    size_t offset;
} s_setting_t;

static const s_setting_t s_settings[] = {
#define X(name, kind, def, lo, hi, help)                                       \
    { #name, S_##kind, def, lo, hi, help, offsetof (config_t, name) },
    CONFIG_SETTINGS (X)
#undef X
};
#define S_SETTING_COUNT (sizeof s_settings / sizeof s_settings[0])

/* --- validators for string settings --------------------------------------- */

/* Each returns NULL when `value` is acceptable, else what it must be. */
typedef const char *(s_check_fn) (const char *value);

/* Does `value` start with one of the NULL-ended `schemes` and go on? */
static bool
s_has_scheme (const char *value, const char *const *schemes)
{
    for (; *schemes; schemes++) {
        size_t n = strlen (*schemes);
        if (strncmp (value, *schemes, n) == 0 && value[n] != '\0')
            return true;
    }
    return false;
}

static const char *
s_check_log_level (const char *value)
{
    const char *levels[] = { "error", "warn", "info", "debug" };
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (strcmp (value, levels[i]) == 0)
            return NULL;
    return "must be error, warn, info or debug";
}

static const char *
s_check_not_empty (const char *value)
{
    return value[0] ? NULL : "must not be empty";
}

static const char *
s_check_redis_url (const char *value)
{
    static const char *const schemes[] = { "redis://", NULL };
    return s_has_scheme (value, schemes) ? NULL : "must be a redis:// URL";
}

static const char *
s_check_smtp_url (const char *value)
{
    static const char *const schemes[] = { "smtp://", "smtps://", NULL };
    return s_has_scheme (value, schemes) ? NULL : "must be an smtp:// or smtps:// URL";
}

static const char *
s_check_endpoint (const char *value)
{
    static const char *const schemes[] = { "tcp://", "ipc://", "inproc://", NULL };
    return s_has_scheme (value, schemes)
               ? NULL : "must be a ZeroMQ endpoint: tcp://, ipc:// or inproc://";
}

/* A Z85 CURVE key: 40 characters of the Z85 alphabet (32 bytes). */
static bool
s_is_z85_key (const char *value, size_t length)
{
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz"
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    if (length != 40)
        return false;
    for (size_t i = 0; i < length; i++)
        if (!value[i] || !strchr (alphabet, value[i]))
            return false;
    return true;
}

static const char *
s_check_curve_key (const char *value)
{
    return !value[0] || s_is_z85_key (value, strlen (value))
               ? NULL : "must be a Z85 CURVE key (40 characters) or empty";
}

static const char *
s_check_curve_keys (const char *value)
{
    for (const char *p = value; *p; ) {
        p += strspn (p, " ,");
        size_t length = strcspn (p, " ,");
        if (length && !s_is_z85_key (p, length))
            return "must be Z85 CURVE public keys (40 characters), separated by commas";
        p += length;
    }
    return NULL;
}

static const struct {
    size_t offset;
    s_check_fn *check;
    bool show_value;             /* safe to repeat the value in the error */
} s_checks[] = {
    { offsetof (config_t, log_level), s_check_log_level, true },
    { offsetof (config_t, pg_dsn), s_check_not_empty, false },
    { offsetof (config_t, redis_url), s_check_redis_url, false },
    { offsetof (config_t, smtp_url), s_check_smtp_url, false },
    { offsetof (config_t, inject_endpoint), s_check_endpoint, true },
    { offsetof (config_t, events_endpoint), s_check_endpoint, true },
    { offsetof (config_t, curve_secret_key), s_check_curve_key, false },
    { offsetof (config_t, curve_allowed_clients), s_check_curve_keys, true },
};

/* Settings whose values config_print never shows. */
static const size_t s_secrets[] = {
    offsetof (config_t, jwt_secret),
    offsetof (config_t, metrics_token),
    offsetof (config_t, curve_secret_key),
};

/* --- helpers -------------------------------------------------------------- */

static void
s_error (char *error, size_t error_size, const char *format, ...)
{
    if (!error || error_size == 0)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (error, error_size, format, args);
    va_end (args);
}

static const s_setting_t *
s_find (const char *name)
{
    for (size_t i = 0; i < S_SETTING_COUNT; i++)
        if (strcmp (s_settings[i].name, name) == 0)
            return &s_settings[i];
    return NULL;
}

static void *
s_field (const config_t *self, const s_setting_t *setting)
{
    return (char *) self + setting->offset;
}

/* Parses a whole decimal integer; no spaces, no trailing characters. */
static int
s_parse_int (const char *text, int64_t *value)
{
    if (!(isdigit ((unsigned char) text[0])
          || ((text[0] == '-' || text[0] == '+') && isdigit ((unsigned char) text[1]))))
        return -1;
    char *end;
    errno = 0;
    long long parsed = strtoll (text, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *value = parsed;
    return 0;
}

int
config_parse_bool (const char *text, bool *value)
{
    static const char *const yes[] = { "true", "1", "yes", "on" };
    static const char *const no[] = { "false", "0", "no", "off" };
    for (size_t i = 0; text && i < 4; i++) {
        if (strcasecmp (text, yes[i]) == 0 || strcasecmp (text, no[i]) == 0) {
            *value = strcasecmp (text, yes[i]) == 0;
            return 0;
        }
    }
    return -1;
}

/* Runs the extra check of a string setting, if it has one. */
static int
s_check_string (const s_setting_t *setting, const char *value, char *error,
                size_t error_size)
{
    for (size_t i = 0; i < sizeof s_checks / sizeof s_checks[0]; i++) {
        if (s_checks[i].offset != setting->offset)
            continue;
        const char *problem = s_checks[i].check (value);
        if (!problem)
            return 0;
        if (s_checks[i].show_value)
            s_error (error, error_size, "%s: %s (got '%.60s')", setting->name, problem, value);
        else
            s_error (error, error_size, "%s: %s", setting->name, problem);
        return -1;
    }
    return 0;
}

/* --- setting values --------------------------------------------------------- */

int
config_set (config_t *self, const char *key, const char *value, char *error,
            size_t error_size)
{
    const s_setting_t *setting = key ? s_find (key) : NULL;
    if (!setting) {
        s_error (error, error_size, "unknown setting '%.64s'", key ? key : "(null)");
        return -1;
    }
    if (!self || !value) {
        s_error (error, error_size, "%s: no value", setting->name);
        return -1;
    }
    if (setting->kind == S_INT) {
        int64_t number;
        if (s_parse_int (value, &number) != 0 || number < setting->min
            || number > setting->max) {
            s_error (error, error_size,
                     "%s: must be an integer from %lld to %lld (got '%.40s')",
                     setting->name, (long long) setting->min, (long long) setting->max,
                     value);
            return -1;
        }
        *(int64_t *) s_field (self, setting) = number;
        return 0;
    }
    if (setting->kind == S_BOOL) {
        bool flag;
        if (config_parse_bool (value, &flag) != 0) {
            s_error (error, error_size,
                     "%s: must be true or false (or yes/no, on/off, 1/0) (got '%.40s')",
                     setting->name, value);
            return -1;
        }
        *(bool *) s_field (self, setting) = flag;
        return 0;
    }
    if (s_check_string (setting, value, error, error_size) != 0)
        return -1;
    char *copy = strdup (value);
    if (!copy) {
        s_error (error, error_size, "%s: out of memory", setting->name);
        return -1;
    }
    char **field = s_field (self, setting);
    free (*field);
    *field = copy;
    return 0;
}

/* --- the file and the environment ------------------------------------------ */

/* Trims spaces at both ends, in place; returns the new start. */
static char *
s_trim (char *text)
{
    while (isspace ((unsigned char) *text))
        text++;
    size_t n = strlen (text);
    while (n > 0 && isspace ((unsigned char) text[n - 1]))
        text[--n] = '\0';
    return text;
}

/* Removes one pair of matching quotes around a value, in place. */
static char *
s_unquote (char *value)
{
    size_t n = strlen (value);
    if (n >= 2 && (value[0] == '"' || value[0] == '\'') && value[n - 1] == value[0]) {
        value[n - 1] = '\0';
        return value + 1;
    }
    return value;
}

/* Applies one line of the file; 0 for comments and blank lines. */
static int
s_apply_line (config_t *self, char *line, char *problem, size_t problem_size)
{
    line[strcspn (line, "\r\n")] = '\0';
    char *text = s_trim (line);
    if (*text == '\0' || *text == '#')
        return 0;
    char *equals = strchr (text, '=');
    if (!equals) {
        s_error (problem, problem_size, "expected 'key = value'");
        return -1;
    }
    *equals = '\0';
    char *key = s_trim (text);
    char *value = s_unquote (s_trim (equals + 1));
    if (*key == '\0') {
        s_error (problem, problem_size, "expected 'key = value'");
        return -1;
    }
    return config_set (self, key, value, problem, problem_size);
}

static int
s_load_file (config_t *self, const char *path, char *error, size_t error_size)
{
    FILE *in = fopen (path, "r");
    if (!in) {
        s_error (error, error_size, "%s: cannot open: %s", path, strerror (errno));
        return -1;
    }
    char *line = NULL;
    size_t capacity = 0;
    int number = 0, rc = 0;
    while (rc == 0 && getline (&line, &capacity, in) >= 0) {
        number++;
        char *text = line;
        if (number == 1 && strncmp (text, "\xef\xbb\xbf", 3) == 0)
            text += 3;                              /* a UTF-8 byte order mark */
        char problem[400];
        rc = s_apply_line (self, text, problem, sizeof problem);
        if (rc != 0)
            s_error (error, error_size, "%s:%d: %s", path, number, problem);
    }
    if (rc == 0 && ferror (in)) {
        s_error (error, error_size, "%s: cannot read: %s", path, strerror (errno));
        rc = -1;
    }
    free (line);
    fclose (in);
    return rc;
}

static int
s_load_environment (config_t *self, char *error, size_t error_size)
{
    for (size_t i = 0; i < S_SETTING_COUNT; i++) {
        char variable[96] = "PARLEY_";
        size_t n = strlen (variable);
        for (const char *p = s_settings[i].name; *p && n < sizeof variable - 1; p++)
            variable[n++] = (char) toupper ((unsigned char) *p);
        variable[n] = '\0';
        const char *value = getenv (variable);
        char problem[400];
        if (value && config_set (self, s_settings[i].name, value, problem, sizeof problem) != 0) {
            s_error (error, error_size, "%s (environment): %s", variable, problem);
            return -1;
        }
    }
    return 0;
}

config_t *
config_load (const char *path, char *error, size_t error_size)
{
    s_error (error, error_size, "%s", "");
    config_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_error (error, error_size, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < S_SETTING_COUNT; i++) {
        char problem[400];
        if (config_set (self, s_settings[i].name, s_settings[i].def, problem,
                        sizeof problem) != 0) {
            s_error (error, error_size, "default of %s", problem);
            goto failed;
        }
    }
    if (path && s_load_file (self, path, error, error_size) != 0)
        goto failed;
    if (s_load_environment (self, error, error_size) != 0)
        goto failed;
    return self;
failed:
    config_destroy (&self);
    return NULL;
}

void
config_destroy (config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    for (size_t i = 0; i < S_SETTING_COUNT; i++)
        if (s_settings[i].kind == S_STR)
            free (*(char **) s_field (*self_p, &s_settings[i]));
    free (*self_p);
    *self_p = NULL;
}

/* --- printing ---------------------------------------------------------------- */

/* Appends `n` bytes of `text` to `out`, truncating at its end. */
static void
s_append (char *out, size_t out_size, size_t *used, const char *text, size_t n)
{
    if (*used + n >= out_size)
        n = out_size - 1 - *used;
    memcpy (out + *used, text, n);
    *used += n;
    out[*used] = '\0';
}

/* Copies `value` with any password hidden: a URL's user:password@ and a
   `password=...` parameter (libpq keyword form or URL query). */
static void
s_hide_passwords (const char *value, char *out, size_t out_size)
{
    size_t used = 0;
    out[0] = '\0';
    const char *authority = strstr (value, "://");
    if (authority) {
        authority += 3;
        size_t length = strcspn (authority, "/?#");
        const char *at = memrchr (authority, '@', length);
        const char *colon = at ? memchr (authority, ':', (size_t) (at - authority)) : NULL;
        if (colon && at > colon + 1) {
            s_append (out, out_size, &used, value, (size_t) (colon + 1 - value));
            s_append (out, out_size, &used, "***", 3);
            value = at;
        }
    }
    const char *found;
    while ((found = strstr (value, "password=")) != NULL) {
        found += strlen ("password=");
        s_append (out, out_size, &used, value, (size_t) (found - value));
        s_append (out, out_size, &used, "***", 3);
        value = found + strcspn (found, " &");
    }
    s_append (out, out_size, &used, value, strlen (value));
}

static bool
s_is_secret (const s_setting_t *setting)
{
    for (size_t i = 0; i < sizeof s_secrets / sizeof s_secrets[0]; i++)
        if (s_secrets[i] == setting->offset)
            return true;
    return false;
}

/* Writes `name = value` as a configuration file line. */
static void
s_print_setting (const config_t *self, const s_setting_t *setting, FILE *out)
{
    const void *field = s_field (self, setting);
    if (setting->kind == S_INT)
        fprintf (out, "%s = %lld\n", setting->name, (long long) *(const int64_t *) field);
    else if (setting->kind == S_BOOL)
        fprintf (out, "%s = %s\n", setting->name, *(const bool *) field ? "true" : "false");
    else {
        const char *value = *(char *const *) field;
        char shown[1024];
        if (s_is_secret (setting) && value[0])
            snprintf (shown, sizeof shown, "********");
        else
            s_hide_passwords (value, shown, sizeof shown);
        fprintf (out, "%s = \"%s\"\n", setting->name, shown);
    }
}

void
config_print (const config_t *self, FILE *out)
{
    fprintf (out, "# effective Parley configuration (secrets hidden)\n");
    for (size_t i = 0; self && i < S_SETTING_COUNT; i++)
        s_print_setting (self, &s_settings[i], out);
}

void
config_write_example (FILE *out)
{
    fprintf (out,
             "# parley.conf.example: every Parley setting with its default value.\n"
             "#\n"
             "# Syntax: `key = value`, one setting a line; lines starting with `#`\n"
             "# are comments; a value may be wrapped in \"double\" or 'single' quotes\n"
             "# (to keep spaces at its ends). An environment variable PARLEY_<KEY>\n"
             "# (the key in upper case, e.g. PARLEY_HTTP_PORT) overrides the file.\n"
             "#\n"
             "# Generated from CONFIG_SETTINGS in actors/config.h by\n"
             "# `test_config --write-example`; the unit test checks they agree.\n");
    for (size_t i = 0; i < S_SETTING_COUNT; i++) {
        const s_setting_t *setting = &s_settings[i];
        fprintf (out, "\n# %s\n", setting->help);
        if (setting->kind == S_INT)
            fprintf (out, "# range: %lld to %lld\n", (long long) setting->min,
                     (long long) setting->max);
        else if (setting->kind == S_BOOL)
            fprintf (out, "# true or false (also yes/no, on/off, 1/0)\n");
        if (setting->kind == S_STR)
            fprintf (out, "%s = \"%s\"\n", setting->name, setting->def);
        else
            fprintf (out, "%s = %s\n", setting->name, setting->def);
    }
}
