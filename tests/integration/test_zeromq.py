"""The ZeroMQ side door (API.md §4) and the bundled tools (§5), end to end.

Inject commands go through the same operations as REST (validation,
permissions, idempotency) and their effects reach REST and WebSocket
clients; malformed envelopes get error replies and the socket keeps
serving; the events PUB publishes every event as [topic, envelope] — read
here both with pyzmq and with the real tools/parley-tail binary; CURVE
refuses unknown client keys; an ai-room conversation with the real
tools/parley-assistant streams deltas, then the final message.
"""

import json
import os
import queue
import select
import subprocess
import threading
import time
import uuid

import msgpack
import pytest
import zmq

from wsclient import WSClient, run

ROOMS = "/api/messaging/rooms/"
MESSAGES = "/api/messaging/messages/"
NOTIFICATIONS = "/api/messaging/notifications/"

BUILD_DIR = os.environ.get("PARLEY_BUILD_DIR") or os.path.join(
    os.path.dirname(os.environ.get("PARLEYD", "../../build/parleyd")))


def tool(name):
    path = os.path.join(BUILD_DIR, name)
    if not os.path.exists(path):
        pytest.fail(f"{path} is not built (PARLEY_BUILD_DIR={BUILD_DIR})")
    return path


# ------------------------------------------------------------------ helpers --

def envelope(type_, body, user=None, room=None, id_=None, **extra):
    env = {"v": 1, "type": type_, "id": id_ or str(uuid.uuid4()),
           "ts": int(time.time() * 1000), "body": body}
    if user:
        env["user"] = user
    if room:
        env["room"] = room
    env.update(extra)
    return env


class Inject:
    """A DEALER (or REQ) client of the inject socket."""

    def __init__(self, endpoint, kind=zmq.DEALER, curve=None):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(kind)
        self.sock.linger = 0
        if curve:
            server_public, public, secret = curve
            self.sock.curve_serverkey = server_public
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
        self.sock.connect(endpoint)

    def send_raw(self, data):
        self.sock.send(data)

    def send(self, env):
        self.send_raw(msgpack.packb(env))

    def recv(self, timeout=10.0):
        if not self.sock.poll(int(timeout * 1000)):
            return None
        reply = msgpack.unpackb(self.sock.recv(), raw=False)
        assert reply["v"] == 1 and reply["type"] == "reply"
        assert isinstance(reply["ts"], int) and reply["id"]
        return reply

    def call(self, env, timeout=10.0):
        self.send(env)
        reply = self.recv(timeout)
        assert reply is not None, f"no reply to {env['type']} within {timeout}s"
        assert reply.get("re") == env["id"], reply
        return reply["body"]

    def close(self):
        self.sock.close()


class Events:
    """A SUB client of the events socket."""

    def __init__(self, endpoint, *topics, curve=None):
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.linger = 0
        if curve:
            server_public, public, secret = curve
            self.sock.curve_serverkey = server_public
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
        for t in topics or ("",):
            self.sock.setsockopt_string(zmq.SUBSCRIBE, t)
        self.sock.connect(endpoint)
        self.got = []

    def pump(self, timeout=0.0):
        deadline = time.time() + timeout
        while True:
            left = max(0, deadline - time.time())
            if not self.sock.poll(int(left * 1000)):
                return
            topic, data = self.sock.recv_multipart()
            self.got.append((topic.decode(), msgpack.unpackb(data, raw=False)))
            timeout = 0
            deadline = time.time()

    def wait_for(self, predicate, timeout=10.0):
        deadline = time.time() + timeout
        while True:
            for topic, env in self.got:
                if predicate(topic, env):
                    return topic, env
            left = deadline - time.time()
            assert left > 0, f"no matching event; got {[(t, e['type']) for t, e in self.got][-10:]}"
            self.pump(min(left, 0.2))

    def close(self):
        self.sock.close()


def settle_subscription(server, events, user):
    """PUB/SUB subscriptions propagate asynchronously: inject presence.set
    until one of its events arrives on user.<id>, so nothing later is missed."""
    inject = Inject(server.inject_endpoint)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            inject.call(envelope("presence.set", {"status": "online"}, user=user.id))
            events.pump(0.2)
            if any(t == f"user.{user.id}" for t, _ in events.got):
                events.got.clear()
                return
        pytest.fail("the event subscription never became effective")
    finally:
        inject.close()


def group(owner, *others, **body):
    body.setdefault("name", "zmq-" + uuid.uuid4().hex[:8])
    body.setdefault("room_type", "group")
    r = owner.post(ROOMS, json={"participants": [o.id for o in others], **body})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def last_seq(server, room):
    return int(server.sql_value("SELECT last_seq FROM rooms WHERE id = %s", room))


@pytest.fixture
def inject(server):
    client = Inject(server.inject_endpoint)
    yield client
    client.close()


# ------------------------------------------------------------------- inject --

def test_inject_as_a_user_reaches_rest_and_websocket_with_the_right_seq(server, alice, bob, inject):
    room = group(alice, bob)
    start = last_seq(server, room)

    async def go():
        b = await WSClient.connect(server, bob)
        reply = inject.call(envelope("message.send", {"content": "from a service"},
                                     user=alice.id, room=room))
        assert reply["ok"] is True and reply.get("code") is None, reply
        mid = reply["id"]
        e = await b.wait_for(lambda e: e.get("type") == "message.new"
                             and e["message"]["id"] == mid)
        assert e["seq"] == start + 1 and e["room"] == room
        assert e["message"]["sender"] == alice.id
        assert e["message"]["content"] == "from a service"
        await b.close()
        return mid

    mid = run(go())
    r = bob.get(f"{MESSAGES}{mid}/")
    assert r.status_code == 200, r.text
    assert r.json()["seq"] == start + 1 and r.json()["sender"] == alice.id
    # the next REST message follows it, gapless
    r = bob.post(MESSAGES, json={"room": room, "content": "after"})
    assert r.json()["seq"] == start + 2


def test_inject_keeps_rest_rules(server, alice, bob, inject):
    room = group(alice)                                   # bob is not in it
    outsider = inject.call(envelope("message.send", {"content": "x"}, user=bob.id, room=room))
    assert outsider == {"ok": False, "id": None, "code": "not_found", "detail": "Not found."}
    empty = inject.call(envelope("message.send", {"content": "   "}, user=alice.id, room=room))
    assert empty["ok"] is False and empty["code"] == "invalid"
    assert empty["detail"].startswith("content: ") and "content" in empty["errors"]
    nobody = inject.call(envelope("message.send", {"content": "x"}, user=str(uuid.uuid4()),
                                  room=room))
    assert nobody["ok"] is False and nobody["code"] == "not_found"
    no_user = inject.call(envelope("message.send", {"content": "x"}, room=room))
    assert no_user["ok"] is False and no_user["code"] == "missing"
    assert no_user["detail"].startswith("user")
    no_room = inject.call(envelope("message.send", {"content": "x"}, user=alice.id))
    assert no_room["ok"] is False and no_room["detail"].startswith("room")
    bad_user = inject.call(envelope("message.send", {"content": "x"}, user="alice", room=room))
    assert bad_user["ok"] is False and bad_user["code"] == "wrong_type"
    # idempotency: the same client_id answers the first message
    first = inject.call(envelope("message.send", {"content": "once", "client_id": "k-1"},
                                 user=alice.id, room=room))
    again = inject.call(envelope("message.send", {"content": "twice", "client_id": "k-1"},
                                 user=alice.id, room=room))
    assert first["ok"] and again == first
    assert server.sql_value("SELECT count(*) FROM messages WHERE client_id = 'k-1'") == "1"
    assert server.sql_value("SELECT count(*) FROM messages WHERE room_id = %s", room) == "1"


def test_system_messages_need_admin_over_rest_but_not_over_inject(server, alice, bob, inject):
    room = group(alice, bob)
    r = bob.post(MESSAGES, json={"room": room, "content": "sys", "message_type": "system"})
    assert r.status_code == 403
    reply = inject.call(envelope("message.send", {"content": "deploy at 5",
                                                   "message_type": "system"},
                                 user=bob.id, room=room))
    assert reply["ok"], reply
    m = alice.get(f"{MESSAGES}{reply['id']}/").json()
    assert m["message_type"] == "system" and m["sender"] == bob.id
    # stream_id is the inject's: REST ignores it
    r = alice.post(MESSAGES, json={"room": room, "content": "x", "stream_id": "s-rest"})
    assert r.status_code == 201 and r.json()["stream_id"] is None


def test_req_clients_and_every_command(server, alice, bob):
    req = Inject(server.inject_endpoint, kind=zmq.REQ)
    try:
        made = req.call(envelope("room.create", {"name": "svc", "room_type": "group",
                                                 "participants": [bob.id]}, user=alice.id))
        assert made["ok"], made
        room = alice.get(f"{ROOMS}{made['id']}/").json()
        assert room["participants"] == [alice.id, bob.id] and room["created_by"] == alice.id
        bad = req.call(envelope("room.create", {"room_type": "nope"}, user=alice.id))
        assert bad["ok"] is False and bad["code"] == "invalid"
        assert bad["detail"].startswith("room_type")

        p = req.call(envelope("presence.set", {"status": "busy", "custom_status": "deploying"},
                              user=alice.id))
        assert p == {"ok": True, "id": None}
        me = alice.get("/api/messaging/presence/me/").json()
        assert me["custom_status"] == "deploying"
        bad = req.call(envelope("presence.set", {"status": "sleepy"}, user=alice.id))
        assert bad["ok"] is False and bad["code"] == "invalid"

        n = req.call(envelope("notify", {"title": "Backup", "text": "done", "room": made["id"]},
                              user=bob.id))
        assert n["ok"], n
        row = server.sql("SELECT user_id, kind, title, text, room_id FROM notifications"
                         " WHERE id = %s", n["id"])
        assert row == [[bob.id, "system", "Backup", "done", made["id"]]]
        hidden = group(alice)
        bad = req.call(envelope("notify", {"title": "x", "text": "y", "room": hidden},
                                user=bob.id))
        assert bad["ok"] is False and bad["code"] == "not_found"
        bad = req.call(envelope("notify", {"title": "", "text": "y"}, user=bob.id))
        assert bad["ok"] is False and bad["code"] == "invalid"

        # message.delta is for ai rooms only
        bad = req.call(envelope("message.delta", {"stream_id": "s", "seq_in_stream": 0,
                                                  "text": "x"}, user=alice.id, room=made["id"]))
        assert bad["ok"] is False and bad["code"] == "invalid" and "ai" in bad["detail"]
    finally:
        req.close()


MALFORMED = [
    b"",
    b"\xc1",
    b"not msgpack at all",
    msgpack.packb([1, 2, 3]),
    msgpack.packb({"v": 1}),
    msgpack.packb({"v": 2, "type": "message.send", "id": "m-v2", "ts": 1, "body": {}}),
    msgpack.packb({"v": 1, "type": "nope", "id": "m-unknown", "ts": 1, "body": {}}),
    msgpack.packb({"v": 1, "type": "message.send", "id": "m-nobody", "ts": 1}),
    msgpack.packb({"v": 1, "type": "message.send", "id": "m-badts", "ts": "now", "body": {}}),
    msgpack.packb({"v": 1, "type": "message.send", "id": "m-types", "ts": 1,
                   "body": {"content": 5}}),
    msgpack.packb({"v": 1, "type": "message.delta", "id": "m-missing", "ts": 1,
                   "body": {"stream_id": "s"}}),
    msgpack.packb({"v": 1, "type": "message.send", "id": "x" * 65, "ts": 1, "body": {}}),
    msgpack.packb({"v": 1, "type": "message.send", "id": "m-bin", "ts": 1,
                   "body": {"content": b"\x00\xff"}}, use_bin_type=True),
    msgpack.packb({"v": 1, "type": "message.send", "id": "m-utf8", "ts": 1,
                   "body": {"content": b"\xff\xfe"}}, use_bin_type=False),
    msgpack.packb({"v": 1, "type": "http.request", "id": "m-internal", "ts": 1,
                   "body": {"op": "auth.me", "method": "GET", "path": "/"}}),
    msgpack.packb({"v": 1, "type": "reply", "id": "m-reply", "ts": 1, "body": {"ok": True}}),
    msgpack.packb({"v": 1, "type": "message.send", "id": "m-trailing", "ts": 1,
                   "body": {}}) + b"\x00",
    b"\x81" + b"\xa1a" * 3,
    b"\xdf\xff\xff\xff\xff",                    # a map of 4 G entries, 5 bytes
    msgpack.packb({"v": 1, "type": "message.send", "id": "m-deep", "ts": 1,
                   "body": {"content": "x", "location": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}),
]


def readable_id(data):
    """The id a reader can find in the first msgpack value of `data`, or ""."""
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
    unpacker.feed(data)
    try:
        obj = next(unpacker)
        value = obj.get(b"id") if isinstance(obj, dict) else None
        return value.decode() if isinstance(value, bytes) and len(value) <= 64 else ""
    except Exception:
        return ""


def test_malformed_envelopes_get_errors_and_the_socket_keeps_serving(server, alice, inject):
    room = group(alice)
    for data in MALFORMED:
        inject.send_raw(data)
        reply = inject.recv()
        assert reply is not None, f"no reply to {data[:40]!r}"
        body = reply["body"]
        assert body["ok"] is False and body["id"] is None, (data[:40], body)
        assert body["code"] in ("malformed", "truncated", "too_large", "too_deep", "version",
                                "unknown_type", "missing", "wrong_type", "too_long",
                                "bad_utf8"), body
        assert body["detail"]
        # the id comes back when it could be read
        assert reply.get("re", "") == readable_id(data), (data[:40], reply)
    codes = {}
    for data, want in [(MALFORMED[5], "version"), (MALFORMED[6], "unknown_type"),
                       (MALFORMED[14], "unknown_type"), (MALFORMED[9], "wrong_type"),
                       (MALFORMED[10], "missing"), (MALFORMED[13], "bad_utf8")]:
        inject.send_raw(data)
        codes[want] = inject.recv()["body"]["code"]
    assert all(k == v for k, v in codes.items()), codes
    # over 2 MiB: too_large, id read
    big = msgpack.packb({"v": 1, "type": "message.send", "id": "m-big", "ts": 1,
                         "body": {"content": "x" * (2 * 1024 * 1024 + 100)}})
    inject.send_raw(big)
    reply = inject.recv()
    assert reply["re"] == "m-big" and reply["body"]["code"] == "too_large"
    # two frames in one message: an error too
    inject.sock.send_multipart([b"a", b"b"])
    assert inject.recv()["body"]["code"] == "malformed"
    # still serving, over the same connection and a new one
    ok = inject.call(envelope("message.send", {"content": "still here"}, user=alice.id, room=room))
    assert ok["ok"], ok
    other = Inject(server.inject_endpoint)
    assert other.call(envelope("message.send", {"content": "and here"}, user=alice.id,
                               room=room))["ok"]
    other.close()
    assert server.alive
    assert server.get("/healthz").status_code == 200


# ------------------------------------------------------------------- events --

def settle(server, events, user):
    """PUB/SUB subscriptions take effect asynchronously: notify `user` until
    the notification arrives on user.<id> (the socket's other subscriptions,
    sent before, are then in effect too); then forget what came."""
    probe = Inject(server.inject_endpoint)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            assert probe.call(envelope("notify", {"title": "settle", "text": ""},
                                       user=user.id))["ok"]
            events.pump(0.2)
            if any(t == f"user.{user.id}" for t, _ in events.got):
                events.pump(0.2)
                events.got.clear()
                return
        pytest.fail("the event subscription never became effective")
    finally:
        probe.close()


def check_envelope(topic, env):
    assert env["v"] == 1 and isinstance(env["ts"], int) and env["id"]
    assert env["ts"] > 1_600_000_000_000
    body = env["body"]
    assert isinstance(body, dict) and body["type"] == env["type"], env
    if topic.startswith("room.") or topic.startswith("ai."):
        assert env["room"] == topic.split(".", 1)[1]
        assert body.get("room") == env["room"]
    if topic.startswith("user.") or topic.startswith("push."):
        assert env["user"] == topic.split(".", 1)[1]


def test_events_are_published_on_room_user_and_push_topics(server, alice, bob):
    room = group(alice, bob)
    events = Events(server.events_endpoint, f"room.{room}", f"user.{alice.id}",
                    f"user.{bob.id}", f"push.{bob.id}")
    settle(server, events, bob)
    try:
        r = alice.post(MESSAGES, json={"room": room, "content": "hello @" + bob.username})
        msg = r.json()
        t, new = events.wait_for(lambda t, e: e["type"] == "message.new")
        assert t == f"room.{room}"
        check_envelope(t, new)
        assert new["body"]["message"] == msg and new["body"]["seq"] == msg["seq"]
        assert isinstance(new["body"]["ts"], str)           # the §3 event object itself

        r = bob.post("/api/messaging/reactions/", json={"message": msg["id"], "emoji": "👍"})
        assert r.status_code == 201, r.text
        t, added = events.wait_for(lambda t, e: e["type"] == "reaction.added")
        check_envelope(t, added)
        assert added["body"]["reaction"]["emoji"] == "👍"
        assert added["body"]["seq"] == msg["seq"] + 1

        r = bob.post(f"{ROOMS}{room}/mark_read/", json={"message": msg["id"]})
        assert r.status_code == 200, r.text
        for who in (alice, bob):
            t, receipt = events.wait_for(lambda t, e, w=who: e["type"] == "read.receipt"
                                         and t == f"user.{w.id}")
            check_envelope(t, receipt)
            assert receipt["body"]["message"] == msg["id"] and receipt["body"]["user"] == bob.id

        reply = Inject(server.inject_endpoint)
        n = reply.call(envelope("notify", {"title": "Build", "text": "green"}, user=bob.id))
        reply.close()
        t, note = events.wait_for(lambda t, e: e["type"] == "notification"
                                  and e["body"]["notification"]["id"] == n["id"])
        assert t == f"user.{bob.id}"
        check_envelope(t, note)
        assert note["body"]["notification"]["kind"] == "system"
        t, push = events.wait_for(lambda t, e: e["type"] == "push"
                                  and e["body"]["notification"]["id"] == n["id"])
        assert t == f"push.{bob.id}" and push["user"] == bob.id
        assert push["body"]["title"] == "Build" and push["body"]["text"] == "green"

        # presence, as each co-member sees it, on their user topic
        reply = Inject(server.inject_endpoint)
        assert reply.call(envelope("presence.set", {"status": "away"}, user=alice.id))["ok"]
        reply.close()
        t, seen = events.wait_for(lambda t, e: e["type"] == "presence"
                                  and t == f"user.{bob.id}")
        check_envelope(t, seen)
        assert seen["body"]["presence"]["user"] == alice.id
        assert seen["body"]["presence"]["status"] == "away"

        r = alice.patch(f"{MESSAGES}{msg['id']}/", json={"content": "edited"})
        assert r.status_code == 200, r.text
        t, upd = events.wait_for(lambda t, e: e["type"] == "message.updated")
        assert upd["body"]["message"]["content"] == "edited"

        # typing is published on the room's topic too
        async def typing():
            a = await WSClient.connect(server, alice)
            await a.send({"type": "typing.start", "room": room})
            await a.close()
        run(typing())
        t, typed = events.wait_for(lambda t, e: e["type"] == "typing")
        assert t == f"room.{room}" and typed["body"]["user"] == alice.id

        # room events of the room, in seq order, without gaps
        seqs = [e["body"]["seq"] for t, e in events.got if t == f"room.{room}"
                and "seq" in e["body"]]
        assert seqs == list(range(msg["seq"], msg["seq"] + len(seqs))), seqs
    finally:
        events.close()


def test_no_push_when_push_is_disabled(server, alice):
    r = alice.patch("/api/messaging/notification-settings/me/", json={"push_enabled": False})
    if r.status_code == 404:
        server.sql("UPDATE notification_settings SET push_enabled = false WHERE user_id = %s",
                   alice.id)
    events = Events(server.events_endpoint, f"user.{alice.id}", f"push.{alice.id}")
    settle(server, events, alice)
    try:
        inject = Inject(server.inject_endpoint)
        n = inject.call(envelope("notify", {"title": "quiet", "text": "x"}, user=alice.id))
        inject.close()
        events.wait_for(lambda t, e: e["type"] == "notification"
                        and e["body"]["notification"]["id"] == n["id"])
        events.pump(0.5)
        assert not [e for t, e in events.got if t.startswith("push.")]
        assert server.sql_value("SELECT pushed_at FROM notifications WHERE id = %s",
                                n["id"]) is None
    finally:
        events.close()


class Lines:
    """The JSON lines a child process prints, read by a thread."""

    def __init__(self, proc):
        self.proc = proc
        self.queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.queue.put(json.loads(line))

    def next(self, timeout):
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None


def test_parley_tail_prints_a_scripted_conversation(server, alice, bob):
    room = group(alice, bob)
    first = last_seq(server, room) + 1
    proc = subprocess.Popen([tool("parley-tail"), "--endpoint", server.events_endpoint,
                             "--topic", f"room.{room}", f"user.{bob.id}", "--duration", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = Lines(proc)
    inject = Inject(server.inject_endpoint)
    try:
        # the tail's subscription is in effect once a probe shows up in it
        deadline = time.time() + 10
        while lines.next(0.3) is None:
            assert time.time() < deadline and proc.poll() is None, "parley-tail saw no probe"
            inject.call(envelope("notify", {"title": "probe", "text": ""}, user=bob.id))
        time.sleep(0.3)
        while lines.next(0) is not None:
            pass
        script = ["one", "two", "three"]
        ids = []
        for i, text in enumerate(script):
            sender = alice if i % 2 == 0 else bob
            reply = inject.call(envelope("message.send", {"content": text}, user=sender.id,
                                         room=room))
            assert reply["ok"], reply
            ids.append(reply["id"])
        r = alice.delete(f"{MESSAGES}{ids[0]}/")
        assert r.status_code == 204
        got = []
        while len([x for x in got if x["topic"] == f"room.{room}"]) < 4:
            line = lines.next(10)
            assert line is not None, f"parley-tail printed nothing more after {got}"
            got.append(line)
        room_lines = [x for x in got if x["topic"] == f"room.{room}"]
        assert [x["type"] for x in room_lines] == ["message.new"] * 3 + ["message.deleted"]
        assert [x["body"]["message"]["content"] for x in room_lines[:3]] == script
        assert [x["body"]["message"]["id"] for x in room_lines[:3]] == ids
        assert [x["body"]["seq"] for x in room_lines] == list(range(first, first + 4))
        for x in room_lines:
            assert x["v"] == 1 and x["room"] == room and isinstance(x["ts"], int)
    finally:
        inject.close()
        proc.terminate()
        proc.wait(10)
    assert proc.returncode in (0, -15)


def test_parley_inject_tool(server, alice, bob):
    room = group(alice, bob)
    cmd = [tool("parley-inject"), "--endpoint", server.inject_endpoint, "--timeout", "10"]
    good = json.dumps({"type": "message.send", "user": alice.id, "room": room,
                       "body": {"content": "from the cli"}, "id": "cli-1"})
    out = subprocess.run(cmd + [good], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply["type"] == "reply" and reply["re"] == "cli-1" and reply["body"]["ok"] is True
    m = bob.get(f"{MESSAGES}{reply['body']['id']}/").json()
    assert m["content"] == "from the cli"
    # JSON lines on stdin; a refused one fails the run but not the others
    lines = "\n".join([
        json.dumps({"type": "message.send", "user": alice.id, "room": room,
                    "body": {"content": "line 1"}}),
        "not json",
        json.dumps({"type": "message.send", "user": bob.id, "room": room,
                    "body": {"content": 5}}),
        json.dumps({"type": "presence.set", "user": bob.id, "body": {"status": "away"}}),
        json.dumps({"type": "message.send", "user": bob.id, "room": str(uuid.uuid4()),
                    "body": {"content": "nowhere"}}),
    ]) + "\n"
    out = subprocess.run(cmd, input=lines, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1, (out.stdout, out.stderr)
    replies = [json.loads(x) for x in out.stdout.splitlines()]   # in arrival order
    assert sorted(r["body"]["ok"] for r in replies) == [False, True, True]
    assert [r["body"]["code"] for r in replies if not r["body"]["ok"]] == ["not_found"]
    assert "line 2" in out.stderr and "line 3" in out.stderr
    # --keygen and --help
    keys = json.loads(subprocess.run([tool("parley-inject"), "--keygen"], capture_output=True,
                                     text=True, timeout=10).stdout)
    assert len(keys["public"]) == 40 and len(keys["secret"]) == 40
    for name in ("parley-inject", "parley-tail", "parley-assistant", "parley-load"):
        out = subprocess.run([tool(name), "--help"], capture_output=True, text=True, timeout=10)
        assert out.returncode == 0 and out.stdout.startswith("usage: " + name)


# -------------------------------------------------------------------- CURVE --

def test_curve_refuses_unknown_keys_and_admits_known_ones(server_factory):
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    other_public, other_secret = zmq.curve_keypair()
    srv = server_factory({"curve_secret_key": server_secret.decode(),
                          "curve_allowed_clients": client_public.decode()})
    alice = srv.user()
    room = group(alice)

    plain = Inject(srv.inject_endpoint)
    plain.send(envelope("message.send", {"content": "plain"}, user=alice.id, room=room))
    assert plain.recv(timeout=2) is None
    plain.close()
    stranger = Inject(srv.inject_endpoint, curve=(server_public, other_public, other_secret))
    stranger.send(envelope("message.send", {"content": "stranger"}, user=alice.id, room=room))
    assert stranger.recv(timeout=2) is None
    stranger.close()
    assert srv.sql_value("SELECT count(*) FROM messages WHERE room_id = %s", room) == "0"
    assert "refused a CURVE client" in srv.log_text()

    friend = Inject(srv.inject_endpoint, curve=(server_public, client_public, client_secret))
    reply = friend.call(envelope("message.send", {"content": "friend"}, user=alice.id, room=room))
    assert reply["ok"], reply
    friend.close()

    # the events socket takes the same keys
    keys = (server_public, client_public, client_secret)
    known = Events(srv.events_endpoint, f"room.{room}", curve=keys)
    unknown = Events(srv.events_endpoint, f"room.{room}",
                     curve=(server_public, other_public, other_secret))
    inject = Inject(srv.inject_endpoint, curve=keys)
    deadline = time.time() + 10
    while not known.got:
        assert time.time() < deadline
        assert inject.call(envelope("message.send", {"content": "tick"}, user=alice.id,
                                    room=room))["ok"]
        known.pump(0.3)
    unknown.pump(0.5)
    assert unknown.got == []
    # and the tools speak CURVE
    out = subprocess.run([tool("parley-inject"), "--endpoint", srv.inject_endpoint,
                          "--server-key", server_public.decode(),
                          "--public-key", client_public.decode(),
                          "--secret-key", client_secret.decode(), "--timeout", "5",
                          json.dumps({"type": "message.send", "user": alice.id, "room": room,
                                      "body": {"content": "cli over curve"}})],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([tool("parley-inject"), "--endpoint", srv.inject_endpoint,
                          "--server-key", server_public.decode(),
                          "--public-key", other_public.decode(),
                          "--secret-key", other_secret.decode(), "--timeout", "2",
                          json.dumps({"type": "message.send", "user": alice.id, "room": room,
                                      "body": {"content": "refused"}})],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 3, out.stderr
    for s in (known, unknown, inject):
        s.close()


# ----------------------------------------------------------------- ai rooms --

def test_ai_room_conversation_with_the_sample_assistant(server, alice):
    r = alice.post(ROOMS, json={"room_type": "ai", "name": "helper"})
    assert r.status_code == 201, r.text
    room = r.json()["id"]
    assistant = server.sql_value("SELECT id FROM users WHERE username = 'assistant'")
    assert assistant in r.json()["participants"]
    watcher = Events(server.events_endpoint, f"ai.{room}")
    proc = subprocess.Popen([tool("parley-assistant"), "--events", server.events_endpoint,
                             "--inject", server.inject_endpoint, "--chunks", "3",
                             "--delay-ms", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    async def go():
        a = await WSClient.connect(server, alice)
        # the assistant subscribes asynchronously: ask until it answers
        answered = None
        for attempt in range(40):
            await a.request("message.send", room=room, content=f"hello assistant {attempt}")
            try:
                answered = await a.wait_for(
                    lambda e: e.get("type") == "message.new"
                    and e["message"]["sender"] == assistant, timeout=0.5)
                break
            except AssertionError:
                continue
        assert answered, "the assistant never answered"
        final = answered["message"]
        question = final["reply_to"]
        stream = final["stream_id"]
        assert stream == f"assistant-{question}"
        deltas = [e for e in a.events if e.get("type") == "message.delta"
                  and e.get("stream_id") == stream]
        assert [d["seq_in_stream"] for d in deltas] == [0, 1, 2]
        assert all(d["room"] == room and "seq" not in d for d in deltas)
        assert "".join(d["text"] for d in deltas) == final["content"]
        # the deltas came before the final message
        index = a.events.index(answered)
        assert all(a.events.index(d) < index for d in deltas)
        await a.close()
        return final, question

    printed = []
    try:
        final, question = run(go())
        # the assistant prints its answer when the inject acknowledges it,
        # which may come after the message reached the WebSocket: wait for
        # that line before stopping it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(final["id"] in x for x in printed):
            if select.select([proc.stdout], [], [], 0.2)[0]:
                line = proc.stdout.readline()
                if not line:
                    break
                printed.append(line)
    finally:
        proc.terminate()
        proc.wait(10)
    # REST has the final message, with its stream_id
    m = alice.get(f"{MESSAGES}{final['id']}/").json()
    assert m["stream_id"] == final["stream_id"] and m["sender"] == assistant
    # ai.<room> carried the user's message, naming the assistant account
    watcher.pump(0.5)
    ai = [e for t, e in watcher.got if e["body"]["message"]["id"] == question]
    assert ai and ai[0]["user"] == assistant and ai[0]["room"] == room
    assert ai[0]["type"] == "message.new"
    watcher.close()
    # the assistant printed its answer
    out = [json.loads(x) for x in printed + proc.stdout.read().splitlines()]
    assert {"room": room, "message": question, "reply": final["id"],
            "stream_id": final["stream_id"], "deltas": 3} in out
