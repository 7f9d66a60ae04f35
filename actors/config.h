/*  actors/config.h — Parley's configuration: one table of settings.
 *
 *  Sources, later ones winning: built-in defaults, the configuration file
 *  (`key = value` lines, `#` comments, see docs/configuration.md and
 *  parley.conf.example), then environment variables PARLEY_<KEY> (key in
 *  upper case, e.g. PARLEY_HTTP_PORT). An invalid value stops start-up with
 *  a message that names the setting.
 */
#ifndef PARLEY_CONFIG_H
#define PARLEY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*  X (name, kind, default, min, max, help)
 *  kind: STR, INT (with min..max), BOOL.                                   */
#define CONFIG_SETTINGS(X)                                                            \
    X (http_host,          STR,  "127.0.0.1", 0, 0, "address the REST/WebSocket gateway listens on")      \
    X (http_port,          INT,  "8080",  1, 65535, "port of the REST/WebSocket gateway")                   \
    X (gateway_threads,    INT,  "1",     1, 64,    "gateway actors sharing the port (SO_REUSEPORT)")        \
    X (pg_dsn,             STR,  "postgresql://parley@127.0.0.1:5432/parley", 0, 0, "PostgreSQL connection string") \
    X (redis_url,          STR,  "redis://127.0.0.1:6379/0", 0, 0, "Redis URL (redis://host:port/db)") \
    X (smtp_url,           STR,  "smtp://127.0.0.1:2525", 0, 0, "SMTP server for notification emails") \
    X (smtp_from,          STR,  "parley@localhost", 0, 0, "From address of notification emails")      \
    X (jwt_secret,         STR,  "",      0, 0,     "HS256 secret; generated and kept in var_dir when empty") \
    X (var_dir,            STR,  "var",   0, 0,     "directory for runtime state (secret, media)")          \
    X (media_dir,          STR,  "",      0, 0,     "attachment storage; var_dir/media when empty")         \
    X (public_url,         STR,  "",      0, 0,     "base URL for links in events; request Host when empty") \
    X (inject_endpoint,    STR,  "tcp://127.0.0.1:5560", 0, 0, "ZeroMQ inject ROUTER endpoint")        \
    X (events_endpoint,    STR,  "tcp://127.0.0.1:5561", 0, 0, "ZeroMQ events PUB endpoint")           \
    X (curve_secret_key,   STR,  "",      0, 0,     "Z85 CURVE secret key of the inject and events sockets; CURVE off when empty") \
    X (curve_allowed_clients, STR, "",    0, 0,     "comma-separated Z85 public keys of the clients CURVE admits") \
    X (room_shards,        INT,  "0",     0, 256,   "room shard actors; 0 = number of cores")               \
    X (user_shards,        INT,  "0",     0, 256,   "user shard actors; 0 = number of cores")               \
    X (persister_workers,  INT,  "2",     1, 64,    "persister actors, one PostgreSQL connection each")     \
    X (group_commit_max,   INT,  "64",    1, 4096,  "most requests one persister transaction commits")      \
    X (log_level,          STR,  "info",  0, 0,     "error, warn, info or debug")                           \
    X (access_token_ttl,   INT,  "900",   10, 86400, "access token lifetime, seconds")                      \
    X (refresh_token_ttl,  INT,  "604800", 60, 31536000, "refresh token and session lifetime, seconds")     \
    X (page_size_max,      INT,  "200",   1, 10000, "largest page_size a list honours")                     \
    X (body_max,           INT,  "1048576", 1024, 67108864, "largest JSON request body, bytes")             \
    X (upload_max,         INT,  "26214400", 1024, 1073741824, "largest upload, bytes")                     \
    X (media_workers,      INT,  "2",     1, 64,    "media actors (upload sniffing, thumbnails)")           \
    X (rate_limit_per_sec, INT,  "20",    1, 1000000, "message sends per user per second")                  \
    X (rate_limit_burst,   INT,  "50",    1, 1000000, "burst of message sends per user")                    \
    X (presence_grace,     INT,  "30",    0, 3600,  "seconds after the last connection before offline")     \
    X (typing_ttl,         INT,  "6",     1, 60,    "seconds a typing.start lasts")                         \
    X (ws_queue_max,       INT,  "1048576", 4096, 1073741824, "per-connection output bound, bytes")         \
    X (assistant_username, STR,  "assistant", 0, 0, "the user that answers in ai rooms")                    \
    X (metrics_token,      STR,  "",      0, 0,     "bearer token required by /metrics; open when empty")   \
    X (password_ops,       INT,  "2",     1, 10,    "Argon2id opslimit")                                    \
    X (password_mem_kib,   INT,  "65536", 8, 4194304, "Argon2id memlimit, KiB")

typedef struct {
#define X(name, kind, def, lo, hi, help) CONFIG_FIELD_##kind (name)
#define CONFIG_FIELD_STR(name)  char *name;
#define CONFIG_FIELD_INT(name)  int64_t name;
#define CONFIG_FIELD_BOOL(name) bool name;
    CONFIG_SETTINGS (X)
#undef X
} config_t;

/* Loads defaults, then `path` (may be NULL: no file), then PARLEY_* from the
   environment. Returns a new config (caller owns) or NULL with a message
   naming the setting written to `error` (error_size bytes). */
config_t *config_load (const char *path, char *error, size_t error_size);

/* Applies one `key`/`value` pair with validation; 0 or -1 with `error`. */
int config_set (config_t *self, const char *key, const char *value,
                char *error, size_t error_size);

/* Destroys a config; accepts NULL, nulls the pointer. */
void config_destroy (config_t **self_p);

/* Writes the effective settings as configuration file lines (`parleyd
   --print-config`), secrets hidden: jwt_secret, metrics_token and passwords
   in URLs or `password=` parameters. */
void config_print (const config_t *self, FILE *out);

/* Writes parley.conf.example: every setting with its help and default. */
void config_write_example (FILE *out);

/* Parses true/false, yes/no, on/off, 1/0 (any case) into *value; 0 or -1. */
int config_parse_bool (const char *text, bool *value);

#endif
