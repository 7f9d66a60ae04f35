"""API.md §3 limits — a consumer that cannot keep up first loses ephemeral
events, then is disconnected with 1013 before its queue passes the bound
(ws_queue_max, 64 KiB here), while the fast consumers of the same room keep
receiving everything in order; the cut-off client resumes afterwards.

The slow client is a bare socket (wsclient.RawWS) with a small receive
buffer that reads only when the test says so.  Also: bursts bigger than
the bound to a client that reads are fine, a replay far over the bound is
paced, and live events held during a stalled replay count against the
bound.
"""

import re
import uuid

from wsclient import RawWS, WSClient, run, seqs

QUEUE_MAX = 65536
PARLEY_SETTINGS = {"ws_queue_max": QUEUE_MAX}

ROOMS = "/api/messaging/rooms/"


def group(owner, *others):
    r = owner.post(ROOMS, json={"name": "slow-" + uuid.uuid4().hex[:8], "room_type": "group",
                                "participants": [o.id for o in others]})
    assert r.status_code == 201, r.text
    return r.json()


def metric(server, name):
    text = server.get("/metrics").text
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M):
        total += float(m.group(1))
    return total


def test_slow_consumer_is_cut_off_while_fast_ones_keep_receiving(server):
    alice, bob, carol, dave = (server.user() for _ in range(4))
    room_obj = group(alice, bob, carol, dave)
    room = room_obj["id"]
    start = room_obj["last_seq"]
    big = "y" * 8000
    cut_off = re.compile(rf"user {re.escape(carol.id)} cannot keep up: closing 1013")
    dropped = "parley_ws_ephemeral_dropped_total"
    dropped_before = metric(server, dropped)

    async def go():
        a = await WSClient.connect(server, alice, name="alice")       # sender, fast
        b = await WSClient.connect(server, bob, name="bob")           # fast
        d = await WSClient.connect(server, dave, name="dave")         # typist, fast
        slow = RawWS(server, carol.token, rcvbuf=4096)                # reads when told
        slow.read_until(lambda e: e.get("type") == "ready")
        toggles = 0

        async def message_then_typing(i):
            """A message, then a typing change; both seen by bob."""
            nonlocal toggles
            ack = await a.request("message.send", room=room, content=f"{i} {big}")
            await b.wait_for(lambda e, s=ack["message"]["seq"]: e.get("seq") == s
                             and e.get("room") == room)
            await d.send({"type": "typing.start" if toggles % 2 == 0 else "typing.stop",
                          "room": room})
            toggles += 1
            await b.wait_count(lambda e: e.get("type") == "typing"
                               and e.get("user") == dave.id, toggles)
            return ack["message"]["seq"]

        # 1. carol does not read: her queue grows past half the bound, where
        #    ephemeral events are dropped (room events still queue)
        i = 0
        while metric(server, dropped) == dropped_before:
            assert i < 1000, "carol's queue never filled"
            last = await message_then_typing(i)
            i += 1
        assert not cut_off.search(server.log_since_start()), "cut off too early"
        # she catches up: every room event is there, some typing is not
        slow.read_until(lambda e: e.get("seq") == last and e.get("room") == room)
        last = await message_then_typing(i)
        i += 1
        slow.read_until(lambda e: e.get("seq") == last and e.get("room") == room)
        assert seqs(slow.events, room) == list(range(start + 1, last + 1))
        typing_got = [e for e in slow.events if e.get("type") == "typing"]
        assert 0 < len(typing_got) < toggles, (len(typing_got), toggles)
        assert slow.close_code is None and not slow.eof

        # 2. she stops reading again: cut off with 1013 at the bound
        while not cut_off.search(server.log_since_start()):
            assert i < 2000, "the slow consumer was never cut off"
            ack = await a.request("message.send", room=room, content=f"{i} {big}")
            await b.wait_for(lambda e, s=ack["message"]["seq"]: e.get("seq") == s
                             and e.get("room") == room)
            i += 1
        end = start + i
        code = slow.drain(10)              # what was written ends with a close frame
        assert code == 1013, f"closed with {code} (eof={slow.eof})"
        slow.close()
        got = seqs(slow.events, room)
        assert got == list(range(start + 1, start + 1 + len(got)))    # no gap
        assert len(got) < i, "the slow consumer received everything"
        assert metric(server, "parley_ws_slow_consumers_closed_total") >= 1

        # the fast ones got everything, in order, and are still connected
        for ws in (a, b, d):
            await ws.wait_for(lambda e: e.get("room") == room and e.get("seq") == end)
            assert seqs(ws.events, room) == list(range(start + 1, end + 1)), ws.name
            assert not ws.closed
            assert (await ws.request("ping"))["type"] == "pong"

        # the cut-off client resumes where it stopped
        again = await WSClient.connect(server, carol, name="carol-again")
        await again.request("resume", rooms={room: got[-1]})
        assert seqs(again.events, room) == list(range(got[-1] + 1, end + 1))
        for ws in (a, b, d, again):
            await ws.close()
    run(go(), 180)


def test_fast_consumer_of_big_bursts_is_not_cut_off(server):
    """Pipelined sends of large messages: one persister batch answers with
    several acks and events at once, more than ws_queue_max; a client that
    reads is not a slow consumer (the gateway writes what the socket takes
    before it judges the queue)."""
    alice, bob = server.user(), server.user()
    room_obj = group(alice, bob)
    room, start = room_obj["id"], room_obj["last_seq"]
    big = "z" * 9000

    async def go():
        a = await WSClient.connect(server, alice)
        b = await WSClient.connect(server, bob)
        # 8 in flight: bursts of ~150 KB of acks and events, over twice the bound
        answers = await a.pipeline([("message.send", {"room": room, "content": f"{i} {big}"})
                                    for i in range(120)], window=8)
        assert all(x["type"] == "ack" for x in answers)
        end = start + 120
        for ws in (a, b):
            await ws.wait_for(lambda e: e.get("seq") == end and e.get("room") == room, 30)
            assert seqs(ws.events, room) == list(range(start + 1, end + 1))
            assert not ws.closed
        await a.close()
        await b.close()
    run(go(), 120)


def test_resume_of_a_backlog_far_over_the_bound_is_paced(server):
    """A replay of ~20 times ws_queue_max goes out page by page, each page
    asked for once the previous one is written: a client that reads gets
    it all and is not cut off."""
    alice, bob = server.user(), server.user()
    room_obj = group(alice, bob)
    room, start = room_obj["id"], room_obj["last_seq"]
    big = "w" * 8000

    async def go():
        a = await WSClient.connect(server, alice)
        answers = await a.pipeline([("message.send", {"room": room, "content": f"{i} {big}"})
                                    for i in range(160)], window=4)
        assert all(x["type"] == "ack" for x in answers)
        await a.close()
        end = start + 160
        b = await WSClient.connect(server, bob, ready=False, rcvbuf=8192)
        ref, cmd = b.command("resume", rooms={room: start})
        await b.send(cmd)
        assert (await b.answer(ref, 60))["type"] == "ack"
        assert seqs(b.events, room) == list(range(start + 1, end + 1))
        assert not b.closed
        await b.close()
    run(go(), 120)


def test_live_events_held_during_a_stalled_resume_count_against_the_bound(server):
    """A client that asks for a long replay and does not read: its replay
    stalls (pages wait for the queue to drain) while live events of the room
    are held for after it; those count against ws_queue_max too, so the
    server cuts it off (1013) instead of holding them without end."""
    alice, carol = server.user(), server.user()
    room_obj = group(alice, carol)
    room, start = room_obj["id"], room_obj["last_seq"]
    big = "v" * 8000
    cut_off = re.compile(rf"user {re.escape(carol.id)} cannot keep up")

    async def go():
        a = await WSClient.connect(server, alice)
        answers = await a.pipeline([("message.send", {"room": room, "content": f"{i} {big}"})
                                    for i in range(400)], window=8)
        assert all(x["type"] == "ack" for x in answers)
        slow = RawWS(server, carol.token, rcvbuf=4096)
        slow.send({"type": "resume", "ref": "r", "rooms": {room: start}})
        n = 0
        while not cut_off.search(server.log_since_start()):
            assert n < 300, "the stalled resume was never cut off"
            await a.request("message.send", room=room, content=f"live {n} {big}")
            n += 1
        assert slow.drain(10) == 1013
        slow.close()
        got = seqs(slow.events, room)
        assert got == list(range(start + 1, start + 1 + len(got)))
        assert len(got) < 400 + n
        await a.close()
    run(go(), 120)
