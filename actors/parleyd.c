/*  actors/parleyd.c — the Parley server: configuration, start-up in order,
 *  signals, shutdown in reverse order.
 *
 *  Start-up: persisters (connect, migrate), presence (Redis), bus, room and
 *  user shards, media, notifier (SMTP), scheduler, then the gateways last, so nothing is accepted before the actors
 *  behind it are ready. A failure anywhere stops what started and exits 1
 *  with a message naming the cause. SIGINT/SIGTERM stop the gateways first
 *  (no new work), then the rest.
 */
#include <czmq.h>
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "actor.h"
#include "bus.h"
#include "config.h"
#include "gateway.h"
#include "log.h"
#include "media.h"
#include "notifier.h"
#include "persister.h"
#include "presence.h"
#include "room.h"
#include "scheduler.h"
#include "token.h"
#include "user.h"

#define MAX_ACTORS 512

typedef struct {
    zactor_t *actors[MAX_ACTORS];
    int count;
} parleyd_t;

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: parleyd [-c FILE] [--print-config] [--help]\n"
        "Parley messaging server: REST + WebSocket on http_host:http_port.\n"
        "  -c, --config FILE   read settings from FILE (key = value lines)\n"
        "  --print-config      print the effective settings and exit\n"
        "Every setting can also be given as PARLEY_<KEY> in the environment;\n"
        "see parley.conf.example and docs/configuration.md.\n");
}

/* Raises the descriptor limit to the hard limit: each connection is one. */
static void
s_raise_fd_limit (void)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit (RLIMIT_NOFILE, &limit);
    }
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0)
        log_info ("parleyd", "file descriptor limit %llu", (unsigned long long) limit.rlim_cur);
}

/* Uses jwt_secret, or the one kept in var_dir/jwt_secret (made on first run). */
static int
s_resolve_secret (config_t *config)
{
    if (config->jwt_secret[0])
        return 0;
    char path[4096];
    snprintf (path, sizeof path, "%s/jwt_secret", config->var_dir);
    if (mkdir (config->var_dir, 0700) != 0 && errno != EEXIST) {
        log_error ("parleyd", "var_dir: cannot create %s: %s", config->var_dir, strerror (errno));
        return -1;
    }
    char secret[128] = "";
    FILE *in = fopen (path, "r");
    if (in) {
        if (!fgets (secret, sizeof secret, in))
            secret[0] = '\0';
        fclose (in);
        secret[strcspn (secret, "\r\n")] = '\0';
    }
    if (strlen (secret) < 32) {
        token_random (secret, sizeof secret, 48);
        FILE *out = fopen (path, "w");
        if (!out || fprintf (out, "%s\n", secret) < 0) {
            log_error ("parleyd", "jwt_secret: cannot write %s", path);
            if (out)
                fclose (out);
            return -1;
        }
        fclose (out);
        chmod (path, 0600);
        log_info ("parleyd", "generated a JWT secret in %s", path);
    }
    free (config->jwt_secret);
    config->jwt_secret = strdup (secret);
    return 0;
}

static int
s_spawn_all (parleyd_t *self, const actor_def_t *def, int count, const config_t *config)
{
    for (int i = 0; i < count && self->count < MAX_ACTORS; i++) {
        char error[600];
        zactor_t *actor = actor_spawn (def, i, config, error, sizeof error);
        if (!actor) {
            log_error ("parleyd", "cannot start: %s", error);
            return -1;
        }
        self->actors[self->count++] = actor;
    }
    return 0;
}

static int
s_start (parleyd_t *self, const config_t *config)
{
    if (s_spawn_all (self, &persister_actor, actor_shard_count (config, "persister"), config)
        || s_spawn_all (self, &presence_actor, 1, config)
        || s_spawn_all (self, &bus_actor, 1, config)
        || s_spawn_all (self, &room_actor, actor_shard_count (config, "room"), config)
        || s_spawn_all (self, &user_actor, actor_shard_count (config, "user"), config)
        || s_spawn_all (self, &media_actor, (int) config->media_workers, config)
        || s_spawn_all (self, &notifier_actor, 1, config)
        || s_spawn_all (self, &scheduler_actor, 1, config))
        return -1;
    for (int i = 0; i < config->gateway_threads && self->count < MAX_ACTORS; i++) {
        char error[600];
        zactor_t *gateway = gateway_spawn (i, config, error, sizeof error);
        if (!gateway) {
            log_error ("parleyd", "cannot start: %s", error);
            return -1;
        }
        self->actors[self->count++] = gateway;
    }
    return 0;
}

/* Stops actors in reverse start order: gateways first. */
static void
s_stop (parleyd_t *self)
{
    while (self->count > 0)
        zactor_destroy (&self->actors[--self->count]);
}

int
main (int argc, char *argv[])
{
    const char *config_path = NULL;
    bool print_config = false;
    for (int i = 1; i < argc; i++) {
        if ((streq (argv[i], "-c") || streq (argv[i], "--config")) && i + 1 < argc)
            config_path = argv[++i];
        else if (streq (argv[i], "--print-config"))
            print_config = true;
        else if (streq (argv[i], "-h") || streq (argv[i], "--help")) {
            s_usage (stdout);
            return 0;
        }
        else {
            s_usage (stderr);
            return 2;
        }
    }
    char error[512];
    config_t *config = config_load (config_path, error, sizeof error);
    if (!config) {
        fprintf (stderr, "parleyd: configuration error: %s\n", error);
        return 2;
    }
    if (print_config) {
        config_print (config, stdout);
        config_destroy (&config);
        return 0;
    }
    log_set_level (config->log_level);
    if (sodium_init () < 0 || s_resolve_secret (config) != 0) {
        config_destroy (&config);
        return 1;
    }
    s_raise_fd_limit ();

    /* Signals are ours, not CZMQ's: block them in every thread, wait here. */
    zsys_handler_set (NULL);
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);
    signal (SIGPIPE, SIG_IGN);

    parleyd_t self = { .count = 0 };
    int rc = 0;
    if (s_start (&self, config) != 0)
        rc = 1;
    else {
        log_info ("parleyd", "ready");
        int sig = 0;
        sigwait (&signals, &sig);
        log_info ("parleyd", "%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    s_stop (&self);
    log_info ("parleyd", "stopped");
    config_destroy (&config);
    zsys_shutdown ();
    return rc;
}
