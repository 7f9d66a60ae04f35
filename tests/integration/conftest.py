"""Parley integration-test harness: real parleyd processes, each test module
on its own PostgreSQL database, its own ports and its own var dir.

How it runs
-----------
`bash tools/parley test` starts a private PostgreSQL 15, Redis 7 and an SMTP
sink and exports PARLEY_TEST_PG_DSN (a superuser DSN), PARLEY_TEST_PG_BIN,
PARLEY_TEST_REDIS_URL, PARLEY_TEST_SMTP_URL, PARLEY_TEST_MAILDIR and
PARLEY_TEST_VAR_DIR; ctest runs each tests/integration/test_*.py on its own
(two at a time) with PARLEYD=<path of parleyd>.  By hand:

    cd tests/integration && PARLEYD=../../build/parleyd python3 -m pytest -q test_x.py

(with the PARLEY_TEST_* variables exported, e.g. from var/test/env.sh written
by `tools/parley services test`).  Databases are dropped and var dirs removed
at the end; a var dir (with parleyd.log) is kept when a test of its scope
failed.  PARLEY_TEST_KEEP=1 keeps every var dir and database.

Fixtures
--------
server (module)
    A running, ready parleyd (GET /readyz == 200) on a fresh database
    `it_<module>_<pid>_<n>`, free loopback ports for HTTP, inject and events,
    Redis db number crc32(module) % 16 of the shared Redis, the shared SMTP
    sink, a fresh var dir under $PARLEY_TEST_VAR_DIR/it/, a random
    `jwt_secret`, fast Argon2id (password_ops=1, password_mem_kib=8192), no
    effective rate limit (rate_limit_per_sec = rate_limit_burst = 100000) and
    log_level=info; stdout+stderr go to `server.log_path`.
    On teardown: SIGTERM, at most 15 s, exit status 0 asserted (log tail
    printed otherwise), database dropped.

    Settings of one module, two ways (keys are the config names of
    actors/config.h, e.g. "rate_limit_burst", or PARLEY_* names; a value of
    None removes the setting so parleyd's default applies):
        PARLEY_SETTINGS = {"rate_limit_per_sec": 2, "rate_limit_burst": 3}
    at module level, or an indirect parametrization (one server per param):
        @pytest.mark.parametrize("server", [{"typing_ttl": 2}], indirect=True)

    Attributes: url ("http://127.0.0.1:PORT"), ws_url (".../ws/"), port,
    host, dsn, database (a Database), redis_url, var_dir, log_path,
    jwt_secret, inject_endpoint, events_endpoint, settings (dict), proc
    (subprocess.Popen).
    HTTP: get/post/put/patch/delete/head/options(path, token=None, **kw) ->
    requests.Response; `path` is relative ("/api/messaging/rooms/") or a full
    URL; `token` is an access token string or a User; **kw goes to requests
    (json=, data=, headers=, params=, files=, cookies=, timeout= default 15).
    request(method, path, token=None, **kw) is the general form;
    session(user=None) -> a requests.Session that takes relative paths
    (cookies persist: for sessionid/csrftoken tests).
    Every response of these helpers is checked against docs/openapi.yaml
    (openapi_check.check_response: documented status, headers and body
    schema) and a mismatch raises AssertionError; `with
    openapi_check.disabled():` (or PARLEY_OPENAPI_CHECK=0) turns that off.
    Users: register(username=None, password="pw-secret-123", expect=201,
    **fields) -> user json (a random unique username when None);
    login(username, password, expect=200) -> response json;
    user(username=None, password="pw-secret-123", **fields) -> User with
    .id .username .password .token (access) .refresh .headers
    ({"Authorization": "Bearer ..."}) .data (user json) .login_response
    .cookies, and .get/.post/... bound to the token.
    Tokens: forge_token(sub, type="access", exp_in=900, alg="HS256",
    secret=None, **claims) -> an HS256 JWT signed with server.jwt_secret
    (alg="none" gives an unsigned token; exp_in negative an expired one).
    White box: sql(query, *args) -> rows as lists of str (None for NULL),
    `%s` placeholders quoted client-side (`%%` for a literal %);
    sql_value(query, *args) -> first column of the first row or None;
    redis(*args) -> redis-cli output (text) on the server's Redis db.
    Process: start(wait=True), wait_ready(timeout=30), stop(sig=SIGTERM,
    timeout=15, check=True) -> exit status (check: assert 0),
    kill() (SIGKILL), restart(kill=False, settings=None, wait=True) (same
    ports, DB and var dir), alive, log_text(), log_since_start(),
    log_tail(n=60), wait_log(regex, timeout=10).

sql (module)
    server.sql.

server_factory (function) / module_server_factory (module)
    factory(settings=None, *, database=None, redis_url=None, wait=True,
    name=None, wrapper=None) -> another ParleyServer (wrapper: a command
    prefix such as ["valgrind", ...]) with its own ports and var dir; on a
    fresh database unless database= is given (e.g. server.database to run a
    second node on the module's DB).  Its servers are stopped (exit 0
    asserted) and its own databases dropped at the end of the test (module).
    List redis_private BEFORE server_factory in a test's arguments so the
    server stops before its Redis does.

redis_private (function)
    A private redis-server on a free port: .port .url ("redis://127.0.0.1:P/0")
    .start() .stop() (same port) .ping() -> bool, .cli(*args) -> str.

run_parleyd (function)
    run_parleyd(*args, settings=None, timeout=20) -> CompletedProcess with
    .stdout .stderr (text) .returncode and .elapsed (seconds), for start-up
    failures and flags; complete valid settings (free ports, a temp var dir,
    Redis, SMTP) are provided, pg_dsn points at a closed port unless given;
    a process still running at `timeout` is killed and the test fails.

mailbox (function)
    The SMTP sink's maildir: .messages(to=None) -> list of
    email.message.EmailMessage that arrived since the fixture was created,
    .wait_for(count=1, to=None, timeout=20, predicate=None) -> list.

parleyd_bin (session), repo_root (session), wait_until (function form)
    wait_until(fn, timeout=10, interval=0.1, message=None) -> fn's first
    truthy result, or the test fails.  Also importable: `from conftest import
    wait_until, free_port`.
"""

import base64
import email
import email.policy
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid
import zlib

import pytest
import requests

import openapi_check   # every response of the HTTP helpers is checked against docs/openapi.yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_PASSWORD = "pw-secret-123"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
HTTP_TIMEOUT = 15.0

_counter = itertools.count(1)
_live_servers = []          # ParleyServer instances currently started


# --------------------------------------------------------------- helpers --

def wait_until(fn, timeout=10.0, interval=0.1, message=None):
    """Polls fn() until it returns something truthy; returns that value.
    Fails the test with `message` (and the last exception, if any) when the
    deadline passes.  Mind that a requests.Response is falsy when its
    status is 4xx/5xx: return [r] (or r.status_code == 503) instead."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - remembered for the message
            last_error = exc
        if time.monotonic() >= deadline:
            text = message or f"condition not met within {timeout} s"
            if last_error is not None:
                text += f" (last error: {last_error!r})"
            pytest.fail(text, pytrace=False)
        time.sleep(interval)


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env(name, required=True):
    value = os.environ.get(name, "")
    if required and not value:
        pytest.fail(f"{name} is not set: run the integration tests with "
                    "`bash tools/parley test` (or export the PARLEY_TEST_* "
                    "variables of `tools/parley services test`)", pytrace=False)
    return value


def _tail(path, lines=60):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


def _url_with_path(url, path):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _sanitize(name, limit):
    return re.sub(r"[^a-z0-9_]", "_", name.lower())[:limit]


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _sql_literal(value):
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (bytes, bytearray)):
        return "'\\x" + bytes(value).hex() + "'::bytea"
    if isinstance(value, (list, tuple)):
        return "ARRAY[" + ", ".join(_sql_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        value = json.dumps(value)
    return "'" + str(value).replace("'", "''") + "'"


def _bind_args(query, args):
    if not args:
        return query
    it = iter(args)

    def repl(m):
        if m.group(0) == "%%":
            return "%"
        try:
            return _sql_literal(next(it))
        except StopIteration:
            raise ValueError(f"too few arguments for query: {query}") from None

    out = re.sub(r"%%|%s", repl, query)
    if next(it, _sentinel) is not _sentinel:
        raise ValueError(f"too many arguments for query: {query}")
    return out


_sentinel = object()
_NULL = "\x02NULL\x02"


def _psql_bin():
    pg_bin = os.environ.get("PARLEY_TEST_PG_BIN", "/usr/lib/postgresql/15/bin")
    candidate = os.path.join(pg_bin, "psql")
    return candidate if os.access(candidate, os.X_OK) else (shutil.which("psql") or "psql")


def run_psql(dsn, query, *args, timeout=60):
    """Runs `query` (with %s args) through psql against dsn; rows as lists of
    str, None for NULL."""
    import csv
    import io
    sql = _bind_args(query, args)
    env = dict(os.environ, PGCONNECT_TIMEOUT="10")
    proc = subprocess.run(
        [_psql_bin(), "-X", "-q", "--csv", "-t", "-v", "ON_ERROR_STOP=1",
         "-P", f"null={_NULL}", "-d", dsn, "-c", sql],
        capture_output=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"psql failed ({proc.returncode}) on {sql!r}: "
                             f"{proc.stderr.decode('utf-8', 'replace').strip()}")
    text = proc.stdout.decode("utf-8")
    rows = []
    for row in csv.reader(io.StringIO(text)):
        rows.append([None if v == _NULL else v for v in row])
    return rows


def parleyd_path():
    path = os.environ.get("PARLEYD")
    if not path:
        build = os.environ.get("PARLEY_BUILD_DIR") or os.path.join(REPO_ROOT, "build")
        path = os.path.join(build, "parleyd")
    if not os.access(path, os.X_OK):
        pytest.fail(f"parleyd binary not found at {path} (set PARLEYD)", pytrace=False)
    return path


def _settings_key(key):
    key = key.strip()
    if key.upper().startswith("PARLEY_"):
        key = key[len("PARLEY_"):]
    return key.lower()


def _settings_env(settings):
    """The environment for a parleyd: ours minus every PARLEY_* variable
    (tools/parley exports some), plus PARLEY_<KEY> for each setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    for key, value in settings.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        env["PARLEY_" + key.upper()] = str(value)
    return env


def _var_root():
    root = os.environ.get("PARLEY_TEST_VAR_DIR") or tempfile.gettempdir()
    path = os.path.join(root, "it")
    os.makedirs(path, exist_ok=True)
    return path


def _redis_db_url(module_name):
    base = _env("PARLEY_TEST_REDIS_URL")
    return _url_with_path(base, f"/{zlib.crc32(module_name.encode()) % 16}")


# -------------------------------------------------------------- database --

class Database:
    """One PostgreSQL database of the test cluster."""

    def __init__(self, name):
        self.admin_dsn = _env("PARLEY_TEST_PG_DSN")
        self.name = name
        self.dsn = _url_with_path(self.admin_dsn, "/" + name)
        self.created = False

    def create(self):
        run_psql(self.admin_dsn, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        run_psql(self.admin_dsn, f'CREATE DATABASE "{self.name}"')
        self.created = True
        return self

    def drop(self):
        if self.created:
            run_psql(self.admin_dsn, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False

    def sql(self, query, *args):
        return run_psql(self.dsn, query, *args)

    def sql_value(self, query, *args):
        rows = self.sql(query, *args)
        return rows[0][0] if rows and rows[0] else None

    def __repr__(self):
        return f"Database({self.name!r})"


# ------------------------------------------------------------------ users --

class User:
    """A registered, logged-in user of one server."""

    def __init__(self, server, username, password, login_json, cookies):
        self.server = server
        self.username = username
        self.password = password
        self.login_response = login_json
        self.data = login_json.get("user") or {}
        self.id = self.data.get("id")
        self.token = login_json.get("access")
        self.refresh = login_json.get("refresh")
        self.cookies = cookies

    @property
    def headers(self):
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method, path, **kw):
        kw.setdefault("token", self.token)
        return self.server.request(method, path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def __repr__(self):
        return f"User({self.username!r}, id={self.id!r})"


class _BaseUrlSession(requests.Session):
    def __init__(self, base):
        super().__init__()
        self.base = base

    def request(self, method, url, *args, **kw):
        if not url.startswith(("http://", "https://")):
            url = self.base + url
        kw.setdefault("timeout", HTTP_TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return openapi_check.check_response(super().request(method, url, *args, **kw))


# ----------------------------------------------------------------- server --

class ParleyServer:
    """One parleyd process with its settings, ports, database and var dir."""

    def __init__(self, database, settings=None, redis_url=None, name="parleyd",
                 wrapper=None):
        self.database = database
        self.wrapper = list(wrapper or [])   # e.g. ["valgrind", "--error-exitcode=9"]
        self.name = _sanitize(name, 40)
        self.var_dir = tempfile.mkdtemp(prefix=f"{self.name}-{os.getpid()}-", dir=_var_root())
        self.log_path = os.path.join(self.var_dir, "parleyd.log")
        http_port, inject_port, events_port = _free_ports(3)
        base = {
            "http_host": "127.0.0.1",
            "http_port": http_port,
            "inject_endpoint": f"tcp://127.0.0.1:{inject_port}",
            "events_endpoint": f"tcp://127.0.0.1:{events_port}",
            "pg_dsn": database.dsn,
            "redis_url": redis_url or _redis_db_url(self.name),
            "smtp_url": _env("PARLEY_TEST_SMTP_URL"),
            "var_dir": self.var_dir,
            "jwt_secret": secrets.token_hex(32),
            "log_level": "info",
            "password_ops": 1,
            "password_mem_kib": 8192,
            "rate_limit_per_sec": 100000,
            "rate_limit_burst": 100000,
        }
        self._explicit = {_settings_key(k) for k in (settings or {})}
        for key, value in (settings or {}).items():
            base[_settings_key(key)] = value
        self.settings = base
        self.proc = None
        self._log_file = None
        self._log_offset = 0
        self._stopped_on_purpose = False
        self._torn_down = False
        self.exit_codes = []

    # --- settings-derived attributes
    @property
    def host(self):
        return str(self.settings.get("http_host") or "127.0.0.1")

    @property
    def port(self):
        return int(self.settings["http_port"])

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self):
        return f"ws://{self.host}:{self.port}/ws/"

    @property
    def dsn(self):
        return self.settings.get("pg_dsn")

    @property
    def redis_url(self):
        return self.settings.get("redis_url")

    @property
    def jwt_secret(self):
        return self.settings.get("jwt_secret")

    @property
    def inject_endpoint(self):
        return self.settings.get("inject_endpoint")

    @property
    def events_endpoint(self):
        return self.settings.get("events_endpoint")

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # --- process
    def _reassign_ports(self):
        http_port, inject_port, events_port = _free_ports(3)
        if "http_port" not in self._explicit:
            self.settings["http_port"] = http_port
        if "inject_endpoint" not in self._explicit:
            self.settings["inject_endpoint"] = f"tcp://127.0.0.1:{inject_port}"
        if "events_endpoint" not in self._explicit:
            self.settings["events_endpoint"] = f"tcp://127.0.0.1:{events_port}"

    def _spawn(self):
        if self.alive:
            raise RuntimeError("parleyd is already running")
        if self._log_file:
            self._log_file.close()
        self._log_file = open(self.log_path, "ab")
        self._log_offset = self._log_file.tell()
        self._log_file.write(f"==== test harness: starting parleyd at "
                             f"{time.strftime('%H:%M:%S')} ====\n".encode())
        self._log_file.flush()
        self._stopped_on_purpose = False
        self._torn_down = False
        self.proc = subprocess.Popen(
            [*self.wrapper, parleyd_path()], env=_settings_env(self.settings), cwd=self.var_dir,
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT)
        if self not in _live_servers:
            _live_servers.append(self)

    def start(self, wait=True, timeout=START_TIMEOUT, retry_ports=False):
        """Starts parleyd; with wait, until GET /readyz answers 200.  With
        retry_ports, a start that fails because a port was taken meanwhile is
        retried on fresh ports (twice)."""
        for attempt in range(3 if retry_ports else 1):
            self._spawn()
            if not wait:
                return self
            problem = self._wait_ready(timeout)
            if problem is None:
                return self
            in_use = re.search(r"in use|EADDRINUSE|cannot bind|bind", self.log_since_start(), re.I)
            if self.alive or not retry_ports or not in_use or attempt == 2:
                self._give_up(problem)
            self._reassign_ports()
        return self

    def _give_up(self, problem):
        if self.alive:
            self.proc.kill()
            self.proc.wait()
        self._stopped_on_purpose = True
        self._forget()
        pytest.fail(f"{problem}\n---- last lines of {self.log_path}:\n{self.log_tail()}",
                    pytrace=False)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.exit_codes.append(rc)
                return f"parleyd exited with status {rc} during start-up"
            try:
                r = requests.get(self.url + "/readyz", timeout=2)
                if r.status_code == 200:
                    return None
                last = f"{r.status_code} {r.text[:200]}"
            except requests.RequestException as exc:
                last = repr(exc)
            time.sleep(0.1)
        return f"parleyd not ready within {timeout} s (last /readyz: {last})"

    def wait_ready(self, timeout=START_TIMEOUT):
        problem = self._wait_ready(timeout)
        if problem:
            self._give_up(problem)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT, check=True):
        """Sends `sig`, waits up to `timeout` s and returns the exit status;
        with check, fails unless it is 0.  SIGKILL after the deadline.  A
        failure is reported once: the teardown does not report it again."""
        if self.proc is None:
            return None
        self._stopped_on_purpose = True
        hung = False
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                hung = True
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        self._forget()
        name = signal.Signals(sig).name
        if hung:
            self._torn_down = True
            pytest.fail(f"parleyd did not exit within {timeout} s of {name} (killed)\n"
                        f"---- last lines of {self.log_path}:\n{self.log_tail()}",
                        pytrace=False)
        if check and rc != 0:
            self._torn_down = True
            pytest.fail(f"parleyd exited with status {rc} after {name} (a clean "
                        f"shutdown exits 0)\n---- last lines of {self.log_path}:\n"
                        f"{self.log_tail()}", pytrace=False)
        return rc

    def kill(self):
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self._stopped_on_purpose = True
            self.proc.kill()
            self.proc.wait()
            self.exit_codes.append(self.proc.returncode)
        self._forget()

    def restart(self, kill=False, settings=None, wait=True, timeout=START_TIMEOUT):
        """Stops (SIGTERM, exit 0 asserted; or SIGKILL with kill=True) and
        starts again on the same ports, database and var dir."""
        if kill:
            self.kill()
        else:
            self.stop()
        for key, value in (settings or {}).items():
            self.settings[_settings_key(key)] = value
        return self.start(wait=wait, timeout=timeout)

    def _forget(self):
        if self in _live_servers:
            _live_servers.remove(self)

    def teardown_problem(self):
        """Stops the server for good; a description of what went wrong, or
        None.  Idempotent."""
        if self.proc is None or self._torn_down:
            return None
        self._torn_down = True
        if self.proc.poll() is not None and not self._stopped_on_purpose:
            rc = self.proc.returncode
            self._forget()
            return (f"parleyd ({self.url}) died during the tests with status {rc}\n"
                    f"---- last lines of {self.log_path}:\n{self.log_tail()}")
        try:
            self.stop()
        except pytest.fail.Exception as exc:
            return str(exc)
        finally:
            if self._log_file:
                self._log_file.close()
                self._log_file = None
        return None

    # --- logs
    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_since_start(self):
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            return f.read().decode("utf-8", "replace")

    def log_tail(self, lines=60):
        return _tail(self.log_path, lines)

    def wait_log(self, pattern, timeout=10.0):
        """Waits until the log of the current run matches `pattern`."""
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log_since_start()), timeout,
                          message=f"no log line matching {pattern!r} within {timeout} s")

    # --- HTTP
    def request(self, method, path, token=None, **kw):
        url = path if path.startswith(("http://", "https://")) else self.url + path
        headers = dict(kw.pop("headers", None) or {})
        if isinstance(token, User):
            token = token.token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kw.setdefault("timeout", HTTP_TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return openapi_check.check_response(requests.request(method, url, headers=headers, **kw))

    def get(self, path, token=None, **kw):
        return self.request("GET", path, token, **kw)

    def post(self, path, token=None, **kw):
        return self.request("POST", path, token, **kw)

    def put(self, path, token=None, **kw):
        return self.request("PUT", path, token, **kw)

    def patch(self, path, token=None, **kw):
        return self.request("PATCH", path, token, **kw)

    def delete(self, path, token=None, **kw):
        return self.request("DELETE", path, token, **kw)

    def head(self, path, token=None, **kw):
        return self.request("HEAD", path, token, **kw)

    def options(self, path, token=None, **kw):
        return self.request("OPTIONS", path, token, **kw)

    def session(self, user=None):
        s = _BaseUrlSession(self.url)
        if user is not None:
            s.headers["Authorization"] = f"Bearer {user.token if isinstance(user, User) else user}"
        return s

    # --- users and tokens
    @staticmethod
    def unique_username(prefix="u"):
        return f"{prefix}{uuid.uuid4().hex[:12]}"

    def register(self, username=None, password=DEFAULT_PASSWORD, expect=201, **fields):
        body = {"username": username or self.unique_username(), "password": password}
        body.update(fields)
        r = self.post("/api/auth/register/", json=body)
        if expect is not None:
            assert r.status_code == expect, \
                f"register {body['username']}: {r.status_code} {r.text[:500]}"
        return r.json()

    def login(self, username, password=DEFAULT_PASSWORD, expect=200):
        r = self.post("/api/auth/login/", json={"username": username, "password": password})
        if expect is not None:
            assert r.status_code == expect, f"login {username}: {r.status_code} {r.text[:500]}"
        return r.json()

    def user(self, username=None, password=DEFAULT_PASSWORD, **fields):
        username = username or self.unique_username()
        self.register(username, password, **fields)
        r = self.post("/api/auth/login/", json={"username": username, "password": password})
        assert r.status_code == 200, f"login {username}: {r.status_code} {r.text[:500]}"
        return User(self, username, password, r.json(), r.cookies.get_dict())

    def forge_token(self, sub, type="access", exp_in=900, alg="HS256", secret=None,
                    **claims):
        """A JWT with claims sub, exp (now + exp_in; None leaves it out), iat,
        jti and type (None leaves it out), signed HS256 with the server's
        secret (or `secret`); alg="none" yields an unsigned token."""
        now = int(time.time())
        payload = {"sub": str(sub), "iat": now, "jti": uuid.uuid4().hex}
        if exp_in is not None:
            payload["exp"] = now + int(exp_in)
        if type is not None:
            payload["type"] = type
        payload.update(claims)
        header = {"alg": alg, "typ": "JWT"}
        signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + _b64url(json.dumps(payload, separators=(",", ":")).encode()))
        if alg.lower() == "none":
            return signing_input + "."
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384,
                  "HS512": hashlib.sha512}[alg]
        key = (secret if secret is not None else self.jwt_secret).encode()
        signature = hmac.new(key, signing_input.encode(), digest).digest()
        return signing_input + "." + _b64url(signature)

    # --- white box
    def sql(self, query, *args):
        return run_psql(self.dsn, query, *args)

    def sql_value(self, query, *args):
        rows = self.sql(query, *args)
        return rows[0][0] if rows and rows[0] else None

    def redis(self, *args):
        proc = subprocess.run(["redis-cli", "-u", self.redis_url, "--no-raw", *map(str, args)],
                              capture_output=True, timeout=30)
        return proc.stdout.decode("utf-8", "replace").strip()

    def __repr__(self):
        return f"ParleyServer({self.url}, db={self.database.name})"


class ServerFactory:
    """Starts parleyd instances and owns their clean-up."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.servers = []
        self.databases = []

    def new_database(self):
        name = f"it_{_sanitize(self.prefix, 36)}_{os.getpid()}_{next(_counter)}"
        db = Database(name).create()
        self.databases.append(db)
        return db

    def __call__(self, settings=None, *, database=None, redis_url=None, wait=True,
                 name=None, wrapper=None):
        db = database or self.new_database()
        srv = ParleyServer(db, settings, redis_url=redis_url, name=name or self.prefix,
                           wrapper=wrapper)
        self.servers.append(srv)
        srv.start(wait=wait, retry_ports=True)
        return srv

    start = __call__

    def close(self, keep_files=False):
        problems = []
        for srv in reversed(self.servers):
            problem = srv.teardown_problem()
            if problem:
                problems.append(problem)
        keep_all = os.environ.get("PARLEY_TEST_KEEP") == "1"
        keep = keep_files or bool(problems) or keep_all
        for db in reversed(self.databases):
            if not keep_all:
                try:
                    db.drop()
                except AssertionError as exc:
                    problems.append(str(exc))
        for srv in self.servers:
            if keep:
                print(f"\n[conftest] kept {srv.var_dir} (log {srv.log_path})")
            else:
                shutil.rmtree(srv.var_dir, ignore_errors=True)
        self.servers.clear()
        self.databases.clear()
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


# ------------------------------------------------------------- fixtures --

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        item.module.__dict__.setdefault("_parley_failed", True)
        item.__dict__["_parley_failed"] = True
        for srv in list(_live_servers):
            rep.sections.append((f"parleyd {srv.url} log tail ({srv.log_path})",
                                 srv.log_tail(40)))


def _module_failed(request):
    return bool(getattr(request.module, "_parley_failed", False))


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def parleyd_bin():
    return parleyd_path()


@pytest.fixture(scope="module")
def module_server_factory(request):
    factory = ServerFactory(request.module.__name__.rsplit(".", 1)[-1])
    yield factory
    factory.close(keep_files=_module_failed(request))


@pytest.fixture
def server_factory(request):
    factory = ServerFactory(request.module.__name__.rsplit(".", 1)[-1])
    yield factory
    factory.close(keep_files=bool(request.node.__dict__.get("_parley_failed")))


@pytest.fixture(scope="module")
def server(request, module_server_factory):
    settings = dict(getattr(request.module, "PARLEY_SETTINGS", None) or {})
    settings.update(getattr(request, "param", None) or {})
    srv = module_server_factory(settings)
    yield srv
    problem = srv.teardown_problem()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="module")
def sql(server):
    return server.sql


# Three fresh, logged-in users per test (a module may override them, e.g.
# with scope="module").
@pytest.fixture
def alice(server):
    return server.user()


@pytest.fixture
def bob(server):
    return server.user()


@pytest.fixture
def carol(server):
    return server.user()


@pytest.fixture(name="wait_until")
def wait_until_fixture():
    return wait_until


class PrivateRedis:
    """A redis-server of one's own, to stop and start at will."""

    def __init__(self, directory):
        self.dir = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = os.path.join(directory, "redis.log")
        self.proc = None

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout=10.0):
        if self.proc is not None and self.proc.poll() is None:
            return self
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", self.dir],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server on port {self.port} did not start:\n"
                            f"{_tail(self.log_path, 20)}", pytrace=False)
            time.sleep(0.05)
        return self

    def stop(self, timeout=10.0):
        if self.proc is None or self.proc.poll() is not None:
            return self
        self.proc.terminate()      # SIGTERM: redis shuts down (no save configured)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self

    def cli(self, *args):
        proc = subprocess.run(["redis-cli", "-p", str(self.port), *map(str, args)],
                              capture_output=True, timeout=30)
        return proc.stdout.decode("utf-8", "replace").strip()


@pytest.fixture
def redis_private(tmp_path_factory):
    redis = PrivateRedis(str(tmp_path_factory.mktemp("redis")))
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def run_parleyd(tmp_path):
    def run(*args, settings=None, timeout=20.0):
        http_port, inject_port, events_port, pg_port = _free_ports(4)
        base = {
            "http_host": "127.0.0.1",
            "http_port": http_port,
            "inject_endpoint": f"tcp://127.0.0.1:{inject_port}",
            "events_endpoint": f"tcp://127.0.0.1:{events_port}",
            "pg_dsn": f"postgresql://parley@127.0.0.1:{pg_port}/parley",
            "redis_url": _env("PARLEY_TEST_REDIS_URL"),
            "smtp_url": _env("PARLEY_TEST_SMTP_URL"),
            "var_dir": str(tmp_path / "var"),
            "jwt_secret": secrets.token_hex(32),
            "log_level": "info",
            "password_ops": 1,
            "password_mem_kib": 8192,
        }
        for key, value in (settings or {}).items():
            base[_settings_key(key)] = value
        started = time.monotonic()
        proc = subprocess.Popen([parleyd_path(), *map(str, args)], env=_settings_env(base),
                                cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        hung = False
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            hung = True
            proc.kill()
            out, err = proc.communicate()
        if hung:
            pytest.fail(f"parleyd {' '.join(map(str, args))} still running after {timeout} s "
                        f"(killed)\nstdout:\n{out.decode('utf-8', 'replace')[-3000:]}\n"
                        f"stderr:\n{err.decode('utf-8', 'replace')[-3000:]}", pytrace=False)
        result = subprocess.CompletedProcess(proc.args, proc.returncode,
                                             out.decode("utf-8", "replace"),
                                             err.decode("utf-8", "replace"))
        result.elapsed = time.monotonic() - started
        result.settings = base
        return result
    return run


class MailSink:
    """The SMTP sink's Maildir (aiosmtpd Mailbox handler)."""

    def __init__(self, maildir):
        self.maildir = maildir
        self.seen = set(self._names())

    def _names(self):
        names = []
        for sub in ("new", "cur"):
            d = os.path.join(self.maildir, sub)
            if os.path.isdir(d):
                names += [os.path.join(d, n) for n in os.listdir(d)]
        return names

    def messages(self, to=None):
        out = []
        for path in sorted(self._names(), key=lambda p: (os.path.getmtime(p), p)):
            if path in self.seen:
                continue
            with open(path, "rb") as f:
                msg = email.message_from_binary_file(f, policy=email.policy.default)
            if to is not None:
                rcpts = " ".join(str(msg.get(h, "")) for h in ("To", "Cc", "X-RcptTo",
                                                               "X-Original-To"))
                if to.lower() not in rcpts.lower():
                    continue
            out.append(msg)
        return out

    def wait_for(self, count=1, to=None, timeout=20.0, predicate=None):
        def enough():
            found = [m for m in self.messages(to) if predicate is None or predicate(m)]
            return found if len(found) >= count else None
        return wait_until(enough, timeout,
                          message=f"fewer than {count} mail(s){' to ' + to if to else ''} "
                                  f"within {timeout} s")


@pytest.fixture
def mailbox():
    return MailSink(_env("PARLEY_TEST_MAILDIR"))
