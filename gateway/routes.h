/*  gateway/routes.h — every REST endpoint of API.md, in one table.
 *
 *  A route maps a method and a path pattern to an operation name that a
 *  persister runs (actors/ops.h), or to a handler local to the gateway
 *  (health, metrics, the API document). `{id}` matches a UUID; `{name}` any
 *  one segment. The trailing slash is optional (API.md §0).
 */
#ifndef PARLEY_ROUTES_H
#define PARLEY_ROUTES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    GW_GET, GW_POST, GW_PUT, GW_PATCH, GW_DELETE, GW_OPTIONS, GW_HEAD,
    GW_METHOD_COUNT
} gw_method_t;

enum {
    ROUTE_ANON      = 1 << 0,   /* no authentication required              */
    ROUTE_LOCAL     = 1 << 1,   /* answered by the gateway itself           */
    ROUTE_MULTIPART = 1 << 2,   /* accepts multipart/form-data uploads      */
    ROUTE_SEND      = 1 << 3,   /* a message send: rate limited per user    */
    ROUTE_FILE      = 1 << 4,   /* a 200 answer names a file the gateway
                                   serves (gateway/files.h)                 */
};

typedef struct {
    gw_method_t method;
    const char *pattern;
    const char *op;
    unsigned flags;
} route_t;

typedef enum { ROUTE_FOUND, ROUTE_NO_PATH, ROUTE_NO_METHOD } route_match_t;

/* Finds the route for `method` and `path`. On ROUTE_FOUND sets *route and
   *params (a new object of captured segments, caller owns). On
   ROUTE_NO_METHOD writes the allowed methods ("GET, POST") into `allow`. */
route_match_t routes_match (gw_method_t method, const char *path,
                            const route_t **route, json_t **params,
                            char *allow, size_t allow_size);

/* True for a canonical UUID string (8-4-4-4-12 hex digits). */
bool routes_is_uuid (const char *s);

/* "GET" for GW_GET, ... */
const char *routes_method_name (gw_method_t method);

/* The whole table, ending with a NULL pattern (for the API document test). */
extern const route_t routes_table[];

#endif
