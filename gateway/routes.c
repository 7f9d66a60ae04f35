/*  gateway/routes.c — the route table and its matcher. See routes.h. */
#include "routes.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define A "/api/auth/"
#define M "/api/messaging/"
#define RUD(base, res)                                             \
    { GW_GET,    base "{id}/", res ".retrieve", 0 },               \
    { GW_PUT,    base "{id}/", res ".update", 0 },                 \
    { GW_PATCH,  base "{id}/", res ".update", 0 },                 \
    { GW_DELETE, base "{id}/", res ".delete", 0 }

const route_t routes_table[] = {
    { GW_GET,    "/healthz",                 "healthz", ROUTE_ANON | ROUTE_LOCAL },
    { GW_GET,    "/readyz",                  "readyz",  ROUTE_ANON | ROUTE_LOCAL },
    { GW_GET,    "/metrics",                 "metrics", ROUTE_ANON | ROUTE_LOCAL },
    { GW_GET,    "/api/schema/",             "schema",  ROUTE_ANON | ROUTE_LOCAL },

    { GW_POST,   A "register/",              "auth.register", ROUTE_ANON },
    { GW_POST,   A "login/",                 "auth.login",    ROUTE_ANON },
    { GW_POST,   A "token/refresh/",         "auth.refresh",  ROUTE_ANON },
    { GW_POST,   A "logout/",                "auth.logout",   ROUTE_ANON },
    { GW_GET,    A "me/",                    "auth.me", 0 },
    { GW_GET,    A "users/",                 "users.list", 0 },

    { GW_GET,    M "rooms/",                 "rooms.list", 0 },
    { GW_POST,   M "rooms/",                 "rooms.create", 0 },
    RUD (M "rooms/", "rooms"),
    { GW_POST,   M "rooms/{id}/join/",       "rooms.join", 0 },
    { GW_POST,   M "rooms/{id}/leave/",      "rooms.leave", 0 },
    { GW_POST,   M "rooms/{id}/add_participant/",    "rooms.add_participant", 0 },
    { GW_POST,   M "rooms/{id}/remove_participant/", "rooms.remove_participant", 0 },
    { GW_POST,   M "rooms/{id}/mark_read/",  "rooms.mark_read", 0 },
    { GW_GET,    M "rooms/{id}/messages/",   "rooms.messages", 0 },
    { GW_GET,    M "rooms/{id}/events/",     "rooms.events", 0 },

    { GW_GET,    M "messages/",              "messages.list", 0 },
    { GW_POST,   M "messages/",              "messages.create", ROUTE_MULTIPART | ROUTE_SEND },
    RUD (M "messages/", "messages"),
    { GW_GET,    M "messages/{id}/history/", "messages.history", 0 },
    { GW_POST,   M "messages/{id}/pin/",     "messages.pin", 0 },
    { GW_POST,   M "messages/{id}/unpin/",   "messages.unpin", 0 },
    { GW_GET,    M "messages/{id}/thread/",  "messages.thread", 0 },
    { GW_POST,   M "messages/{id}/forward/", "messages.forward", ROUTE_SEND },

    { GW_GET,    M "reads/",                 "reads.list", 0 },
    { GW_POST,   M "reads/",                 "reads.create", 0 },
    RUD (M "reads/", "reads"),

    { GW_GET,    M "reactions/",             "reactions.list", 0 },
    { GW_POST,   M "reactions/",             "reactions.create", 0 },
    RUD (M "reactions/", "reactions"),

    { GW_GET,    M "presence/",              "presence.list", 0 },
    { GW_POST,   M "presence/",              "presence.create", 0 },
    { GW_GET,    M "presence/me/",           "presence.me", 0 },
    { GW_PUT,    M "presence/me/",           "presence.me_update", 0 },
    { GW_PATCH,  M "presence/me/",           "presence.me_update", 0 },
    RUD (M "presence/", "presence"),

    { GW_GET,    M "notifications/",         "notifications.list", 0 },
    { GW_POST,   M "notifications/read_all/", "notifications.read_all", 0 },
    { GW_GET,    M "notifications/{id}/",    "notifications.retrieve", 0 },
    { GW_POST,   M "notifications/{id}/read/", "notifications.read", 0 },
    { GW_GET,    M "notification-settings/me/", "settings.me", 0 },
    { GW_PUT,    M "notification-settings/me/", "settings.update", 0 },
    { GW_PATCH,  M "notification-settings/me/", "settings.update", 0 },

    { GW_POST,   M "attachments/",           "attachments.create", ROUTE_MULTIPART },
    { GW_GET,    M "attachments/{id}/",      "attachments.retrieve", 0 },
    { GW_GET,    M "attachments/{id}/download/",  "attachments.download", ROUTE_FILE },
    { GW_GET,    M "attachments/{id}/thumbnail/", "attachments.thumbnail", ROUTE_FILE },

    { GW_GET,    "/api/admin/schedules/",            "admin.schedules", 0 },
    { GW_GET,    "/api/admin/schedules/{name}/",     "admin.schedule", 0 },
    { GW_PATCH,  "/api/admin/schedules/{name}/",     "admin.schedule_update", 0 },
    { GW_POST,   "/api/admin/schedules/{name}/run/", "admin.schedule_run", 0 },
    { GW_GET,    "/api/admin/task-runs/",            "admin.task_runs", 0 },
    { 0, NULL, NULL, 0 }
};

static const char *const s_methods[GW_METHOD_COUNT] = {
    "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"
};

const char *
routes_method_name (gw_method_t method)
{
    return method < GW_METHOD_COUNT ? s_methods[method] : "?";
}

static bool
s_is_uuid (const char *s, size_t len)
{
    if (len != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit ((unsigned char) s[i]))
            return false;
    }
    return true;
}

bool
routes_is_uuid (const char *s)
{
    return s && s_is_uuid (s, strlen (s));
}

/* Matches `path` against `pattern`, capturing {segments} into `params`. */
static bool
s_match (const char *pattern, const char *path, json_t *params)
{
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '{') {
            const char *close = strchr (p, '}');
            const char *end = strchr (s, '/');
            size_t len = end ? (size_t) (end - s) : strlen (s);
            char name[32];
            snprintf (name, sizeof name, "%.*s", (int) (close - p - 1), p + 1);
            if (len == 0 || (strcmp (name, "id") == 0 && !s_is_uuid (s, len)))
                return false;
            json_object_set_new (params, name, json_stringn (s, len));
            p = close + 1;
            s += len;
        }
        else if (*p++ != *s++)
            return false;
    }
    /* the trailing slash is optional */
    if (*p == '\0')
        return *s == '\0' || (s[0] == '/' && s[1] == '\0');
    return p[0] == '/' && p[1] == '\0' && *s == '\0';
}

route_match_t
routes_match (gw_method_t method, const char *path, const route_t **route,
              json_t **params, char *allow, size_t allow_size)
{
    bool path_known = false;
    bool allowed[GW_METHOD_COUNT] = { false };
    for (const route_t *r = routes_table; r->pattern; r++) {
        json_t *captured = json_object ();
        if (!s_match (r->pattern, path, captured)) {
            json_decref (captured);
            continue;
        }
        path_known = true;
        allowed[r->method] = true;
        if (r->method == method || (method == GW_HEAD && r->method == GW_GET)) {
            *route = r;
            *params = captured;
            return ROUTE_FOUND;
        }
        json_decref (captured);
    }
    if (!path_known)
        return ROUTE_NO_PATH;
    size_t used = 0;
    allow[0] = '\0';
    allowed[GW_OPTIONS] = true;
    for (int m = 0; m < GW_METHOD_COUNT; m++)
        if (allowed[m] && used < allow_size)
            used += (size_t) snprintf (allow + used, allow_size - used, "%s%s",
                                       used ? ", " : "", s_methods[m]);
    return ROUTE_NO_METHOD;
}
