"""Checks real HTTP responses against the OpenAPI document docs/openapi.yaml,
so the document cannot drift from the server.

    from openapi_check import validate_response
    r = server.get("/api/messaging/rooms/")
    validate_response("GET", "/api/messaging/rooms/", r)

validate_response(method, path, response) finds the operation by method and
concrete path (templated paths match, `{id}` only a UUID as in the server's
router, a literal segment wins over a template, the trailing slash is
optional, a query string or full URL is fine), requires the status code to
be documented for it, the Content-Type to be one of the documented media
types, documented `required` headers to be present, an empty body where no
content is documented, and validates a JSON body against the response
schema. Any mismatch raises AssertionError naming the operation, the status
and every schema error.

check_response(response) is the hook for the test helpers: it takes method
and URL from response.request and is lenient only where the document cannot
speak: OPTIONS (200 `{}` on every path), `/ws/` (WebSocket), and paths or
methods the document does not list — those must answer 404 (no such path) or
405 (no such method) with a `{"detail": ...}` body. Set PARLEY_OPENAPI_CHECK=0
to turn the hook off (or `with openapi_check.disabled():` around requests
that are meant to break it).

validate_schema(name, value) checks any value against components/schemas/
<name> — for WebSocket payloads: validate_schema("RoomEvent", event),
validate_schema("Message", ack["message"]).

The document is OpenAPI 3.0; its schemas become JSON Schema (draft 7) here:
`nullable: true` becomes `type: [X, "null"]` (or `anyOf` with null), OpenAPI-
only keywords are dropped and `$ref`s to components are inlined (titled with
the component's name). Formats are checked strictly: `uuid`, `date-time`
(RFC 3339 UTC with milliseconds, 2026-11-25T12:00:00.123Z, as API.md §0
says) and `uri` (an absolute http(s) URL).
"""

import contextlib
import functools
import json
import os
import re
import urllib.parse

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
DOCUMENT_PATH = os.path.join(REPO_ROOT, "docs", "openapi.yaml")

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
UUID_RE = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
URI_RE = re.compile(r"^https?://[^/\s?#]+(/[^\s]*)?$")

# Keywords of OpenAPI's Schema Object that JSON Schema does not have (or
# that mean something else there); `nullable` is handled separately.
_OPENAPI_ONLY = {"nullable", "discriminator", "xml", "externalDocs", "example",
                 "readOnly", "writeOnly", "deprecated"}
# Keywords whose value is a schema / a list of schemas / a map of schemas.
_SCHEMA_KEYS = {"items", "not", "additionalProperties"}
_SCHEMA_LIST_KEYS = {"allOf", "anyOf", "oneOf"}
_SCHEMA_MAP_KEYS = {"properties"}

FORMAT_CHECKER = jsonschema.FormatChecker(formats=())


@FORMAT_CHECKER.checks("uuid")
def _is_uuid(value):
    return not isinstance(value, str) or re.fullmatch(UUID_RE, value) is not None


@FORMAT_CHECKER.checks("date-time")
def _is_timestamp(value):
    return not isinstance(value, str) or TIMESTAMP_RE.match(value) is not None


@FORMAT_CHECKER.checks("uri")
def _is_uri(value):
    return not isinstance(value, str) or URI_RE.match(value) is not None


# ------------------------------------------------------------- document --

@functools.lru_cache(maxsize=None)
def load_document(path=DOCUMENT_PATH):
    """The parsed OpenAPI document (cached)."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _resolve_pointer(document, ref):
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, not {ref!r}")
    node = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[part]
    return node


def _deref(document, node):
    """Follows $ref (for response / parameter objects, not schemas)."""
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            raise ValueError(f"$ref cycle at {ref}")
        seen.add(ref)
        node = _resolve_pointer(document, ref)
    return node


def to_json_schema(document, schema, _stack=()):
    """An OpenAPI 3.0 Schema Object -> a self-contained JSON Schema (draft 7)."""
    if isinstance(schema, bool) or not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref in _stack:
            raise ValueError(f"recursive schema {ref} is not supported: {' -> '.join(_stack)}")
        out = to_json_schema(document, _resolve_pointer(document, ref), _stack + (ref,))
        if isinstance(out, dict) and "title" not in out:
            out = dict(out, title=ref.rsplit("/", 1)[-1])
        return out
    out = {}
    for key, value in schema.items():
        if key in _OPENAPI_ONLY or key.startswith("x-"):
            continue
        if key in _SCHEMA_KEYS:
            out[key] = to_json_schema(document, value, _stack)
        elif key in _SCHEMA_LIST_KEYS:
            out[key] = [to_json_schema(document, v, _stack) for v in value]
        elif key in _SCHEMA_MAP_KEYS:
            out[key] = {name: to_json_schema(document, v, _stack) for name, v in value.items()}
        else:
            out[key] = value
    if schema.get("nullable") is True:
        composite = any(k in out for k in ("allOf", "anyOf", "oneOf", "not"))
        if isinstance(out.get("type"), str) and not composite:
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = list(out["enum"]) + [None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


class _Operation:
    def __init__(self, template, method, node, path_item):
        self.template = template
        self.method = method.upper()
        self.node = node
        self.path_item = path_item
        self.id = node.get("operationId", f"{self.method} {template}")


@functools.lru_cache(maxsize=None)
def _routes(path=DOCUMENT_PATH):
    """[(compiled regex, literal segment count, template, {method: _Operation})]"""
    document = load_document(path)
    routes = []
    for template, item in document.get("paths", {}).items():
        ops = {m.upper(): _Operation(template, m, item[m], item)
               for m in METHODS if m in item}
        parts = []
        literals = 0
        for segment in template.strip("/").split("/"):
            m = re.fullmatch(r"\{(\w+)\}", segment)
            if m:
                parts.append(UUID_RE if m.group(1) == "id" else r"[^/]+")
            else:
                parts.append(re.escape(segment))
                literals += 1
        regex = re.compile("^/" + "/".join(parts) + "/?$") if parts != [""] else re.compile("^/$")
        routes.append((regex, literals, template, ops))
    return routes


def find_path(path, document_path=DOCUMENT_PATH):
    """(template, {METHOD: _Operation}) of the documented path matching the
    concrete `path` (no query), or (None, {})."""
    best = None
    for regex, literals, template, ops in _routes(document_path):
        if regex.match(path) and (best is None or literals > best[0]):
            best = (literals, template, ops)
    return (best[1], best[2]) if best else (None, {})


def find_operation(method, path, document_path=DOCUMENT_PATH):
    """The _Operation for METHOD and a concrete path, or None."""
    method = method.upper()
    _, ops = find_path(_path_only(path), document_path)
    return ops.get("GET" if method == "HEAD" else method)


def _path_only(path_or_url):
    return urllib.parse.urlsplit(path_or_url).path or "/"


@functools.lru_cache(maxsize=None)
def _validator(document_path, template, method, status_key, media):
    document = load_document(document_path)
    response = _deref(document, document["paths"][template][method.lower()]["responses"][status_key])
    schema = to_json_schema(document, response["content"][media].get("schema", {}))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=FORMAT_CHECKER)


# ------------------------------------------------------------ validation --

def _media_type(response):
    value = response.headers.get("Content-Type", "")
    return value.split(";", 1)[0].strip().lower()


def _media_matches(documented, actual):
    documented = documented.lower()
    if documented in ("*/*", actual):
        return True
    if documented.endswith("/*"):
        return actual.startswith(documented[:-1])
    return False


def _is_json(media):
    return media == "application/json" or media.endswith("+json")


def _excerpt(response, limit=600):
    text = response.content.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} bytes)"


def _fail(what, method, path, response, problem):
    raise AssertionError(
        f"OpenAPI contract (docs/openapi.yaml) violated by {method} {path} -> "
        f"{response.status_code} [{what}]: {problem}\n"
        f"  Content-Type: {response.headers.get('Content-Type', '(none)')}\n"
        f"  body: {_excerpt(response)}")


def _status_key(responses, status):
    for key in (str(status), f"{str(status)[0]}XX", f"{str(status)[0]}xx", "default"):
        if key in responses:
            return key
    return None


def _describe_errors(errors, limit=8):
    """Schema errors as indented lines ("" for none); for anyOf/oneOf, the
    deepest errors of the branches (those of the branch that nearly fit)."""
    errors = sorted(errors, key=jsonschema.exceptions.relevance)
    lines = []
    for error in errors[:limit]:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        schema_at = "/".join(str(p) for p in error.absolute_schema_path)
        lines.append(f"  - at {where}: {_short(error.message)}  [schema: {schema_at}]")
        context = sorted(error.context or [], key=lambda e: -len(e.absolute_path))
        for sub in context[:4]:
            sub_where = "/".join(str(p) for p in sub.absolute_path) or "(top)"
            lines.append(f"      · at {sub_where}: {_short(sub.message)}")
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more")
    return "\n".join(lines)


def _short(text, limit=300):
    return text if len(text) <= limit else text[:limit] + "..."


def _check_body(what, method, path, response, document_path, template, status_key,
                content):
    media = _media_type(response)
    if method == "HEAD":
        return
    if not content:
        if response.content:
            _fail(what, method, path, response,
                  f"status {status_key} documents no body, but one was sent")
        return
    matching = [m for m in content if _media_matches(m, media)]
    if not matching:
        _fail(what, method, path, response,
              f"Content-Type {media or '(none)'} is not one of the documented "
              f"{sorted(content)}")
    documented = matching[0]
    if not _is_json(documented.lower()) or "schema" not in content[documented]:
        return                      # bytes (downloads), text, YAML: not read here
    try:
        instance = json.loads(response.content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        _fail(what, method, path, response, f"the body is not JSON ({exc})")
    validator = _validator(document_path, template, method, status_key, documented)
    problems = _describe_errors(validator.iter_errors(instance))
    if problems:
        _fail(what, method, path, response,
              "the body does not match the documented schema:\n" + problems)


def validate_response(method, path, response, document_path=DOCUMENT_PATH):
    """Checks one requests.Response to METHOD path against the document;
    raises AssertionError on any mismatch (an unknown operation included)."""
    method = method.upper()
    concrete = _path_only(path)
    template, ops = find_path(concrete, document_path)
    if template is None:
        raise AssertionError(f"OpenAPI contract (docs/openapi.yaml): no documented path "
                             f"matches {method} {concrete} (status {response.status_code})")
    op = ops.get("GET" if method == "HEAD" else method)
    if op is None:
        raise AssertionError(f"OpenAPI contract (docs/openapi.yaml): {template} documents "
                             f"no {method} (documented: {', '.join(sorted(ops)) or 'none'}); "
                             f"the server answered {response.status_code}")
    document = load_document(document_path)
    responses = op.node.get("responses", {})
    what = f"{op.id} {op.template}"
    status_key = _status_key(responses, response.status_code)
    if status_key is None:
        _fail(what, method, path, response,
              f"status {response.status_code} is not documented for this operation "
              f"(documented: {', '.join(sorted(responses))})")
    documented = _deref(document, responses[status_key])
    for name, header in (documented.get("headers") or {}).items():
        header = _deref(document, header)
        if header.get("required") and name not in response.headers:
            _fail(what, method, path, response, f"required header {name} is missing")
    _check_body(what, method, path, response, document_path, op.template, status_key,
                documented.get("content") or {})


@functools.lru_cache(maxsize=None)
def _component_validator(document_path, name):
    document = load_document(document_path)
    schema = to_json_schema(document, {"$ref": f"#/components/schemas/{name}"})
    return jsonschema.Draft7Validator(schema, format_checker=FORMAT_CHECKER)


def validate_schema(name, instance, document_path=DOCUMENT_PATH):
    """Validates `instance` against components/schemas/<name> — e.g. the
    payloads of WebSocket events: validate_schema("Message", ack["message"]),
    validate_schema("RoomEvent", event). Raises AssertionError."""
    validator = _component_validator(document_path, name)
    problems = _describe_errors(validator.iter_errors(instance))
    if problems:
        raise AssertionError(f"OpenAPI contract (docs/openapi.yaml): not a valid {name}:\n"
                             + problems + f"\n  value: {_short(json.dumps(instance), 600)}")


def _check_detail(method, path, response, expected):
    """An answer the document describes only in general (404 for an unknown
    path, 405 for an unsupported method): a {"detail": "..."} body."""
    what = f"{method} on an undocumented {'path' if expected == 404 else 'method'}"
    if response.status_code not in (expected, 400):
        _fail(what, method, path, response,
              f"expected {expected} (not in the document), got {response.status_code}")
    if method == "HEAD":
        return
    if _media_type(response) != "application/json":
        _fail(what, method, path, response, "expected a JSON {\"detail\": ...} body")
    try:
        body = json.loads(response.content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        _fail(what, method, path, response, f"the body is not JSON ({exc})")
    if not isinstance(body, dict) or not isinstance(body.get("detail"), str):
        _fail(what, method, path, response, "expected a {\"detail\": \"...\"} body")
    if response.status_code == 405 and "Allow" not in response.headers:
        _fail(what, method, path, response, "405 without an Allow header")


_suspended = 0


def enabled():
    return _suspended == 0 and \
        os.environ.get("PARLEY_OPENAPI_CHECK", "1") not in ("0", "false", "no", "off")


@contextlib.contextmanager
def disabled():
    """Turns the check_response hook off inside a `with` block (for a test
    that checks, or deliberately breaks, the contract itself)."""
    global _suspended
    _suspended += 1
    try:
        yield
    finally:
        _suspended -= 1


def check_response(response, document_path=DOCUMENT_PATH):
    """The hook for the test helpers (see the module docstring). Returns the
    response, so it can wrap a call."""
    if not enabled() or response is None or response.request is None:
        return response
    method = (response.request.method or "GET").upper()
    path = _path_only(response.request.url)
    if method == "OPTIONS" or path.rstrip("/") == "/ws":
        return response
    template, ops = find_path(path, document_path)
    if template is None:
        _check_detail(method, path, response, 404)
    elif ("GET" if method == "HEAD" else method) not in ops:
        _check_detail(method, path, response, 405)
    else:
        validate_response(method, path, response, document_path)
    return response
