"""API.md §3 and §2.5 — ephemeral state over real WebSockets: typing
indicators (to the room's other members, stop on typing.stop or disconnect,
expiry typing_ttl after the last typing.start) and presence across devices
(online with the first connection, offline when the last one has been gone
for presence_grace, nothing in between).

typing_ttl and presence_grace are short here (2 s and 1 s) to keep the
module quick; the server's timers tick every 250 ms.
"""

import time
import uuid


from wsclient import WSClient, run

PARLEY_SETTINGS = {"typing_ttl": 2, "presence_grace": 1}
TTL = 2.0
GRACE = 1.0
TICK = 0.25
SLACK = 1.0            # scheduling slack on top of a tick, on a busy machine

ROOMS = "/api/messaging/rooms/"
PRESENCE = "/api/messaging/presence/"


def group(owner, *others):
    r = owner.post(ROOMS, json={"name": "live-" + uuid.uuid4().hex[:8], "room_type": "group",
                                "participants": [o.id for o in others]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def typing(room, user, is_typing=None):
    def match(e):
        return (e.get("type") == "typing" and e.get("room") == room and e.get("user") == user
                and (is_typing is None or e.get("is_typing") is is_typing))
    return match


def presence_of(user, status=None):
    def match(e):
        p = e.get("presence") or {}
        return (e.get("type") == "presence" and p.get("user") == user.id
                and (status is None or p.get("status") == status))
    return match


def rest_presence(viewer, user):
    r = viewer.get(PRESENCE, params={"user": user.id})
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["results"] if isinstance(body, dict) else body
    assert len(items) == 1, items
    return items[0]


# ------------------------------------------------------------------- typing --

def test_typing_reaches_the_other_members_not_the_typer(server, alice, bob, carol):
    room = group(alice, bob)

    async def go():
        a1 = await WSClient.connect(server, alice, name="alice-1")
        a2 = await WSClient.connect(server, alice, name="alice-2")
        b = await WSClient.connect(server, bob)
        c = await WSClient.connect(server, carol)            # not in the room
        await a1.send({"type": "typing.start", "room": room})
        e = await b.wait_for(typing(room, alice.id, True))
        assert set(e) == {"type", "room", "user", "is_typing", "ts"} and "seq" not in e
        await a1.send({"type": "typing.stop", "room": room})
        await b.wait_for(typing(room, alice.id, False))
        # everything queued for alice-2 and carol before now comes before the pong
        for ws in (a1, a2, c):
            await ws.request("ping")
            assert not ws.of_type("typing"), ws.events
        # only one start and one stop reached bob
        assert [x["is_typing"] for x in b.of_type("typing")] == [True, False]
        for ws in (a1, a2, b, c):
            await ws.close()
    run(go())


def test_typing_sets_a_redis_key_with_the_ttl(server, alice, bob):
    room = group(alice, bob)

    async def go():
        a = await WSClient.connect(server, alice)
        b = await WSClient.connect(server, bob)
        await a.send({"type": "typing.start", "room": room})
        await b.wait_for(typing(room, alice.id, True))
        ttl = int(server.redis("TTL", f"typing:{room}:{alice.id}").split()[-1])
        assert 0 < ttl <= TTL
        await a.send({"type": "typing.stop", "room": room})
        await b.wait_for(typing(room, alice.id, False))
        assert server.redis("EXISTS", f"typing:{room}:{alice.id}").split()[-1] == "0"
        await a.close()
        await b.close()
    run(go())


def test_typing_expires_typing_ttl_after_the_last_start(server, alice, bob):
    room = group(alice, bob)

    async def go():
        a = await WSClient.connect(server, alice)
        b = await WSClient.connect(server, bob)
        t0 = time.monotonic()
        await a.send({"type": "typing.start", "room": room})
        await b.wait_for(typing(room, alice.id, True))
        e = await b.wait_for(typing(room, alice.id, False), TTL + SLACK + 2)
        elapsed = time.monotonic() - t0
        assert TTL - TICK <= elapsed <= TTL + TICK + SLACK, elapsed
        assert e["is_typing"] is False
        await a.close()
        await b.close()
    run(go())


def test_renewed_typing_lasts_from_the_last_start(server, alice, bob):
    room = group(alice, bob)

    async def go():
        a = await WSClient.connect(server, alice)
        b = await WSClient.connect(server, bob)
        await a.send({"type": "typing.start", "room": room})
        await b.wait_for(typing(room, alice.id, True))
        # keep typing: renew every second, three times; it must not stop meanwhile
        for _ in range(3):
            await b.expect_none(typing(room, alice.id, False), 1.0)
            await a.send({"type": "typing.start", "room": room})
        renewed = time.monotonic()
        await b.wait_for(typing(room, alice.id, False), TTL + SLACK + 2)
        elapsed = time.monotonic() - renewed
        assert TTL - TICK - 0.1 <= elapsed <= TTL + TICK + SLACK, elapsed
        # a renewal announces nothing new: one start, one stop
        assert [x["is_typing"] for x in b.of_type("typing")] == [True, False]
        await a.close()
        await b.close()
    run(go())


def test_typing_stops_when_the_typer_disconnects(server, alice, bob):
    room = group(alice, bob)
    other = group(alice, bob)

    async def go():
        a = await WSClient.connect(server, alice)
        b = await WSClient.connect(server, bob)
        await a.send({"type": "typing.start", "room": room})
        await a.send({"type": "typing.start", "room": other})
        await a.send({"type": "typing.stop", "room": other})
        await b.wait_for(typing(other, alice.id, False))
        await b.wait_for(typing(room, alice.id, True))
        t0 = time.monotonic()
        a.abort()                          # a dropped connection, not a clean close
        await b.wait_for(typing(room, alice.id, False), TTL)
        assert time.monotonic() - t0 < TTL - TICK, "stopped by expiry, not by the disconnect"
        # the room that had already stopped gets no second stop
        await b.request("ping")
        assert [x["is_typing"] for x in b.of_type("typing", other)] == [True, False]
        await b.close()
    run(go())


def test_typing_stop_without_start_and_bad_rooms(server, alice, bob, carol):
    room = group(alice, bob)
    foreign = group(carol)

    async def go():
        a = await WSClient.connect(server, alice)
        b = await WSClient.connect(server, bob)
        await a.send({"type": "typing.stop", "room": room})     # nothing to stop
        for fields in ({"room": foreign}, {"room": "nope"}, {}, {"room": 5}):
            err = await a.request("typing.start", expect="error", **fields)
            assert err["code"] == "not_found", err
        await a.send({"type": "typing.start", "room": room})
        first = await b.wait_for(typing(room, alice.id))
        assert first["is_typing"] is True
        await a.close()
        await b.close()
    run(go())


# ----------------------------------------------------------------- presence --

def test_presence_online_and_offline_with_two_devices(server, bob, carol):
    group(carol, bob)

    async def go():
        watcher = await WSClient.connect(server, carol, name="carol")
        assert rest_presence(carol, bob)["status"] == "offline"

        d1 = await WSClient.connect(server, bob, name="bob-1")
        e = await watcher.wait_for(presence_of(bob, "online"))
        assert e["presence"]["is_online"] is True and "seq" not in e
        await d1.wait_for(presence_of(bob, "online"))         # bob is told too
        assert rest_presence(carol, bob)["status"] == "online"

        d2 = await WSClient.connect(server, bob, auth="cookie", name="bob-2")
        # the second device changes nothing
        await watcher.expect_none(presence_of(bob), GRACE + SLACK)
        # one device leaves: still online, well past the grace period
        await d1.close()
        await watcher.expect_none(presence_of(bob), GRACE + TICK + SLACK)
        assert rest_presence(carol, bob)["status"] == "online"
        assert len([x for x in watcher.events if presence_of(bob)(x)]) == 1

        # the last device leaves: offline once the grace period is over
        t0 = time.monotonic()
        d2.abort()
        e = await watcher.wait_for(presence_of(bob, "offline"), GRACE + TICK + SLACK + 2)
        elapsed = time.monotonic() - t0
        assert GRACE - TICK <= elapsed <= GRACE + TICK + SLACK + 1, elapsed
        assert e["presence"]["is_online"] is False
        assert e["presence"]["last_seen"] is not None
        record = rest_presence(carol, bob)
        assert record["status"] == "offline" and record["last_seen"] is not None
        assert record["total_online_time"] >= 1
        await watcher.close()
    run(go(), 60)


def test_reconnecting_within_the_grace_period_stays_online(server, bob, carol):
    group(carol, bob)

    async def go():
        watcher = await WSClient.connect(server, carol)
        d1 = await WSClient.connect(server, bob)
        await watcher.wait_for(presence_of(bob, "online"))
        await d1.close()
        d2 = await WSClient.connect(server, bob)             # well within 1 s
        await watcher.expect_none(presence_of(bob), GRACE + TICK + SLACK)
        assert rest_presence(carol, bob)["status"] == "online"
        await d2.close()
        await watcher.wait_for(presence_of(bob, "offline"), GRACE + TICK + SLACK + 2)
        # and the next connection is online again
        n = len(watcher.events)
        d3 = await WSClient.connect(server, bob)
        await watcher.wait_for(presence_of(bob, "online"), start=n)
        assert [x["presence"]["status"] for x in watcher.events if presence_of(bob)(x)] \
            == ["online", "offline", "online"]
        await d3.close()
        await watcher.close()
    run(go(), 60)


def test_presence_events_reach_people_sharing_a_room_only(server, alice, bob, carol):
    group(carol, bob)

    async def go():
        c = await WSClient.connect(server, carol)
        a = await WSClient.connect(server, alice)             # shares no room with bob
        b = await WSClient.connect(server, bob)
        await c.wait_for(presence_of(bob, "online"))
        busy = await b.request("presence.set", status="busy", custom_status="deep work")
        assert busy["presence"]["status"] == "busy"
        e = await c.wait_for(presence_of(bob, "busy"))
        assert e["presence"]["custom_status"] == "deep work"
        await b.close()
        await c.wait_for(presence_of(bob, "offline"), GRACE + TICK + SLACK + 2)
        await a.request("ping")
        assert not [x for x in a.events if presence_of(bob)(x)]
        await a.close()
        await c.close()
    run(go(), 60)


def test_invisible_user_shows_as_offline_to_others(server, bob, carol):
    group(carol, bob)

    async def go():
        c = await WSClient.connect(server, carol)
        b = await WSClient.connect(server, bob)
        await c.wait_for(presence_of(bob, "online"))
        ack = await b.request("presence.set", status="invisible")
        assert ack["presence"]["status"] == "invisible"
        # others see bob go offline, never "invisible"
        e = await c.wait_for(presence_of(bob, "offline"))
        assert e["presence"]["is_online"] is False
        assert rest_presence(carol, bob)["status"] == "offline"
        await b.close()
        # going away while invisible announces nothing more
        await c.expect_none(presence_of(bob), GRACE + TICK + SLACK)
        assert [x["presence"]["status"] for x in c.events if presence_of(bob)(x)] \
            == ["online", "offline"]
        await c.close()
    run(go(), 60)
