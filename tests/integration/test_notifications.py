"""API.md §2.6 — notifications created when a message commits (mentions,
direct messages, mutes, mentions_only), their WebSocket events and push
envelopes, the notifications/ endpoints and notification-settings/me/.

The scheduled side (the mentions job, emails) is in test_scheduler.py."""
import time
import uuid

import msgpack
import pytest
import zmq

from wsclient import WSClient, run

M = "/api/messaging/"
N = M + "notifications/"
S = M + "notification-settings/me/"
NOTIFICATION_FIELDS = {"id", "kind", "room", "message", "title", "text", "is_read",
                       "created_at", "emailed_at"}


# --------------------------------------------------------------- helpers --

def room(owner, *others, room_type="group", **body):
    body.setdefault("name", "n" + uuid.uuid4().hex[:8])
    r = owner.post(M + "rooms/", json=dict(body, room_type=room_type,
                                           participants=[o.id for o in others]))
    assert r.status_code in (200, 201), r.text
    return r.json()["id"]


def send(user, room_id, content, **body):
    r = user.post(M + "messages/", json=dict(body, room=room_id, content=content))
    assert r.status_code == 201, r.text
    return r.json()


def notifications(user, **params):
    r = user.get(N, params=dict(params, page_size=200))
    assert r.status_code == 200, r.text
    return r.json()["results"]


def of_message(user, message_id):
    return [n for n in notifications(user) if n["message"] == message_id]


def settings(user, **fields):
    r = user.patch(S, json=fields)
    assert r.status_code == 200, r.text
    return r.json()


class Events:
    """A SUB client of the events socket (API.md §4)."""

    def __init__(self, endpoint, *topics):
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.linger = 0
        for t in topics:
            self.sock.setsockopt_string(zmq.SUBSCRIBE, t)
        self.sock.connect(endpoint)
        self.got = []

    def pump(self, timeout):
        deadline = time.time() + timeout
        while True:
            left = max(0.0, deadline - time.time())
            if not self.sock.poll(int(left * 1000)):
                return
            topic, data = self.sock.recv_multipart()
            self.got.append((topic.decode(), msgpack.unpackb(data, raw=False)))

    def find(self, topic, predicate=lambda env: True):
        return [env for t, env in self.got if t == topic and predicate(env)]

    def close(self):
        self.sock.close()


# ------------------------------------------------------- at commit: who --

def test_a_mention_makes_a_notification_row_and_a_websocket_event(server, alice, bob, carol):
    rid = room(alice, bob, carol)

    async def go():
        async with await WSClient.connect(server, bob) as ws_bob, \
                await WSClient.connect(server, carol) as ws_carol:
            msg = send(alice, rid, f"hello @{bob.username}, how are you?")
            event = await ws_bob.wait_for(lambda e: e.get("type") == "notification",
                                          what="the notification event")
            n = event["notification"]
            assert set(n) == NOTIFICATION_FIELDS
            assert n["kind"] == "mention" and n["room"] == rid and n["message"] == msg["id"]
            assert n["is_read"] is False and n["title"] is None and n["text"] is None
            assert n["emailed_at"] is None
            assert isinstance(event["ts"], str) and event["ts"].endswith("Z")
            await ws_carol.expect_none(lambda e: e.get("type") == "notification", 1.0)
            return msg, n
    msg, n = run(go())
    assert of_message(bob, msg["id"]) == [n]
    assert of_message(carol, msg["id"]) == []
    assert of_message(alice, msg["id"]) == []
    assert server.sql_value("SELECT mentions_processed_at IS NOT NULL FROM messages"
                            " WHERE id = %s", msg["id"]) == "t"


def test_group_messages_without_a_mention_notify_nobody(alice, bob, carol):
    rid = room(alice, bob, carol)
    msg = send(alice, rid, "nobody is mentioned here")
    assert of_message(bob, msg["id"]) == [] and of_message(carol, msg["id"]) == []


def test_at_all_and_at_room_mention_every_participant_but_the_sender(alice, bob, carol):
    rid = room(alice, bob, carol)
    for word in ("@all", "@room"):
        msg = send(alice, rid, f"{word} meeting in five")
        for user in (bob, carol):
            assert [n["kind"] for n in of_message(user, msg["id"])] == ["mention"]
        assert of_message(alice, msg["id"]) == []


def test_mentioning_a_non_participant_or_yourself_notifies_nobody(server, alice, bob):
    stranger = server.user()
    rid = room(alice, bob)
    msg = send(alice, rid, f"@{stranger.username} and @{alice.username}")
    assert of_message(stranger, msg["id"]) == [] and of_message(alice, msg["id"]) == []


def test_a_direct_message_notifies_the_other_participant(alice, bob):
    rid = room(alice, bob, room_type="direct")
    msg = send(alice, rid, "psst")
    got = of_message(bob, msg["id"])
    assert [n["kind"] for n in got] == ["message"] and got[0]["room"] == rid
    assert of_message(alice, msg["id"]) == []


def test_a_direct_message_that_mentions_makes_one_mention_only(alice, bob):
    rid = room(alice, bob, room_type="direct")
    msg = send(alice, rid, f"@{bob.username} look")
    assert [n["kind"] for n in of_message(bob, msg["id"])] == ["mention"]


def test_a_message_over_websocket_notifies_too(server, alice, bob):
    rid = room(alice, bob, room_type="direct")

    async def go():
        async with await WSClient.connect(server, alice) as ws_alice, \
                await WSClient.connect(server, bob) as ws_bob:
            ack = await ws_alice.request("message.send", room=rid, content="over the socket")
            event = await ws_bob.wait_for(lambda e: e.get("type") == "notification")
            assert event["notification"]["message"] == ack["message"]["id"]
            assert event["notification"]["kind"] == "message"
    run(go())


def test_a_forward_into_a_direct_room_notifies(alice, bob, carol):
    group = room(alice, carol)
    original = send(carol, group, f"@{alice.username} forward this")
    direct = room(alice, bob, room_type="direct")
    r = alice.post(M + f"messages/{original['id']}/forward/", json={"room": direct})
    assert r.status_code == 201, r.text
    assert [n["kind"] for n in of_message(bob, r.json()["id"])] == ["message"]


# ---------------------------------------------------- at commit: settings --

def test_nothing_for_a_muted_room(alice, bob):
    group = room(alice, bob)
    direct = room(alice, bob, room_type="direct")
    settings(bob, muted_rooms=[group, direct])
    m1 = send(alice, group, f"@{bob.username} muted group")
    m2 = send(alice, direct, f"@{bob.username} muted direct")
    assert of_message(bob, m1["id"]) == [] and of_message(bob, m2["id"]) == []
    settings(bob, muted_rooms=[direct])
    m3 = send(alice, group, f"@{bob.username} unmuted group")
    assert [n["kind"] for n in of_message(bob, m3["id"])] == ["mention"]


def test_mentions_only_drops_direct_messages_without_a_mention(alice, bob):
    direct = room(alice, bob, room_type="direct")
    settings(bob, mentions_only=True)
    plain = send(alice, direct, "no mention")
    mention = send(alice, direct, f"@{bob.username} a mention")
    assert of_message(bob, plain["id"]) == []
    assert [n["kind"] for n in of_message(bob, mention["id"])] == ["mention"]


def test_push_envelope_follows_push_enabled(server, alice, bob):
    rid = room(alice, bob)
    events = Events(server.events_endpoint, f"push.{bob.id}", f"user.{bob.id}")
    try:
        # subscriptions propagate asynchronously: mention until a push arrives
        deadline = time.time() + 10
        while not events.find(f"push.{bob.id}"):
            assert time.time() < deadline, "no push envelope arrived"
            send(alice, rid, f"@{bob.username} settling")
            events.pump(0.3)
        events.got.clear()
        msg = send(alice, rid, f"@{bob.username} pushed")
        deadline = time.time() + 10
        while not events.find(f"push.{bob.id}",
                              lambda e: e["body"]["notification"]["message"] == msg["id"]):
            assert time.time() < deadline, f"no push for the message: {events.got}"
            events.pump(0.3)
        env = events.find(f"push.{bob.id}")[-1]
        assert env["v"] == 1 and env["type"] == "push" and env["user"] == bob.id
        assert env["body"]["notification"]["kind"] == "mention"
        assert isinstance(env["ts"], int)

        settings(bob, push_enabled=False)
        events.got.clear()
        quiet = send(alice, rid, f"@{bob.username} not pushed")
        deadline = time.time() + 10
        while not events.find(f"user.{bob.id}",
                              lambda e: (e["body"].get("notification") or {}).get("message")
                              == quiet["id"]):
            assert time.time() < deadline, "no user event for the notification"
            events.pump(0.3)
        events.pump(0.5)
        assert events.find(f"push.{bob.id}") == []
        assert [n["kind"] for n in of_message(bob, quiet["id"])] == ["mention"]
    finally:
        events.close()


# ------------------------------------------------------------ endpoints --

def test_list_is_newest_first_paginated_and_filtered(alice, bob):
    group = room(alice, bob)
    direct = room(alice, bob, room_type="direct")
    first = send(alice, group, f"@{bob.username} one")
    second = send(alice, direct, "two")
    third = send(alice, group, f"@{bob.username} three")
    r = bob.get(N, params={"page_size": 2})
    assert r.status_code == 200
    page = r.json()
    assert page["count"] == 3 and page["previous"] is None and page["next"]
    assert [n["message"] for n in page["results"]] == [third["id"], second["id"]]
    assert [n["message"] for n in bob.get(page["next"]).json()["results"]] == [first["id"]]
    assert [n["message"] for n in notifications(bob, kind="message")] == [second["id"]]
    assert len(notifications(bob, kind="mention")) == 2
    assert len(notifications(bob, room=direct)) == 1
    assert bob.get(N, params={"kind": "nope"}).status_code == 400
    assert bob.get(N, params={"is_read": "maybe"}).status_code == 400
    assert bob.get(N, params={"page": 9}).status_code == 404


def test_read_one_and_read_all(alice, bob):
    rid = room(alice, bob, room_type="direct")
    ids = [send(alice, rid, f"m{i}")["id"] for i in range(3)]
    first = of_message(bob, ids[0])[0]
    r = bob.post(N + f"{first['id']}/read/")
    assert r.status_code == 200 and r.json()["is_read"] is True and r.json()["id"] == first["id"]
    assert bob.post(N + f"{first['id']}/read/").status_code == 200     # again: same answer
    assert bob.get(N + f"{first['id']}/").json()["is_read"] is True
    assert len(notifications(bob, is_read="false")) == 2
    r = bob.post(N + "read_all/")
    assert r.status_code == 200 and r.json() == {"updated": 2}
    assert notifications(bob, is_read="false") == []
    assert bob.post(N + "read_all/").json() == {"updated": 0}


def test_someone_elses_notification_is_404(alice, bob, carol):
    rid = room(alice, bob, room_type="direct")
    n = of_message(bob, send(alice, rid, "for bob")["id"])[0]
    for user in (alice, carol):
        assert user.get(N + f"{n['id']}/").status_code == 404
        assert user.post(N + f"{n['id']}/read/").status_code == 404
    assert bob.get(N + f"{uuid.uuid4()}/").status_code == 404
    assert bob.get(N + f"{n['id']}/").json()["is_read"] is False


def test_notifications_need_authentication(server):
    assert server.get(N).status_code == 401
    assert server.get(S).status_code == 401


# -------------------------------------------------------------- settings --

def test_settings_defaults(alice):
    r = alice.get(S)
    assert r.status_code == 200
    assert r.json() == {"email_enabled": True, "push_enabled": True, "mentions_only": False,
                        "muted_rooms": [], "email_delay_minutes": 15}


def test_settings_patch_and_put_change_only_the_fields_given(alice, bob):
    rid = room(alice, bob)
    got = settings(alice, email_enabled=False, email_delay_minutes=0)
    assert got["email_enabled"] is False and got["email_delay_minutes"] == 0
    assert got["push_enabled"] is True and got["muted_rooms"] == []
    r = alice.put(S, json={"muted_rooms": [rid, rid], "push_enabled": False})
    assert r.status_code == 200, r.text
    assert r.json() == {"email_enabled": False, "push_enabled": False, "mentions_only": False,
                        "muted_rooms": [rid], "email_delay_minutes": 0}
    assert alice.get(S).json() == r.json()
    assert settings(alice, muted_rooms=[])["muted_rooms"] == []
    assert settings(alice, email_delay_minutes=1440)["email_delay_minutes"] == 1440


@pytest.mark.parametrize("body, field", [
    ({"email_delay_minutes": -1}, "email_delay_minutes"),
    ({"email_delay_minutes": 1441}, "email_delay_minutes"),
    ({"email_delay_minutes": "15"}, "email_delay_minutes"),
    ({"email_enabled": "yes"}, "email_enabled"),
    ({"push_enabled": 1}, "push_enabled"),
    ({"mentions_only": "true"}, "mentions_only"),
    ({"muted_rooms": "not a list"}, "muted_rooms"),
    ({"muted_rooms": ["not-a-uuid"]}, "muted_rooms"),
    ({"muted_rooms": [5]}, "muted_rooms"),
])
def test_bad_settings_are_400_naming_the_field_and_change_nothing(alice, body, field):
    before = alice.get(S).json()
    r = alice.patch(S, json=dict(body, push_enabled=False) if field != "push_enabled" else body)
    assert r.status_code == 400, r.text
    assert field in r.json()
    assert alice.get(S).json() == before


def test_muting_a_room_you_cannot_see_is_404(server, alice, bob):
    private = room(bob, server.user())
    before = alice.get(S).json()
    for rid in (private, str(uuid.uuid4())):
        r = alice.patch(S, json={"muted_rooms": [rid], "mentions_only": True})
        assert r.status_code == 404, r.text
    assert alice.get(S).json() == before


def test_muting_a_public_room_you_have_not_joined_is_allowed(server, alice, bob):
    public = room(bob, server.user(), is_private=False)
    assert settings(alice, muted_rooms=[public])["muted_rooms"] == [public]
