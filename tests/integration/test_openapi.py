"""The OpenAPI document (docs/openapi.yaml): served at /api/schema/, in step
with the route table (gateway/routes.c), and real responses validate against
it (tests/integration/openapi_check.py; the conftest helpers run that check
on every response too)."""

import json
import os
import re
import uuid

import pytest
import requests
import yaml

import openapi_check
from openapi_check import validate_response

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
ROUTES_C = os.path.join(REPO_ROOT, "gateway", "routes.c")
DOC_PATH = os.path.join(REPO_ROOT, "docs", "openapi.yaml")


# ------------------------------------------------------------ route table --

def _strip_c_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _c_string(expr, macros, strings):
    """`M @3@` (adjacent literals, here as @n@ placeholders, and macro names)
    -> text."""
    out = ""
    for token in re.findall(r"@\d+@|\w+", expr):
        if token.startswith("@"):
            out += strings[int(token[1:-1])][1:-1]
        elif token in macros:
            out += macros[token]
        else:
            raise AssertionError(f"routes.c: unknown name {token!r} in {expr!r}")
    return out


def parse_routes(path=ROUTES_C):
    """[(METHOD, pattern, op)] of gateway/routes.c's routes_table, with its
    string macros (A, M) and the RUD(base, res) macro expanded."""
    with open(path, encoding="utf-8") as f:
        text = _strip_c_comments(f.read())
    # string literals -> @n@, so that the braces of "{id}/" are out of the way
    strings = []

    def stash(m):
        strings.append(m.group(0))
        return f"@{len(strings) - 1}@"

    text = _STRING.sub(stash, text)
    text = text.replace("\\\n", " ")                  # macro line continuations
    macros = {name: strings[int(n)][1:-1]
              for name, n in re.findall(r"#define\s+(\w+)\s+@(\d+)@\s*\n", text)}
    entry = r"\{\s*GW_(\w+)\s*,\s*([^,{}]+?)\s*,\s*([^,{}]+?)\s*,\s*[^{}]*?\}"
    # function-like macros: #define NAME(base, res) { GW_X, base @n@, res @m@, f }, ...
    expanders = {}
    for name, base, res, body in re.findall(
            r"#define\s+(\w+)\s*\(\s*(\w+)\s*,\s*(\w+)\s*\)([^\n]*)\n", text):
        expanders[name] = [
            (method, _c_string(pattern.replace(base, "", 1), {}, strings),
             _c_string(op.replace(res, "", 1), {}, strings))
            for method, pattern, op in re.findall(entry, body)]
    table = re.search(r"routes_table\[\]\s*=\s*\{(.*?)\n\};", text, re.S)
    assert table, "routes_table not found in gateway/routes.c"
    routes = []
    for m in re.finditer(entry + r"|(\w+)\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)",
                         table.group(1)):
        if m.group(1):
            routes.append((m.group(1), _c_string(m.group(2), macros, strings),
                           _c_string(m.group(3), macros, strings)))
        elif m.group(4) in expanders:
            base = _c_string(m.group(5), macros, strings)
            res = _c_string(m.group(6), macros, strings)
            for method, suffix, op in expanders[m.group(4)]:
                routes.append((method, base + suffix, res + op))
        else:
            raise AssertionError(f"routes.c: unknown macro {m.group(4)}")
    return routes


def documented_operations():
    """{(METHOD, path): operation object} of the document."""
    doc = openapi_check.load_document()
    out = {}
    for path, item in doc["paths"].items():
        for method in openapi_check.METHODS:
            if method in item:
                out[(method.upper(), path)] = item[method]
    return out


def expected_operation_id(method, pattern, op, routes):
    """rooms.create -> rooms_create; the PATCH of an op PUT also serves ->
    <op>_partial_update (operationIds are unique)."""
    base = op.replace(".", "_")
    if method == "PATCH" and ("PUT", pattern, op) in routes:
        return base[:-len("_update")] + "_partial_update" \
            if base.endswith("_update") else base + "_partial_update"
    return base


# ------------------------------------------------------------------ tests --

def test_route_table_parses():
    routes = parse_routes()
    ops = {op for _, _, op in routes}
    assert len(routes) >= 60, routes
    assert ("POST", "/api/messaging/rooms/", "rooms.create") in routes
    assert ("PATCH", "/api/messaging/messages/{id}/", "messages.update") in routes
    assert ("GET", "/api/auth/me/", "auth.me") in routes
    assert {"healthz", "schema", "admin.task_runs"} <= ops
    assert len(set((m, p) for m, p, _ in routes)) == len(routes), "duplicate routes"


def test_every_route_is_documented_and_vice_versa():
    routes = parse_routes()
    documented = documented_operations()
    route_keys = {(m, p) for m, p, _ in routes}
    missing = sorted(f"{m} {p} ({op})" for m, p, op in routes if (m, p) not in documented)
    extra = sorted(f"{m} {p}" for (m, p) in documented if (m, p) not in route_keys)
    assert not missing, "routes of gateway/routes.c missing from docs/openapi.yaml:\n  " \
        + "\n  ".join(missing)
    assert not extra, "docs/openapi.yaml documents paths gateway/routes.c does not route:\n  " \
        + "\n  ".join(extra)


def test_operation_ids_follow_the_route_names():
    routes = parse_routes()
    documented = documented_operations()
    wrong = []
    for method, pattern, op in routes:
        node = documented.get((method, pattern))
        if node is None:
            continue
        want = expected_operation_id(method, pattern, op, routes)
        if node.get("operationId") != want or node.get("x-parley-op") != op:
            wrong.append(f"{method} {pattern}: operationId {node.get('operationId')!r} "
                         f"x-parley-op {node.get('x-parley-op')!r}, want {want!r} / {op!r}")
    assert not wrong, "\n".join(wrong)
    ids = [node["operationId"] for node in documented.values()]
    assert len(ids) == len(set(ids)), "operationIds are not unique"


def test_document_is_openapi_3_with_the_required_components():
    doc = openapi_check.load_document()
    assert doc["openapi"].startswith("3.0.")
    schemas = doc["components"]["schemas"]
    for name in ("User", "UserBrief", "Room", "Message", "Attachment", "Read", "Reaction",
                 "Presence", "Notification", "NotificationSettings", "Schedule", "TaskRun",
                 "RoomEvent", "Detail", "FieldErrors", "LoginResponse", "TokenPair",
                 "PaginatedRoomList", "PaginatedMessageList"):
        assert name in schemas, name
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["cookieAuth"]["in"] == "cookie"
    # every schema converts to valid JSON Schema
    import jsonschema
    for name in schemas:
        converted = openapi_check.to_json_schema(doc, {"$ref": f"#/components/schemas/{name}"})
        jsonschema.Draft7Validator.check_schema(converted)


def test_schema_endpoint_serves_the_document(server):
    r = requests.get(server.url + "/api/schema/", timeout=15)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"].split(";")[0] == "application/vnd.oai.openapi"
    with open(DOC_PATH, "rb") as f:
        on_disk = f.read()
    assert r.content == on_disk, "GET /api/schema/ is not docs/openapi.yaml (rebuild parleyd?)"
    assert yaml.safe_load(r.content) == openapi_check.load_document()
    validate_response("GET", "/api/schema/", r)
    # no trailing slash and HEAD work too; anonymous, so a bad token is not needed
    assert requests.get(server.url + "/api/schema", timeout=15).content == on_disk
    h = requests.head(server.url + "/api/schema/", timeout=15)
    assert h.status_code == 200 and h.content == b""


# ------------------------------------------------------ the checker itself --

def _fake(status, body, content_type="application/json", method="GET",
          url="http://127.0.0.1:1/api/auth/me/", headers=None):
    r = requests.Response()
    r.status_code = status
    r._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r.headers["Content-Type"] = content_type
    for k, v in (headers or {}).items():
        r.headers[k] = v
    r.request = requests.Request(method, url).prepare()
    r.url = url
    return r


def _user_json(**extra):
    body = {"id": str(uuid.uuid4()), "username": "alice", "display_name": "", "email": "",
            "date_joined": "2026-11-25T12:00:00.123Z", "is_staff": False,
            "activity": {"messages_sent": 0, "reactions_given": 0, "last_message_at": None,
                         "last_seen": None}}
    body.update(extra)
    return body


def test_checker_accepts_a_conforming_response():
    validate_response("GET", "/api/auth/me/", _fake(200, _user_json()))
    validate_response("GET", "/api/auth/me", _fake(200, _user_json()))       # no slash
    validate_response("GET", "/api/auth/me/?x=1", _fake(200, _user_json()))  # query


def test_checker_refuses_drift():
    cases = {
        "undocumented field": _fake(200, _user_json(secret=1)),
        "missing field": _fake(200, {k: v for k, v in _user_json().items() if k != "email"}),
        "null where not nullable": _fake(200, _user_json(username=None)),
        "timestamp without milliseconds": _fake(200, _user_json(date_joined="2026-11-25T12:00:00Z")),
        "id not a uuid": _fake(200, _user_json(id="42")),
        "undocumented status": _fake(201, _user_json()),
        "wrong content type": _fake(200, b"{}", "text/plain"),
        "401 without WWW-Authenticate": _fake(401, {"detail": "x"}),
        "error body without detail": _fake(404, {"message": "x"}),
    }
    for what, response in cases.items():
        with pytest.raises(AssertionError):
            validate_response("GET", "/api/auth/me/", response)
            pytest.fail(f"not refused: {what}")


def test_checker_templates_and_undocumented_operations():
    rid = str(uuid.uuid4())
    op = openapi_check.find_operation("GET", f"/api/messaging/rooms/{rid}/")
    assert op.id == "rooms_retrieve"
    assert openapi_check.find_operation("GET", "/api/messaging/presence/me/").id == "presence_me"
    assert openapi_check.find_operation("GET", f"/api/messaging/presence/{rid}").id \
        == "presence_retrieve"
    assert openapi_check.find_operation("PATCH", "/api/messaging/notification-settings/me/").id \
        == "settings_partial_update"
    assert openapi_check.find_operation("GET", "/api/messaging/rooms/not-a-uuid/") is None
    with pytest.raises(AssertionError):
        validate_response("GET", "/nope/", _fake(404, {"detail": "Not found."}))
    with pytest.raises(AssertionError):
        validate_response("PUT", "/api/auth/me/", _fake(405, {"detail": "x"}, method="PUT"))
    # the lenient hook: unknown paths must be 404, unknown methods 405 + Allow
    openapi_check.check_response(_fake(404, {"detail": "Not found."},
                                       url="http://127.0.0.1:1/nope/"))
    openapi_check.check_response(_fake(405, {"detail": "Method \"PUT\" not allowed."},
                                       method="PUT", headers={"Allow": "GET, OPTIONS"}))
    with pytest.raises(AssertionError):
        openapi_check.check_response(_fake(200, {}, url="http://127.0.0.1:1/nope/"))


# --------------------------------------------------------- real responses --

def test_real_responses_validate(server):
    """A walk through the implemented endpoints, each answer checked against
    the document (the conftest hook checks every other test's too)."""
    alice = server.user()
    bob = server.user()
    checked, problems = [], []

    def call(user, method, path, **kw):
        with openapi_check.disabled():      # checked here, every problem collected
            r = (user.request(method, path, **kw) if user is not None
                 else server.request(method, path, **kw))
        try:
            validate_response(method, path, r)
        except AssertionError as exc:
            problems.append(str(exc))
        checked.append((method, path, r.status_code))
        return r

    call(None, "GET", "/healthz")
    call(None, "GET", "/readyz")
    call(None, "GET", "/metrics")
    call(None, "GET", "/api/auth/me/")                                   # 401
    call(alice, "GET", "/api/auth/me/")
    call(alice, "GET", "/api/auth/users/", params={"search": alice.username[:6]})
    call(alice, "GET", "/api/auth/users/", params={"page": 999})          # 404 Invalid page
    call(None, "POST", "/api/auth/register/", json={"username": "x"})     # 400 field errors
    call(None, "POST", "/api/auth/login/",
         json={"username": alice.username, "password": "wrong-password"})  # 401
    r = call(None, "POST", "/api/auth/login/",
             json={"username": alice.username, "password": alice.password})
    r = call(None, "POST", "/api/auth/token/refresh/", json={"refresh": r.json()["refresh"]})
    call(None, "POST", "/api/auth/logout/", json={"refresh": r.json()["refresh"]})

    room = call(alice, "POST", "/api/messaging/rooms/",
                json={"name": "oa", "participants": [bob.id], "is_private": False}).json()
    rid = room["id"]
    call(alice, "POST", "/api/messaging/rooms/",
         json={"room_type": "direct", "participants": [bob.id]})
    call(alice, "POST", "/api/messaging/rooms/",
         json={"room_type": "direct", "participants": [bob.id]})          # 200 again
    call(alice, "GET", "/api/messaging/rooms/")
    call(bob, "GET", "/api/messaging/rooms/", params={"discover": "true"})
    call(alice, "GET", f"/api/messaging/rooms/{rid}/")
    call(alice, "PATCH", f"/api/messaging/rooms/{rid}/", json={"description": "d"})
    call(alice, "GET", f"/api/messaging/rooms/{uuid.uuid4()}/")           # 404
    call(alice, "POST", "/api/messaging/rooms/", data="x",
         headers={"Content-Type": "text/plain"})                          # 415

    m = call(alice, "POST", "/api/messaging/messages/",
             json={"room": rid, "content": "hello @" + bob.username,
                   "client_id": "oa-1"}).json()
    call(alice, "POST", "/api/messaging/messages/",
         json={"room": rid, "content": "hello", "client_id": "oa-1"})     # 200 same client_id
    call(bob, "POST", "/api/messaging/messages/",
         json={"room": rid, "content": "reply", "reply_to": m["id"]})
    call(alice, "GET", "/api/messaging/messages/", params={"room": rid})
    call(alice, "GET", f"/api/messaging/messages/{m['id']}/")
    call(alice, "PATCH", f"/api/messaging/messages/{m['id']}/", json={"content": "edited"})
    call(alice, "GET", f"/api/messaging/messages/{m['id']}/history/")
    call(alice, "GET", f"/api/messaging/messages/{m['id']}/thread/")
    call(alice, "POST", f"/api/messaging/messages/{m['id']}/pin/")
    call(alice, "POST", f"/api/messaging/messages/{m['id']}/unpin/")
    call(bob, "POST", f"/api/messaging/rooms/{rid}/mark_read/", json={"message": m["id"]})
    call(alice, "GET", f"/api/messaging/rooms/{rid}/messages/")
    call(alice, "GET", f"/api/messaging/rooms/{rid}/events/")
    call(bob, "GET", "/api/messaging/reads/", params={"room": rid})
    rd = call(bob, "POST", "/api/messaging/reads/", json={"message": m["id"]}).json()
    call(bob, "GET", f"/api/messaging/reads/{rd['id']}/")
    call(bob, "PATCH", f"/api/messaging/reads/{rd['id']}/", json={})
    call(alice, "DELETE", f"/api/messaging/reads/{rd['id']}/")               # 403
    call(bob, "DELETE", f"/api/messaging/reads/{rd['id']}/")
    re_ = call(bob, "POST", "/api/messaging/reactions/",
               json={"message": m["id"], "emoji": "👍"}).json()
    call(bob, "POST", "/api/messaging/reactions/", json={"message": m["id"], "emoji": "👍"})
    call(bob, "POST", "/api/messaging/reactions/", json={"message": m["id"], "emoji": "a b"})
    call(alice, "GET", "/api/messaging/reactions/", params={"message": m["id"]})
    call(alice, "GET", f"/api/messaging/reactions/{re_['id']}/")
    call(bob, "PUT", f"/api/messaging/reactions/{re_['id']}/", json={"emoji": "🎉"})
    call(alice, "GET", f"/api/messaging/messages/{m['id']}/")                # reactions summary
    call(alice, "POST", f"/api/messaging/messages/{m['id']}/forward/", json={"room": rid})
    call(alice, "DELETE", f"/api/messaging/messages/{m['id']}/")
    call(alice, "GET", f"/api/messaging/rooms/{rid}/events/", params={"after_seq": 1})

    call(alice, "GET", "/api/messaging/presence/")
    call(alice, "GET", "/api/messaging/presence/me/")
    call(alice, "PATCH", "/api/messaging/presence/me/", json={"status": "busy"})
    call(alice, "POST", f"/api/messaging/rooms/{rid}/leave/")
    call(bob, "DELETE", f"/api/messaging/rooms/{rid}/")
    assert len(checked) > 30
    assert not problems, f"{len(problems)} of {len(checked)} responses break the " \
        "contract:\n\n" + "\n\n".join(problems)


def test_metrics_behind_a_token_validates(server_factory):
    srv = server_factory({"metrics_token": "metrics-" + "t" * 30})
    problems = []
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": "Bearer metrics-" + "t" * 30}):
        with openapi_check.disabled():
            r = srv.get("/metrics", headers=headers)
        try:
            validate_response("GET", "/metrics", r)
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, "\n\n".join(problems)
