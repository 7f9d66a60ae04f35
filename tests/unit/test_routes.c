/*  tests/unit/test_routes.c — the route table: matching, captures, 404/405. */
#include "routes.h"
#include "unit.h"

#include <string.h>

#define ROOM "0b6f3a52-9c1e-4c47-9f0e-6f7f1a2b3c4d"

/* Usage: a path with an id finds its operation and captures the id. */
static void
test_match_with_capture (void)
{
    const route_t *route = NULL;
    json_t *params = NULL;
    char allow[128];
    CU_ASSERT_EQUAL (routes_match (GW_POST, "/api/messaging/rooms/" ROOM "/join/", &route,
                                   &params, allow, sizeof allow), ROUTE_FOUND);
    CU_ASSERT_STRING_EQUAL (route->op, "rooms.join");
    CU_ASSERT_STRING_EQUAL (json_string_value (json_object_get (params, "id")), ROOM);
    json_decref (params);
}

static void
test_trailing_slash_optional (void)
{
    const route_t *route = NULL;
    json_t *params = NULL;
    char allow[128];
    CU_ASSERT_EQUAL (routes_match (GW_GET, "/api/auth/me", &route, &params, allow,
                                   sizeof allow), ROUTE_FOUND);
    json_decref (params);
    CU_ASSERT_EQUAL (routes_match (GW_GET, "/healthz/", &route, &params, allow,
                                   sizeof allow), ROUTE_FOUND);
    json_decref (params);
}

static void
test_not_found_and_not_allowed (void)
{
    const route_t *route = NULL;
    json_t *params = NULL;
    char allow[128];
    CU_ASSERT_EQUAL (routes_match (GW_GET, "/api/messaging/rooms/not-a-uuid/", &route,
                                   &params, allow, sizeof allow), ROUTE_NO_PATH);
    CU_ASSERT_EQUAL (routes_match (GW_GET, "/nope", &route, &params, allow, sizeof allow),
                     ROUTE_NO_PATH);
    CU_ASSERT_EQUAL (routes_match (GW_DELETE, "/api/auth/me/", &route, &params, allow,
                                   sizeof allow), ROUTE_NO_METHOD);
    CU_ASSERT_PTR_NOT_NULL (strstr (allow, "GET"));
    CU_ASSERT_PTR_NOT_NULL (strstr (allow, "OPTIONS"));
}

static void
test_me_before_id (void)
{
    const route_t *route = NULL;
    json_t *params = NULL;
    char allow[128];
    CU_ASSERT_EQUAL (routes_match (GW_PATCH, "/api/messaging/presence/me/", &route, &params,
                                   allow, sizeof allow), ROUTE_FOUND);
    CU_ASSERT_STRING_EQUAL (route->op, "presence.me_update");
    json_decref (params);
}

static void
test_every_route_matches_itself (void)
{
    for (const route_t *r = routes_table; r->pattern; r++) {
        char path[256];
        size_t n = 0;
        for (const char *p = r->pattern; *p && n < sizeof path - 40;) {
            if (*p == '{') {
                const char *close = strchr (p, '}');
                n += (size_t) snprintf (path + n, sizeof path - n, "%s", ROOM);
                p = close + 1;
            }
            else
                path[n++] = *p++;
        }
        path[n] = '\0';
        const route_t *found = NULL;
        json_t *params = NULL;
        char allow[128];
        CU_ASSERT_EQUAL (routes_match (r->method, path, &found, &params, allow, sizeof allow),
                         ROUTE_FOUND);
        if (found)
            CU_ASSERT_STRING_EQUAL (found->op, r->op);
        json_decref (params);
    }
}

int
main (void)
{
    CU_TestInfo tests[] = {
        { "match with capture", test_match_with_capture },
        { "trailing slash optional", test_trailing_slash_optional },
        { "404 and 405", test_not_found_and_not_allowed },
        { "me before {id}", test_me_before_id },
        { "every route matches itself", test_every_route_matches_itself },
        CU_TEST_INFO_NULL
    };
    return unit_run ("routes", tests);
}
