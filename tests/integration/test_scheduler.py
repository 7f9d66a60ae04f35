"""API.md §2.8 / §2.9 — the admin API over scheduled work and the five jobs,
each run through "run now" and checked by its effect, against the real
PostgreSQL, Redis and an SMTP sink of this module's own (a private aiosmtpd,
so no other module's mail mixes in, and so it can be stopped to make SMTP
fail). Staff users are made with tools/parley-admin (create-staff)."""
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from conftest import MailSink, User, free_port, parleyd_path, wait_until
from wsclient import WSClient, run

M = "/api/messaging/"
A = "/api/admin/"
SCHEDULES = {
    "cleanup-expired-typing-indicators": 30,
    "cleanup-expired-presence": 300,
    "sync-presence-to-database": 600,
    "process-message-mentions": 900,
    "send-message-notification-emails": 900,
}
SMTP_FROM = "Parley Test <parley@example.org>"


# ------------------------------------------------------------- fixtures --

class SmtpSink:
    """A private aiosmtpd writing to a Maildir; stoppable, restartable on
    the same port."""

    def __init__(self, directory):
        self.maildir = os.path.join(directory, "maildir")
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(self.maildir, sub), exist_ok=True)
        self.log_path = os.path.join(directory, "smtp.log")
        self.port = free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.proc = None

    def _up(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(64).startswith(b"220")
        except OSError:
            return False

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}",
             "-c", "aiosmtpd.handlers.Mailbox", self.maildir],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(self._up, 15, message="the private SMTP sink did not start")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        wait_until(lambda: not self._up(), 10, message="the SMTP sink did not stop")


@pytest.fixture(scope="module")
def smtp(tmp_path_factory):
    sink = SmtpSink(str(tmp_path_factory.mktemp("smtp"))).start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def server(module_server_factory, smtp):
    srv = module_server_factory({"smtp_url": smtp.url, "smtp_from": SMTP_FROM})
    yield srv
    problem = srv.teardown_problem()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def mail(smtp):
    return MailSink(smtp.maildir)


def parley_admin(server, *args, stdin=""):
    """Runs tools/parley-admin against the server's database."""
    binary = os.path.join(os.path.dirname(parleyd_path()), "parley-admin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(PARLEY_PG_DSN=server.dsn, PARLEY_PASSWORD_OPS="1",
               PARLEY_PASSWORD_MEM_KIB="8192")
    return subprocess.run([binary, *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=60)


def make_staff(server, username=None, password="staff-secret-1"):
    username = username or server.unique_username("staff")
    proc = parley_admin(server, "create-staff", "--username", username, "--password-stdin",
                        stdin=password + "\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"created staff user {username} ("), proc.stdout
    r = server.post("/api/auth/login/", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return User(server, username, password, r.json(), r.cookies.get_dict())


@pytest.fixture(scope="module")
def staff(server):
    return make_staff(server)


def room(owner, *others, room_type="group", **body):
    body.setdefault("name", "r" + uuid.uuid4().hex[:8])
    r = owner.post(M + "rooms/", json=dict(body, room_type=room_type,
                                           participants=[o.id for o in others]))
    assert r.status_code in (200, 201), r.text
    return r.json()


def send(user, room_id, content):
    r = user.post(M + "messages/", json={"room": room_id, "content": content})
    assert r.status_code == 201, r.text
    return r.json()


def runs_of(staff, schedule, **params):
    r = staff.get(A + "task-runs/", params=dict(params, schedule=schedule, page_size=200))
    assert r.status_code == 200, r.text
    return r.json()["results"]


def run_job(staff, schedule, expect="ok", timeout=30):
    """POST run/ (202), then waits for the run to end; returns it."""
    r = staff.post(A + f"schedules/{schedule}/run/")
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["schedule"] == schedule and started["status"] == "running"
    assert started["finished_at"] is None

    def finished():
        done = [t for t in runs_of(staff, schedule) if t["id"] == started["id"]
                and t["status"] != "running"]
        return done[0] if done else None
    done = wait_until(finished, timeout, message=f"{schedule} run did not finish")
    assert done["finished_at"] is not None
    if expect:
        assert done["status"] == expect, done
    return done


def set_interval(staff, name, seconds, **fields):
    r = staff.patch(A + f"schedules/{name}/", json=dict(fields, interval_seconds=seconds))
    assert r.status_code == 200, r.text
    return r.json()


# ------------------------------------------------------------ admin API --

def test_parley_admin_creates_and_promotes_staff(server):
    user = server.user()
    assert user.get("/api/auth/me/").json()["is_staff"] is False
    proc = parley_admin(server, "create-staff", "--username", user.username)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"updated staff user {user.username} ({user.id})")
    assert user.get("/api/auth/me/").json()["is_staff"] is True
    assert server.login(user.username, user.password)["user"]["is_staff"] is True
    staff = make_staff(server)
    assert staff.get("/api/auth/me/").json()["is_staff"] is True
    # a new user needs a password, of 8 characters at least; usage errors: 2
    assert parley_admin(server, "create-staff", "--username", "nobody-" + uuid.uuid4().hex[:6]
                        ).returncode == 1
    assert parley_admin(server, "create-staff", "--username", "x" + uuid.uuid4().hex[:6],
                        "--password-stdin", stdin="short\n").returncode == 1
    assert parley_admin(server, "create-staff").returncode == 2
    assert parley_admin(server, "frobnicate", "--username", "x").returncode == 2


def test_admin_api_is_for_staff_only(server):
    user = server.user()
    calls = [("GET", A + "schedules/"), ("GET", A + "schedules/process-message-mentions/"),
             ("PATCH", A + "schedules/process-message-mentions/"),
             ("POST", A + "schedules/process-message-mentions/run/"), ("GET", A + "task-runs/")]
    for method, path in calls:
        kw = {"json": {"enabled": False}} if method == "PATCH" else {}
        r = user.request(method, path, **kw)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert "detail" in r.json()
        assert server.request(method, path, **kw).status_code == 401
    assert server.sql_value("SELECT enabled FROM schedules"
                            " WHERE name = 'process-message-mentions'") == "t"


def test_schedules_list_and_retrieve(staff):
    # each is due at once on a fresh database, so each has run
    wait_until(lambda: all(s["last_run_at"] for s in
                           staff.get(A + "schedules/").json()["results"]), 10)
    r = staff.get(A + "schedules/")
    assert r.status_code == 200
    page = r.json()
    assert page["count"] == 5 and page["next"] is None and page["previous"] is None
    got = {s["name"]: s for s in page["results"]}
    assert {n: s["interval_seconds"] for n, s in got.items()} == SCHEDULES
    for s in got.values():
        assert set(s) == {"name", "interval_seconds", "enabled", "last_run_at", "next_run_at"}
        assert s["enabled"] is True and s["next_run_at"].endswith("Z")
    assert [s["name"] for s in page["results"]] == sorted(SCHEDULES)
    assert staff.get(A + "schedules/", params={"page_size": 2}).json()["next"]
    one = staff.get(A + "schedules/cleanup-expired-presence/")
    assert one.status_code == 200 and one.json()["name"] == "cleanup-expired-presence"
    assert staff.get(A + "schedules/no-such-task/").status_code == 404
    assert staff.post(A + "schedules/no-such-task/run/").status_code == 404
    assert staff.patch(A + "schedules/no-such-task/", json={"enabled": False}).status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"interval_seconds": 0}, "interval_seconds"),
    ({"interval_seconds": -5}, "interval_seconds"),
    ({"interval_seconds": "60"}, "interval_seconds"),
    ({"interval_seconds": 1.5}, "interval_seconds"),
    ({"enabled": "no"}, "enabled"),
])
def test_bad_schedule_updates_are_400(staff, body, field):
    before = staff.get(A + "schedules/sync-presence-to-database/").json()
    r = staff.patch(A + "schedules/sync-presence-to-database/", json=body)
    assert r.status_code == 400 and field in r.json(), r.text
    assert staff.get(A + "schedules/sync-presence-to-database/").json() == before


def test_patched_interval_and_enabled_take_effect_without_restart(staff):
    name = "cleanup-expired-typing-indicators"
    try:
        got = set_interval(staff, name, 1)
        assert got["interval_seconds"] == 1
        seen = len(runs_of(staff, name))
        wait_until(lambda: len(runs_of(staff, name)) >= seen + 3, 10,
                   message="a 1 s interval did not make runs every second")
        runs = [t for t in runs_of(staff, name) if t["status"] != "running"][:3]
        assert all(t["status"] == "ok" for t in runs), runs
        r = staff.patch(A + f"schedules/{name}/", json={"enabled": False})
        assert r.status_code == 200 and r.json()["enabled"] is False
        time.sleep(1.0)     # a run claimed just before the PATCH may still start
        seen = len(runs_of(staff, name))
        time.sleep(2.5)
        assert len(runs_of(staff, name)) == seen, "a disabled schedule kept running"
        # run now still works on a disabled schedule
        run_job(staff, name)
    finally:
        set_interval(staff, name, 30, enabled=True)


def test_run_now_answers_202_and_the_history_is_newest_first(staff):
    name = "process-message-mentions"
    first = run_job(staff, name)
    second = run_job(staff, name)
    assert set(second) == {"id", "schedule", "started_at", "finished_at", "status", "items",
                           "error"}
    assert second["error"] is None and second["items"] >= 0
    history = runs_of(staff, name)
    assert [t["id"] for t in history[:2]] == [second["id"], first["id"]]
    assert all(t["schedule"] == name for t in history)
    everything = staff.get(A + "task-runs/", params={"page_size": 200}).json()
    assert everything["count"] >= len(history)
    assert {t["schedule"] for t in everything["results"]} >= {name}
    assert runs_of(staff, name, status="ok")[0]["id"] == second["id"]
    assert staff.get(A + "task-runs/", params={"status": "bogus"}).status_code == 400
    assert runs_of(staff, "no-such-task") == []
    last = staff.get(A + f"schedules/{name}/").json()["last_run_at"]
    assert last >= second["started_at"][:19]


def test_two_nodes_never_run_one_slot_twice(server, staff, server_factory):
    other = server_factory({"smtp_url": server.settings["smtp_url"]},
                           database=server.database)
    name = "cleanup-expired-typing-indicators"
    try:
        set_interval(staff, name, 1)
        time.sleep(5)
    finally:
        set_interval(staff, name, 30)
    rows = server.sql("SELECT extract(epoch FROM started_at), claimed_by FROM task_runs"
                      " WHERE schedule = %s AND started_at > now() - interval '5 seconds'"
                      " AND claimed_by IS NOT NULL ORDER BY started_at", name)
    starts = [float(r[0]) for r in rows]
    assert len(starts) >= 3, rows
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) > 0.8, f"two runs of one slot: {rows}"
    assert other.alive


# ------------------------------------------------------------ the jobs --

def test_typing_job_sweeps_entries_that_expired_without_an_event(server, staff):
    name = "cleanup-expired-typing-indicators"
    owner, typer, live = server.user(), server.user(), server.user()
    rid = room(owner, typer, live)["id"]

    async def go():
        async with await WSClient.connect(server, owner) as ws:
            past = int(time.time() * 1000) - 60000
            future = int(time.time() * 1000) + 60000
            # a node died while `typer` was typing: its entry stayed, its
            # key expired, nobody said typing stopped
            server.redis("ZADD", "typing:active", past, f"{rid}:{typer.id}")
            # an entry whose deadline is ahead is left alone
            server.redis("SET", f"typing:{rid}:{live.id}", 1, "EX", 60)
            server.redis("ZADD", "typing:active", future, f"{rid}:{live.id}")
            done = run_job(staff, name)
            e = await ws.wait_for(lambda e: e.get("type") == "typing" and e.get("room") == rid,
                                  what="typing false")
            assert e["user"] == typer.id and e["is_typing"] is False
            await ws.expect_none(lambda e: e.get("type") == "typing"
                                 and e.get("user") == live.id, 0.5)
            return done
    # only the run asked for sweeps meanwhile
    staff.patch(A + f"schedules/{name}/", json={"enabled": False})
    try:
        done = run(go())
    finally:
        staff.patch(A + f"schedules/{name}/", json={"enabled": True})
        server.redis("ZREM", "typing:active", f"{rid}:{live.id}")
    assert done["items"] >= 1
    assert server.redis("ZSCORE", "typing:active", f"{rid}:{typer.id}") in ("", "(nil)")


def test_typing_start_and_stop_keep_the_sweep_set(server):
    owner, other = server.user(), server.user()
    rid = room(owner, other)["id"]
    member = f"{rid}:{owner.id}"

    async def go():
        async with await WSClient.connect(server, owner) as ws:
            await ws.send({"type": "typing.start", "room": rid})
            wait_until(lambda: server.redis("ZSCORE", "typing:active", member)
                       not in ("", "(nil)"), 5)
            await ws.send({"type": "typing.stop", "room": rid})
            wait_until(lambda: server.redis("ZSCORE", "typing:active", member)
                       in ("", "(nil)"), 5)
    run(go())


def test_presence_job_takes_users_of_a_dead_node_offline(server, staff):
    watcher, lost, alive = server.user(), server.user(), server.user()
    room(watcher, lost, alive)

    async def go():
        async with await WSClient.connect(server, watcher) as ws, \
                await WSClient.connect(server, alive):
            # `lost` was connected to a node that died an hour ago: no live key
            server.sql("UPDATE presence SET status = 'online', online_since = now()"
                       " - interval '1 hour', total_online_time = 100 WHERE user_id = %s",
                       lost.id)
            wait_until(lambda: server.redis("EXISTS", f"presence:live:{alive.id}")
                       .endswith("1"), 10, message="no live key for a connected user")
            wait_until(lambda: server.sql_value("SELECT online_since FROM presence"
                                                " WHERE user_id = %s", alive.id), 10)
            # connected for long: still live, so it must stay online
            server.sql("UPDATE presence SET online_since = now() - interval '1 hour'"
                       " WHERE user_id = %s", alive.id)
            done = run_job(staff, "cleanup-expired-presence")
            e = await ws.wait_for(lambda e: e.get("type") == "presence"
                                  and e["presence"]["user"] == lost.id,
                                  what="the presence event of the lost user")
            assert e["presence"]["status"] == "offline" and e["presence"]["is_online"] is False
            assert e["presence"]["last_seen"] is not None
            assert e["presence"]["total_online_time"] >= 100 + 3600
            await ws.expect_none(lambda e: e.get("type") == "presence"
                                 and e["presence"]["user"] == alive.id
                                 and e["presence"]["status"] == "offline", 0.5)
            return done
    done = run(go())
    assert done["items"] >= 1
    row = server.sql("SELECT status, online_since, total_online_time FROM presence"
                     " WHERE user_id = %s", lost.id)[0]
    assert row[0] == "offline" and row[1] is None and int(row[2]) >= 3700
    assert server.sql_value("SELECT last_seen IS NOT NULL FROM users WHERE id = %s",
                            lost.id) == "t"
    assert watcher.get(M + "presence/", params={"user": lost.id}).json()["results"][0][
        "status"] == "offline"
    # a second run finds nothing more to do for them
    assert server.sql_value("SELECT status FROM presence WHERE user_id = %s", alive.id) \
        == "online"


def test_sync_job_copies_live_presence_into_the_table(server, staff):
    user = server.user()

    async def go():
        async with await WSClient.connect(server, user):
            wait_until(lambda: server.redis("EXISTS", f"presence:live:{user.id}")
                       .endswith("1"), 10)
            wait_until(lambda: server.sql_value("SELECT status FROM presence"
                                                " WHERE user_id = %s", user.id) == "online", 10)
            # a lost write: the table says offline although the user is live
            server.sql("UPDATE presence SET status = 'offline', online_since = NULL"
                       " WHERE user_id = %s", user.id)
            server.sql("UPDATE users SET last_seen = NULL WHERE id = %s", user.id)
            done = run_job(staff, "sync-presence-to-database")
            assert done["items"] >= 1
            row = server.sql("SELECT p.status, p.online_since IS NOT NULL,"
                             " u.last_seen IS NOT NULL FROM presence p JOIN users u"
                             " ON u.id = p.user_id WHERE p.user_id = %s", user.id)[0]
            assert row == ["online", "t", "t"]
    run(go())


def test_mentions_job_processes_each_mention_exactly_once(server, staff):
    alice, bob, carol = server.user(), server.user(), server.user()
    rid = room(alice, bob, carol)["id"]
    msg = send(alice, rid, f"hi @{bob.username}")

    def mentions(user):
        return server.sql_value("SELECT count(*) FROM notifications WHERE user_id = %s"
                                " AND message_id = %s AND kind = 'mention'", user.id, msg["id"])
    assert mentions(bob) == "1"
    # unprocessed with its notification made: the job adds none
    server.sql("UPDATE messages SET mentions_processed_at = NULL WHERE id = %s", msg["id"])
    assert run_job(staff, "process-message-mentions")["items"] >= 1
    assert mentions(bob) == "1"
    assert server.sql_value("SELECT mentions_processed_at IS NOT NULL FROM messages"
                            " WHERE id = %s", msg["id"]) == "t"
    # unprocessed without: the job makes it once, with its event
    server.sql("DELETE FROM notifications WHERE message_id = %s", msg["id"])
    server.sql("UPDATE messages SET mentions_processed_at = NULL WHERE id = %s", msg["id"])

    async def go():
        async with await WSClient.connect(server, bob) as ws:
            run_job(staff, "process-message-mentions")
            e = await ws.wait_for(lambda e: e.get("type") == "notification")
            assert e["notification"]["message"] == msg["id"]
            assert e["notification"]["kind"] == "mention"
            run_job(staff, "process-message-mentions")
            await ws.expect_none(lambda e: e.get("type") == "notification", 0.5)
    run(go())
    assert mentions(bob) == "1"
    # an edit that adds a mention is caught by the job, once
    r = alice.patch(M + f"messages/{msg['id']}/",
                    json={"content": f"hi @{bob.username} and @{carol.username}"})
    assert r.status_code == 200, r.text
    run_job(staff, "process-message-mentions")
    run_job(staff, "process-message-mentions")
    assert mentions(carol) == "1" and mentions(bob) == "1"


def test_email_job_mails_each_user_their_unread_messages_once(server, staff, mail):
    alice = server.user(display_name="Alice A.")
    bob = server.user(email=f"bob-{uuid.uuid4().hex[:6]}@example.com")
    quiet = server.user(email=f"quiet-{uuid.uuid4().hex[:6]}@example.com")
    muter = server.user(email=f"muter-{uuid.uuid4().hex[:6]}@example.com")
    patient = server.user(email=f"patient-{uuid.uuid4().hex[:6]}@example.com")
    reader = server.user(email=f"reader-{uuid.uuid4().hex[:6]}@example.com")
    group = room(alice, bob, quiet, muter, patient, reader, name="Garden club")
    direct = room(alice, bob, room_type="direct")
    for user in (bob, quiet, muter, reader):
        assert user.patch(M + "notification-settings/me/",
                          json={"email_delay_minutes": 0}).status_code == 200
    quiet.patch(M + "notification-settings/me/", json={"email_enabled": False})
    muter.patch(M + "notification-settings/me/", json={"muted_rooms": [group["id"]]})
    first = send(alice, group["id"], "the roses are in bloom")
    send(alice, group["id"], f"@{bob.username} héllo ☃ are you coming?")
    last = send(alice, direct["id"], "see you at noon")
    r = reader.post(M + f"rooms/{group['id']}/mark_read/", json={"message": first["id"]})
    assert r.status_code == 200, r.text

    done = run_job(staff, "send-message-notification-emails")
    got = mail.wait_for(1, to=bob.data["email"])
    assert len(got) == 1
    m = got[0]
    assert m["To"] == bob.data["email"]
    assert "parley@example.org" in m["From"]
    assert m["Date"] and m["Message-ID"] and m["Subject"]
    assert "3 unread messages" in m["Subject"]
    assert m.get_content_type() == "text/plain" and m.get_content_charset() == "utf-8"
    body = m.get_content()
    assert "Garden club" in body and "Direct messages with Alice A." in body
    assert "Alice A.: the roses are in bloom" in body
    assert "héllo ☃ are you coming?" in body and "see you at noon" in body
    # the reader read everything but one message: only that one
    reads = mail.wait_for(1, to=reader.data["email"])
    assert "1 unread message in Garden club" in reads[0]["Subject"]
    assert "the roses" not in reads[0].get_content()
    assert done["items"] >= 2
    # nothing for email_enabled false, a muted room, or a delay not yet past
    for user in (quiet, muter, patient):
        assert mail.messages(to=user.data["email"]) == []
    # the notifications of the mailed messages (the mention, the direct
    # message) record their email
    assert server.sql_value("SELECT count(*) FROM notifications WHERE user_id = %s"
                            " AND emailed_at IS NOT NULL", bob.id) == "2"
    n = bob.get(M + "notifications/", params={"kind": "mention"}).json()["results"][0]
    assert n["emailed_at"] is not None
    # never twice for the same messages
    before = len(mail.messages())
    second = run_job(staff, "send-message-notification-emails")
    time.sleep(0.5)
    assert len(mail.messages()) == before and second["items"] == 0
    # a new message is mailed on its own
    send(alice, direct["id"], "one more thing")
    run_job(staff, "send-message-notification-emails")
    again = mail.wait_for(2, to=bob.data["email"])
    assert "1 unread message in Direct messages with Alice A." in again[-1]["Subject"]
    assert "one more thing" in again[-1].get_content()
    assert "roses" not in again[-1].get_content()


def test_a_failing_smtp_server_is_recorded_and_retried(server, staff, smtp, mail):
    alice = server.user()
    bob = server.user(email=f"retry-{uuid.uuid4().hex[:6]}@example.com")
    rid = room(alice, bob)["id"]
    bob.patch(M + "notification-settings/me/", json={"email_delay_minutes": 0})
    send(alice, rid, f"@{bob.username} are you there?")
    smtp.stop()
    try:
        failed = run_job(staff, "send-message-notification-emails", expect="error", timeout=60)
        assert failed["error"] and "SMTP" in failed["error"]
        assert server.sql_value("SELECT count(*) FROM email_cursors WHERE user_id = %s",
                                bob.id) == "0"
        assert server.sql_value("SELECT count(*) FROM notifications WHERE user_id = %s"
                                " AND emailed_at IS NOT NULL", bob.id) == "0"
        assert server.get("/healthz").status_code == 200
    finally:
        smtp.start()
    ok = run_job(staff, "send-message-notification-emails")
    assert ok["items"] >= 1
    got = mail.wait_for(1, to=bob.data["email"])
    assert "are you there?" in got[0].get_content()
    assert server.sql_value("SELECT count(*) FROM notifications WHERE user_id = %s"
                            " AND emailed_at IS NOT NULL", bob.id) == "1"
