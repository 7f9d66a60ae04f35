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
import subprocess
import time
import uuid

import msgpack
import pytest
import zmq

from conftest import wait_until
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
def alice(server):
    return server.user()


@pytest.fixture
def bob(server):
    return server.user()


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
