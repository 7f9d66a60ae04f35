/*  gateway/openapi.h — the OpenAPI document of the REST API (docs/openapi.yaml),
 *  compiled into the server by docs/embed_openapi.cmake and served at
 *  GET /api/schema/ with Content-Type application/vnd.oai.openapi. */
#ifndef PARLEY_GATEWAY_OPENAPI_H
#define PARLEY_GATEWAY_OPENAPI_H

#include <stddef.h>

/* The YAML text, NUL-terminated (the NUL is not counted in the size). */
extern const char gateway_openapi_yaml[];
extern const size_t gateway_openapi_yaml_size;

#endif
