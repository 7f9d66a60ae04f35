"""Acceptance tests of the foundation: operations endpoints (API.md §2.8),
the gateway's handling of bad input (§0, §6), authentication failures (§1),
start-up failures, flags, migrations and clean shutdown."""

import glob
import http.client
import json
import os
import re
import signal
import socket
import time

import pytest
import requests

from conftest import wait_until, free_port


# ---------------------------------------------------------------- helpers --

def raw_request(port, method, path, headers, body=b"", timeout=15):
    """Sends one HTTP/1.1 request on a fresh socket and returns
    (status, headers dict lower-cased, body bytes).  A server that answers
    before it has read the whole body (413) and closes is fine: send errors
    are ignored and the response is read anyway."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        for name, value in headers.items():
            head += f"{name}: {value}\r\n"
        head += "\r\n"
        try:
            if len(body) <= 65536:
                sock.sendall(head.encode("latin-1") + body)
                body = b""
            else:
                sock.sendall(head.encode("latin-1"))
            view = memoryview(body)
            while view:
                sent = sock.send(view[:65536])
                view = view[sent:]
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        sock.close()


def assert_still_serving(server):
    r = server.get("/healthz")
    assert r.status_code == 200, f"/healthz after bad input: {r.status_code} {r.text}"


def nested_arrays(n):
    return "[" * n + "]" * n


def login_body(user, **extra):
    body = {"username": user.username, "password": user.password}
    body.update(extra)
    return body


@pytest.fixture(scope="module")
def alice(server):
    return server.user()


# ------------------------------------------------------------- operations --

def test_healthz(server):
    r = server.get("/healthz")
    assert r.status_code == 200


def test_readyz_ok(server):
    r = server.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body.get("postgresql") == "ok", body
    assert body.get("redis") == "ok", body


def test_readyz_follows_redis(redis_private, server_factory, server):
    srv = server_factory(database=server.database, redis_url=redis_private.url)
    assert srv.get("/readyz").status_code == 200

    redis_private.stop()

    def not_ready():
        r = srv.get("/readyz", timeout=5)
        return [r] if r.status_code == 503 else None   # a 503 Response is falsy
    [r] = wait_until(not_ready, timeout=10,
                     message="/readyz did not turn 503 within 10 s of Redis stopping")
    body = r.json()
    assert body.get("redis") != "ok", body
    assert body.get("postgresql") == "ok", body
    assert srv.get("/healthz").status_code == 200, "the process is alive: /healthz stays 200"

    redis_private.start()

    def ready():
        r = srv.get("/readyz", timeout=5)
        return [r] if r.status_code == 200 else None
    [r] = wait_until(ready, timeout=15,
                     message="/readyz did not come back to 200 within 15 s of Redis restarting")
    assert r.json().get("redis") == "ok"


def test_metrics(server):
    server.get("/healthz")
    patterns = {
        "http requests with a status label":
            re.compile(r'^parley_http_requests_total\{[^}]*status="\d{3}"[^}]*\} \d+', re.M),
        "persister.0 envelope counter":
            re.compile(r'^parley_actor_envelopes_total\{[^}]*actor="persister\.0"[^}]*\} \d+',
                       re.M),
        "mailbox depths":
            re.compile(r'^parley_actor_mailbox_depth\{[^}]*actor="[^"]+"[^}]*\} \d+', re.M),
    }
    state = {}

    def complete():
        r = server.get("/metrics")
        state["r"] = r
        return r.status_code == 200 and all(p.search(r.text) for p in patterns.values())
    deadline = time.monotonic() + 5
    while not complete() and time.monotonic() < deadline:
        time.sleep(0.2)
    r = state["r"]
    assert r.status_code == 200, r.text
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    missing = [name for name, p in patterns.items() if not p.search(r.text)]
    assert not missing, f"/metrics lacks {missing}:\n{r.text[:3000]}"


# -------------------------------------------------------------- bad input --

def test_unknown_path_404(server):
    for path in ("/api/does-not-exist/", "/nope", "/api/messaging/rooms/not-a-uuid/"):
        r = server.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert r.json() == {"detail": "Not found."}, (path, r.text)
    assert_still_serving(server)


def test_wrong_method_405_with_allow(server, alice):
    r = server.delete("/api/auth/me/", token=alice)
    assert r.status_code == 405, r.text
    allow = [m.strip() for m in r.headers.get("Allow", "").split(",")]
    assert "GET" in allow, r.headers
    assert "DELETE" not in allow, r.headers
    assert "detail" in r.json()
    # without credentials too: the method is wrong whoever asks
    r = server.delete("/api/auth/me/")
    assert r.status_code == 405, r.text
    assert "Allow" in r.headers
    assert_still_serving(server)


def test_path_without_trailing_slash_same_answer(server, alice):
    with_slash = server.get("/api/auth/me/", token=alice)
    without = server.get("/api/auth/me", token=alice)
    assert with_slash.status_code == 200, with_slash.text
    assert without.status_code == with_slash.status_code, without.text
    assert without.json() == with_slash.json()

    r = server.post("/api/auth/login", json=login_body(alice))
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == alice.id

    assert server.get("/api/auth/me").status_code == 401
    assert server.get("/api/does-not-exist").status_code == 404
    assert_still_serving(server)


def test_wrong_content_type_415(server, alice):
    r = server.post("/api/auth/login/", data=json.dumps(login_body(alice)),
                    headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    assert "detail" in r.json()
    r = server.post("/api/messaging/rooms/", token=alice,
                    data=json.dumps({"name": "x", "room_type": "group"}),
                    headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    assert_still_serving(server)


def test_malformed_json_400(server):
    for body in (b'{"username": "a", ', b"not json", b'{"a": 1}}', b"{'a': 1}"):
        r = server.post("/api/auth/login/", data=body,
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert isinstance(r.json(), dict)
    assert_still_serving(server)


def test_nesting_depth_limit(server, alice):
    # The body object is level 1: 31 nested arrays inside it make 32 levels
    # (allowed; unknown fields are ignored), 32 make 33 (400).
    ok = json.dumps(login_body(alice))[:-1] + ', "deep": ' + nested_arrays(31) + "}"
    r = server.post("/api/auth/login/", data=ok, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, f"32 levels must be accepted: {r.status_code} {r.text}"

    deep = json.dumps(login_body(alice))[:-1] + ', "deep": ' + nested_arrays(32) + "}"
    r = server.post("/api/auth/login/", data=deep,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text

    very_deep = '{"a": ' + nested_arrays(5000) + "}"
    r = server.post("/api/auth/login/", data=very_deep,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert_still_serving(server)


def test_array_body_400(server, alice):
    r = server.post("/api/auth/login/", json=[login_body(alice)])
    assert r.status_code == 400, r.text
    r = server.post("/api/messaging/rooms/", token=alice, json=["x"])
    assert r.status_code == 400, r.text
    r = server.post("/api/auth/login/", json="a string")
    assert r.status_code == 400, r.text
    assert_still_serving(server)


def test_body_size_limit(server, alice):
    limit = 1024 * 1024
    # exactly 1 MiB: accepted
    prefix = json.dumps(login_body(alice))[:-1] + ', "pad": "'
    body = prefix + "x" * (limit - len(prefix) - 2) + '"}'
    assert len(body.encode()) == limit
    r = server.post("/api/auth/login/", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, f"a 1 MiB body is within the limit: {r.status_code} {r.text}"

    # one byte more: 413
    big = prefix + "x" * (limit - len(prefix) - 1) + '"}'
    assert len(big.encode()) == limit + 1
    status, _, data = raw_request(server.port, "POST", "/api/auth/login/",
                                  {"Content-Type": "application/json",
                                   "Content-Length": str(len(big))}, big.encode())
    assert status == 413, data[:300]

    # far more, announced up front
    status, _, data = raw_request(server.port, "POST", "/api/auth/login/",
                                  {"Content-Type": "application/json",
                                   "Content-Length": str(8 * limit)}, b"{" * 65536)
    assert status == 413, data[:300]
    assert_still_serving(server)


def test_invalid_utf8_400(server, alice):
    body = b'{"username": "\xff\xfe", "password": "pw-secret-123"}'
    r = server.post("/api/auth/login/", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    body = b'{"name": "caf\xc3", "room_type": "group"}'
    r = server.post("/api/messaging/rooms/", token=alice, data=body,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert_still_serving(server)


def test_chunked_body_411(server):
    # The whole request goes out in one write: the server may answer 411 and
    # close as soon as it has seen the headers.
    chunks = [b'{"username": "a", ', b'"password": "bbbbbbbb"}']
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    status, _, data = raw_request(server.port, "POST", "/api/auth/login/",
                                  {"Content-Type": "application/json",
                                   "Transfer-Encoding": "chunked"}, body)
    assert status == 411, data[:300]
    assert_still_serving(server)


# ------------------------------------------------------------ credentials --

def test_no_credentials_401(server):
    r = server.get("/api/auth/me/")
    assert r.status_code == 401, r.text
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers
    assert r.json() == {"detail": "Authentication credentials were not provided."}
    r = server.get("/api/messaging/rooms/")
    assert r.status_code == 401, r.text
    assert "WWW-Authenticate" in r.headers


def test_garbage_token_401(server):
    for header in ("Bearer garbage", "Bearer a.b.c", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer"):
        r = server.get("/api/auth/me/", headers={"Authorization": header})
        assert r.status_code == 401, (header, r.status_code, r.text)
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), (header, r.headers)
    assert_still_serving(server)


def test_forged_tokens(server, alice):
    good = server.forge_token(alice.id)
    r = server.get("/api/auth/me/", token=good)
    assert r.status_code == 200, f"a token signed with jwt_secret is valid: {r.text}"
    assert r.json()["id"] == alice.id

    bad = {
        "wrong secret": server.forge_token(alice.id, secret="not-the-secret-" * 3),
        "alg none": server.forge_token(alice.id, alg="none"),
        "expired": server.forge_token(alice.id, exp_in=-60),
        "refresh type": server.forge_token(alice.id, type="refresh"),
        "no type": server.forge_token(alice.id, type=None),
        "no exp": server.forge_token(alice.id, exp_in=None),
        "HS512": server.forge_token(alice.id, alg="HS512"),
    }
    for what, token in bad.items():
        r = server.get("/api/auth/me/", token=token)
        assert r.status_code == 401, (what, r.status_code, r.text)
        assert "WWW-Authenticate" in r.headers, what


# ---------------------------------------------------------------- start-up --

def test_unreachable_postgresql_exits(run_parleyd):
    port = free_port()   # nothing listens there
    result = run_parleyd(settings={"pg_dsn": f"postgresql://parley@127.0.0.1:{port}/parley"},
                         timeout=15)
    assert result.returncode != 0, result.stderr
    assert result.elapsed < 11, f"took {result.elapsed:.1f} s to give up"
    assert re.search(r"pg_dsn|postgres", result.stderr, re.I), result.stderr


def test_invalid_config_value_exits_2(run_parleyd):
    result = run_parleyd(settings={"http_port": "abc"}, timeout=10)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "http_port" in result.stderr, result.stderr


@pytest.mark.parametrize("setting", ["http_port", "inject_endpoint", "events_endpoint"])
def test_port_taken_exits(run_parleyd, server, setting):
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(8)
        port = holder.getsockname()[1]
        value = port if setting == "http_port" else f"tcp://127.0.0.1:{port}"
        result = run_parleyd(settings={"pg_dsn": server.dsn, setting: value}, timeout=20)
    finally:
        holder.close()
    assert result.returncode != 0, (result.returncode, result.stderr[-2000:])
    assert setting in result.stderr, result.stderr[-2000:]
    assert_still_serving(server)


def test_help(run_parleyd):
    result = run_parleyd("--help", timeout=10)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower(), result.stdout


def test_print_config_masks_secret(run_parleyd):
    secret = "s3cret-" + "q" * 40
    result = run_parleyd("--print-config",
                         settings={"jwt_secret": secret, "http_port": 18123,
                                   "metrics_token": "metrics-" + "z" * 30}, timeout=10)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "jwt_secret" in out, out
    assert secret not in out, "the JWT secret is printed in clear"
    assert "metrics-" + "z" * 30 not in out, "the metrics token is printed in clear"
    assert re.search(r"http_port\W+18123", out), out


def test_unknown_option_exits_2(run_parleyd):
    result = run_parleyd("--no-such-option", timeout=10)
    assert result.returncode == 2, (result.returncode, result.stderr)


# -------------------------------------------------------------- migrations --

def test_migrations_recorded_and_not_reapplied(server, repo_root):
    files = sorted(os.path.splitext(os.path.basename(p))[0]
                   for p in glob.glob(os.path.join(repo_root, "schema", "migrations", "*.sql")))
    assert files, "no migrations found"
    before = server.sql("SELECT version, applied_at FROM schema_migrations ORDER BY version")
    assert [row[0] for row in before] == files

    bob = server.user()
    server.restart()
    after = server.sql("SELECT version, applied_at FROM schema_migrations ORDER BY version")
    assert after == before, "a restart applied migrations again"
    assert not re.search(r"applied \d", server.log_since_start()), server.log_since_start()
    assert server.get("/readyz").status_code == 200
    server.login(bob.username, bob.password)


# ---------------------------------------------------------------- shutdown --

def test_sigterm_clean_exit_with_idle_connections(server_factory, server):
    srv = server_factory(database=server.database)
    idle = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    half = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    half.sendall(b"POST /api/auth/login/ HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nContent-Length: 100\r\n\r\n{\"user")
    keep = requests.Session()
    assert keep.get(srv.url + "/healthz", timeout=5).status_code == 200
    try:
        started = time.monotonic()
        assert srv.stop(signal.SIGTERM, timeout=15) == 0
        assert time.monotonic() - started < 15
    finally:
        idle.close()
        half.close()
        keep.close()


def test_sigint_clean_exit(server_factory, server):
    srv = server_factory(database=server.database)
    user = srv.user()
    assert srv.get("/api/auth/me/", token=user).status_code == 200
    assert srv.stop(signal.SIGINT, timeout=15) == 0
