/*  tools/parley-admin.c — administration from the command line, against the
 *  configured database (pg_dsn), like Django's createsuperuser.
 *
 *      parley-admin [-c FILE] create-staff --username NAME
 *                   [--email ADDR] [--display-name NAME]
 *                   [--password-stdin | --no-password]
 *
 *  create-staff makes NAME a staff user (API.md §2.8: the admin API is for
 *  staff only). A new user needs a password, read from the first line of
 *  standard input with --password-stdin (at least 8 characters; never on
 *  the command line, where `ps` would show it). An existing user is made
 *  staff; with --password-stdin their password is replaced too. Passwords
 *  are hashed with Argon2id as registration does (password_ops,
 *  password_mem_kib). The schema is brought up to date first, so this works
 *  before parleyd ever ran. Settings as for parleyd: the file given with
 *  -c, then PARLEY_* variables. Exit status: 0 done, 1 failed, 2 usage.
 */
#include <libpq-fe.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "migrate.h"

#define ADMIN_PASSWORD_MIN 8
#define ADMIN_PASSWORD_MAX 4096

typedef struct {
    const char *config_path;
    const char *command;
    const char *username;
    const char *email;
    const char *display_name;
    bool password_stdin;
    bool no_password;
} admin_args_t;

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: parley-admin [-c FILE] create-staff --username NAME [--email ADDR]\n"
        "                    [--display-name NAME] [--password-stdin | --no-password]\n"
        "Makes NAME a staff user of the Parley database named by pg_dsn (created\n"
        "when missing; its password is read from the first line of stdin).\n");
}

/* Parses argv; 0, or 2 after printing usage. */
static int
s_parse (int argc, char *argv[], admin_args_t *args)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if ((!strcmp (a, "-c") || !strcmp (a, "--config")) && has_value)
            args->config_path = argv[++i];
        else if (!strcmp (a, "--username") && has_value)
            args->username = argv[++i];
        else if (!strcmp (a, "--email") && has_value)
            args->email = argv[++i];
        else if (!strcmp (a, "--display-name") && has_value)
            args->display_name = argv[++i];
        else if (!strcmp (a, "--password-stdin"))
            args->password_stdin = true;
        else if (!strcmp (a, "--no-password"))
            args->no_password = true;
        else if (!strcmp (a, "-h") || !strcmp (a, "--help")) {
            s_usage (stdout);
            exit (0);
        }
        else if (!args->command && a[0] != '-')
            args->command = a;
        else {
            fprintf (stderr, "parley-admin: unexpected argument: %s\n", a);
            s_usage (stderr);
            return 2;
        }
    }
    if (!args->command || strcmp (args->command, "create-staff") != 0 || !args->username
        || (args->password_stdin && args->no_password)) {
        s_usage (stderr);
        return 2;
    }
    return 0;
}

/* Reads the password from the first line of stdin into `out`. 0 or -1. */
static int
s_read_password (char *out, size_t size)
{
    if (!fgets (out, (int) size, stdin)) {
        fprintf (stderr, "parley-admin: no password on standard input\n");
        return -1;
    }
    out[strcspn (out, "\r\n")] = '\0';
    if (strlen (out) < ADMIN_PASSWORD_MIN) {
        fprintf (stderr, "parley-admin: the password needs at least %d characters\n",
                 ADMIN_PASSWORD_MIN);
        return -1;
    }
    return 0;
}

/* Creates or promotes the user in one statement; prints what happened. */
static int
s_create_staff (PGconn *pg, const admin_args_t *args, const char *hash)
{
    const char *params[] = { args->username, hash, args->email, args->display_name };
    PGresult *res = PQexecParams (pg,
        "INSERT INTO users (username, password_hash, email, display_name, is_staff)"
        " VALUES ($1, coalesce ($2, '!'), coalesce ($3, ''), coalesce ($4, ''), true)"
        " ON CONFLICT (username) DO UPDATE SET is_staff = true,"
        "   password_hash = coalesce ($2, users.password_hash),"
        "   email = coalesce ($3, users.email),"
        "   display_name = coalesce ($4, users.display_name)"
        " RETURNING id, (xmax = 0)", 4, NULL, params, NULL, NULL, 0);
    if (PQresultStatus (res) != PGRES_TUPLES_OK || PQntuples (res) != 1) {
        fprintf (stderr, "parley-admin: %s", PQresultErrorMessage (res));
        PQclear (res);
        return -1;
    }
    bool created = strcmp (PQgetvalue (res, 0, 1), "t") == 0;
    printf ("%s staff user %s (%s)\n", created ? "created" : "updated", args->username,
            PQgetvalue (res, 0, 0));
    PQclear (res);
    return 0;
}

/* A new user without --password-stdin has no usable password: refuse
   unless --no-password says that is meant. */
static int
s_check_new_user (PGconn *pg, const admin_args_t *args)
{
    if (args->password_stdin || args->no_password)
        return 0;
    const char *params[] = { args->username };
    PGresult *res = PQexecParams (pg, "SELECT 1 FROM users WHERE username = $1", 1, NULL,
                                  params, NULL, NULL, 0);
    int exists = PQresultStatus (res) == PGRES_TUPLES_OK ? PQntuples (res) : -1;
    PQclear (res);
    if (exists == 0)
        fprintf (stderr, "parley-admin: %s does not exist yet: give a password with"
                 " --password-stdin (or --no-password)\n", args->username);
    return exists == 1 ? 0 : -1;
}

static int
s_run (const config_t *config, const admin_args_t *args)
{
    char password[ADMIN_PASSWORD_MAX], hash[crypto_pwhash_STRBYTES];
    if (args->password_stdin) {
        if (s_read_password (password, sizeof password) != 0)
            return 1;
        if (crypto_pwhash_str (hash, password, strlen (password),
                               (unsigned long long) config->password_ops,
                               (size_t) config->password_mem_kib * 1024) != 0) {
            fprintf (stderr, "parley-admin: out of memory hashing the password\n");
            return 1;
        }
        sodium_memzero (password, sizeof password);
    }
    PGconn *pg = PQconnectdb (config->pg_dsn);
    if (PQstatus (pg) != CONNECTION_OK) {
        fprintf (stderr, "parley-admin: cannot connect to PostgreSQL (pg_dsn): %s",
                 PQerrorMessage (pg));
        PQfinish (pg);
        return 1;
    }
    char error[512];
    int rc = 1;
    if (migrate_apply (pg, error, sizeof error) < 0)
        fprintf (stderr, "parley-admin: %s\n", error);
    else if (s_check_new_user (pg, args) == 0
             && s_create_staff (pg, args, args->password_stdin ? hash : NULL) == 0)
        rc = 0;
    PQfinish (pg);
    return rc;
}

int
main (int argc, char *argv[])
{
    admin_args_t args = { 0 };
    if (s_parse (argc, argv, &args) != 0)
        return 2;
    char error[512];
    config_t *config = config_load (args.config_path, error, sizeof error);
    if (!config) {
        fprintf (stderr, "parley-admin: configuration error: %s\n", error);
        return 2;
    }
    int rc = sodium_init () < 0 ? 1 : s_run (config, &args);
    config_destroy (&config);
    return rc;
}
