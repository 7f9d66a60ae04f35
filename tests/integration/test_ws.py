"""API.md §3 — the WebSocket gateway with real clients against a real parleyd
(PostgreSQL + Redis): authentication, delivery to participants only, REST →
WebSocket, per-room ordering without gaps or duplicates under concurrent
senders (REST and WebSocket mixed), resume after a forced disconnect (edits,
deletes, pins and reactions in between: exactly the missed events), paged
and truncated resume, malformed frames, the msgpack subprotocol.

Typing and presence: test_ws_live.py; slow consumers: test_ws_slow.py;
kill -9: test_ws_crash.py.  The client is tests/integration/wsclient.py.

Protocol notes (as implemented; see also wsclient.py):
- After authentication and subscription to the user's rooms the server
  sends {"type": "ready", "user": id} (an extension of API.md); commands
  sent before it are held and run right after it, in order.  So a client
  that reconnects sends `resume` at once, without waiting for `ready`: the
  replay then starts before any live event of that connection.
- A `resume` sets the connection's position in each listed room to the
  given seq and replays from there, then answers `ack {ref}`.  Events that
  happen meanwhile are held and delivered after the replay, in seq order.
"""

import concurrent.futures
import json
import time
import uuid

import pytest
from websockets.frames import OP_TEXT

from wsclient import WSClient, run, seqs, room_events

ROOMS = "/api/messaging/rooms/"
MESSAGES = "/api/messaging/messages/"
REACTIONS = "/api/messaging/reactions/"


# ------------------------------------------------------------------ helpers --

def group(owner, *others, **body):
    body.setdefault("name", "ws-" + uuid.uuid4().hex[:8])
    body.setdefault("room_type", "group")
    r = owner.post(ROOMS, json={"participants": [o.id for o in others], **body})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def post(user, room, content="hello", **body):
    r = user.post(MESSAGES, json={"room": room, "content": content, **body})
    assert r.status_code == 201, r.text
    return r.json()


def last_seq(server, room):
    return int(server.sql_value("SELECT last_seq FROM rooms WHERE id = %s", room))


def stored_events(server, room, after=0):
    """The room's event log as [(seq, type)], from PostgreSQL."""
    rows = server.sql("SELECT seq, payload->>'type' FROM room_events"
                      " WHERE room_id = %s AND seq > %s ORDER BY seq", room, after)
    return [(int(s), t) for s, t in rows]


def is_type(t, room=None):
    return lambda e: e.get("type") == t and (room is None or e.get("room") == room)


def new_message(content):
    return lambda e: e.get("type") == "message.new" and e["message"]["content"] == content


def assert_contiguous(client, room, first, last):
    """client got exactly the room events first..last, in order."""
    got = seqs(client.events, room)
    assert got == list(range(first, last + 1)), \
        f"{client.name}: room events {got[:20]}...{got[-20:]} (want {first}..{last})"


# ----------------------------------------------------------- authentication --

def test_query_token_authenticates_and_ready_names_the_user(server, alice):
    async def go():
        async with await WSClient.connect(server, alice) as ws:
            ready = ws.of_type("ready")
            assert ready == [{"type": "ready", "user": alice.id}]
            assert (await ws.request("ping"))["type"] == "pong"
    run(go())


def test_session_cookie_authenticates(server, alice):
    assert "sessionid" in alice.cookies, alice.cookies

    async def go():
        async with await WSClient.connect(server, alice, auth="cookie") as ws:
            assert ws.of_type("ready")[0]["user"] == alice.id
    run(go())


def test_ended_or_unknown_session_cookie_closes_4401(server, alice):
    r = alice.post("/api/auth/logout/", json={"refresh": alice.refresh})
    assert r.status_code == 204, r.text

    async def go():
        ws = await WSClient.connect(server, alice, auth="cookie", ready=False)
        assert await ws.wait_closed(5) == 4401
        # (observed: short values such as "abc" or "nonsense" are not found
        # by libwebsockets 4.1's lws_http_cookie_get; such a connection
        # counts as unauthenticated and is closed 4401 after 5 s instead)
        ws = await WSClient.connect(server, alice, auth=None, ready=False,
                                    extra_headers={"Cookie": "sessionid=" + "Q" * 43})
        assert await ws.wait_closed(5) == 4401
    run(go())


def test_auth_frame_authenticates_and_earlier_commands_wait_for_ready(server, alice, bob):
    room = group(alice, bob)

    async def go():
        async with await WSClient.connect(server, bob) as watcher:
            ws = await WSClient.connect(server, alice, auth="frame", ready=False)
            # sent before "ready": held, then run in order after it
            refs = []
            for i in range(3):
                ref, cmd = ws.command("message.send", room=room, content=f"early {i}")
                refs.append(ref)
                await ws.send(cmd)
            acks = [await ws.answer(ref) for ref in refs]
            assert [a["type"] for a in acks] == ["ack"] * 3, acks
            types = [e["type"] for e in ws.events]
            assert types.index("ready") < types.index("ack")
            assert [a["message"]["content"] for a in acks] == ["early 0", "early 1", "early 2"]
            assert [a["message"]["seq"] for a in acks] == sorted(a["message"]["seq"] for a in acks)
            for i in range(3):
                await watcher.wait_for(new_message(f"early {i}"))
            # a second auth frame is refused, the socket stays usable
            again = await ws.request("auth", token=alice.token, expect="error")
            assert again["code"] == "invalid"
            assert (await ws.request("ping"))["type"] == "pong"
            await ws.close()
    run(go())


@pytest.mark.parametrize("kind", ["garbage", "bad_signature", "expired", "refresh", "none_alg"])
def test_bad_query_token_is_accepted_then_closed_4401(server, alice, kind):
    token = {
        "garbage": "not-a-jwt",
        "bad_signature": server.forge_token(alice.id, secret="another-secret"),
        "expired": server.forge_token(alice.id, exp_in=-60),
        "refresh": alice.refresh,
        "none_alg": server.forge_token(alice.id, alg="none"),
    }[kind]

    async def go():
        # the upgrade succeeds (no exception here), then the server closes
        ws = await WSClient.connect(server, alice, token=token, ready=False)
        assert await ws.wait_closed(5) == 4401
        assert not ws.of_type("ready")
    run(go())


def test_bad_auth_frame_closes_4401(server, alice):
    async def go():
        ws = await WSClient.connect(server, alice, auth=None, ready=False)
        await ws.send({"type": "auth", "token": server.forge_token(alice.id, exp_in=-5)})
        assert await ws.wait_closed(5) == 4401
    run(go())


def test_no_authentication_within_5_seconds_closes_4401(server, alice):
    async def go():
        ws = await WSClient.connect(server, alice, auth=None, ready=False)
        # a command before authentication is held, not answered
        await ws.send({"type": "ping", "ref": "early"})
        started = time.monotonic()
        assert await ws.wait_closed(9) == 4401
        assert 4.0 <= time.monotonic() - started <= 8.0
        assert not [e for e in ws.events if e.get("ref") == "early"]
    run(go(), 20)


def test_other_paths_are_not_websockets(server, alice):
    import websockets

    async def go():
        # the upgrade is refused (the connection is dropped)
        with pytest.raises(websockets.exceptions.InvalidHandshake):
            await websockets.connect(f"ws://{server.host}:{server.port}/api/ws/?token={alice.token}",
                                     open_timeout=5)
    run(go())


# ----------------------------------------------------------------- delivery --

def test_events_reach_participants_only(server, alice, bob, carol):
    room = group(alice, bob)
    start = last_seq(server, room)

    async def go():
        a = await WSClient.connect(server, alice)
        b = await WSClient.connect(server, bob)
        c = await WSClient.connect(server, carol)
        ack = await a.request("message.send", room=room, content="for a and b")
        msg = ack["message"]
        assert msg["seq"] == start + 1 and msg["room"] == room and msg["sender"] == alice.id
        for ws in (a, b):
            e = await ws.wait_for(new_message("for a and b"))
            assert e["seq"] == msg["seq"] and e["room"] == room and e["message"] == msg
            assert e["ts"].endswith("Z")
        await a.request("reaction.add", message=msg["id"], emoji="👍")
        await b.wait_for(is_type("reaction.added", room))
        # carol is no participant: her commands on the room fail ...
        err = await c.request("message.send", room=room, content="intruder", expect="error")
        assert err["code"] in ("not_found", "forbidden"), err
        err = await c.request("typing.start", room=room, expect="error")
        assert err["code"] == "not_found"
        # ... and when she joins, her join is the first event of the room she
        # gets: nothing before it reached her (the same shard and gateway
        # carry both, in seq order)
        r = alice.post(f"{ROOMS}{room}/add_participant/", json={"user": carol.id})
        assert r.status_code in (200, 201, 204), r.text
        joined = await c.wait_for(is_type("room.member_joined", room))
        assert joined["user"] == carol.id
        assert seqs(c.events, room) == [joined["seq"]] == [start + 3]
        # from now on she gets the room's events
        await a.request("message.send", room=room, content="now for c too")
        e = await c.wait_for(new_message("now for c too"))
        assert e["seq"] == start + 4
        assert [x["message"]["content"] for x in c.of_type("message.new")] == ["now for c too"]
        # and when she leaves, nothing more
        r = alice.post(f"{ROOMS}{room}/remove_participant/", json={"user": carol.id})
        assert r.status_code in (200, 204), r.text
        left = await c.wait_for(is_type("room.member_left", room))
        assert left["seq"] == start + 5
        await a.request("message.send", room=room, content="after c left")
        await b.wait_for(new_message("after c left"))
        # a later event of another room of carol's, behind the one she must not get
        other = group(alice, carol)
        await a.request("message.send", room=other, content="sentinel")
        await c.wait_for(new_message("sentinel"))
        assert not [x for x in c.events if x.get("type") == "message.new"
                    and x["message"]["content"] == "after c left"]
        assert seqs(c.events, room) == [start + 3, start + 4, start + 5]
        for ws in (a, b, c):
            await ws.close()
    run(go())


def test_a_room_created_while_connected_delivers_from_its_first_event(server, alice, bob):
    async def go():
        a = await WSClient.connect(server, alice)
        room = group(bob, alice)                    # bob makes it, alice is in it
        created = await a.wait_for(is_type("room.created", room))
        assert created["seq"] == 1
        assert created["room_info"]["id"] == room
        assert set(created["room_info"]["participants"]) == {alice.id, bob.id}
        post(bob, room, "first words")
        e = await a.wait_for(new_message("first words"))
        assert e["seq"] == 2
        assert seqs(a.events, room) == [1, 2]
        ack = await a.request("message.send", room=room, content="answer")
        assert ack["message"]["seq"] == 3
        await a.close()
    run(go())


def test_rest_changes_reach_every_connected_participant(server, alice, bob):
    room = group(alice, bob)
    start = last_seq(server, room)

    async def go():
        a1 = await WSClient.connect(server, alice, name="alice-1")
        a2 = await WSClient.connect(server, alice, name="alice-2", auth="cookie")
        b = await WSClient.connect(server, bob)
        msg = post(alice, room, "over REST")
        reply = post(bob, room, "a reply", reply_to=msg["id"])
        r = alice.patch(f"{MESSAGES}{msg['id']}/", json={"content": "over REST, edited"})
        assert r.status_code == 200, r.text
        r = bob.post(REACTIONS, json={"message": msg["id"], "emoji": "🎉"})
        assert r.status_code == 201, r.text
        reaction = r.json()
        r = alice.post(f"{MESSAGES}{msg['id']}/pin/")
        assert r.status_code == 200, r.text
        r = bob.delete(f"{REACTIONS}{reaction['id']}/")
        assert r.status_code == 204, r.text
        r = bob.delete(f"{MESSAGES}{reply['id']}/")
        assert r.status_code == 204, r.text
        want = ["message.new", "message.new", "message.updated", "reaction.added",
                "message.pinned", "reaction.removed", "message.deleted"]
        end = start + len(want)
        assert last_seq(server, room) == end
        for ws in (a1, a2, b):
            await ws.wait_for(lambda e: e.get("room") == room and e.get("seq") == end)
            assert_contiguous(ws, room, start + 1, end)
            got = room_events(ws.events, room)
            assert [e["type"] for e in got] == want
            assert got[0]["message"] == msg
            assert got[1]["message"]["reply_to"] == msg["id"]
            assert got[2]["message"]["content"] == "over REST, edited"
            assert got[2]["message"]["is_edited"] is True
            assert got[3]["reaction"] == reaction
            assert got[4]["message"]["is_pinned"] is True
            assert got[5]["reaction"]["id"] == reaction["id"]
            assert got[6]["message"]["id"] == reply["id"]
            assert got[6]["message"]["is_deleted"] is True and got[6]["message"]["content"] == ""
        # the same events as the log over REST
        r = alice.get(f"{ROOMS}{room}/events/", params={"after_seq": start})
        assert r.status_code == 200, r.text
        assert r.json()["results"] == room_events(b.events, room)
        for ws in (a1, a2, b):
            await ws.close()
    run(go())


def test_ws_commands_mirror_rest(server, alice, bob):
    """Every command answers ack/error with its ref, and does what REST does."""
    room = group(alice, bob)

    async def go():
        a = await WSClient.connect(server, alice)
        b = await WSClient.connect(server, bob)
        ack = await a.request("message.send", room=room, content="v1", client_id="c-1")
        msg = ack["message"]
        again = await a.request("message.send", room=room, content="v1", client_id="c-1")
        assert again["message"]["id"] == msg["id"]          # idempotent
        edited = await a.request("message.edit", message=msg["id"], content="v2")
        assert edited["message"]["content"] == "v2" and edited["message"]["is_edited"]
        err = await b.request("message.edit", message=msg["id"], content="not mine",
                              expect="error")
        assert err["code"] in ("forbidden", "not_found"), err
        added = await b.request("reaction.add", message=msg["id"], emoji="🔥")
        assert added["reaction"]["emoji"] == "🔥" and added["reaction"]["user"] == bob.id
        removed = await b.request("reaction.remove", message=msg["id"], emoji="🔥")
        assert removed["reaction"]["id"] == added["reaction"]["id"]
        err = await b.request("reaction.remove", message=msg["id"], emoji="🔥", expect="error")
        assert err["code"] == "not_found"
        await b.request("read", room=room, message=msg["id"])
        r = bob.get(f"{ROOMS}{room}/")
        assert r.json()["unread_count"] == 0
        receipt = await a.wait_for(is_type("read.receipt", room))      # ephemeral
        assert receipt["user"] == bob.id and receipt["message"] == msg["id"]
        assert "seq" not in receipt and receipt["read_at"].endswith("Z")
        pres = await b.request("presence.set", status="busy", custom_status="focus")
        assert pres["presence"]["status"] == "busy"
        assert pres["presence"]["custom_status"] == "focus"
        deleted = await a.request("message.delete", message=msg["id"])
        assert deleted == {"type": "ack", "ref": deleted["ref"]}
        r = alice.get(f"{MESSAGES}{msg['id']}/")
        assert r.json()["is_deleted"] is True
        # refs of any JSON type are echoed
        for ref in (7, {"k": [1, 2]}, None):
            await a.send({"type": "ping", "ref": ref})
            pong = await a.wait_for(lambda e: e.get("type") == "pong" and e.get("ref") == ref)
            assert pong["ref"] == ref
        types = [e["type"] for e in room_events(b.events, room)]
        assert types == ["message.new", "message.updated", "reaction.added",
                         "reaction.removed", "message.deleted"]
        await a.close()
        await b.close()
    run(go())


# ----------------------------------------------------------------- ordering --

def test_concurrent_senders_every_member_sees_gapless_increasing_seqs(server, alice, bob, carol):
    """Four WebSocket senders (pipelining, no waiting) and three REST threads
    (messages, edits, reactions: different persisters) into one room; each
    of five connections gets every room event exactly once, in seq order."""
    dave = server.user()
    room = group(alice, bob, carol, dave)
    seed = [post(dave, room, f"seed {i}") for i in range(5)]
    start = last_seq(server, room)
    per_sender = 40

    def rest_messages():
        return [post(dave, room, f"rest {i}")["id"] for i in range(per_sender)]

    def rest_edits():
        for i in range(per_sender // 2):
            r = dave.patch(f"{MESSAGES}{seed[i % 5]['id']}/", json={"content": f"edit {i}"})
            assert r.status_code == 200, r.text

    def rest_reactions():
        n = 0
        for i in range(per_sender // 4):
            for who in (alice, bob):
                r = who.post(REACTIONS, json={"message": seed[i % 5]["id"], "emoji": f"e{i}"})
                assert r.status_code == 201, r.text
                n += 1
        return n

    async def ws_sender(ws, tag):
        refs = []
        for i in range(per_sender):
            ref, cmd = ws.command("message.send", room=room, content=f"{tag} {i}")
            refs.append(ref)
            await ws.send(cmd)
        acks = [await ws.answer(ref, 30) for ref in refs]
        assert all(a["type"] == "ack" for a in acks), [a for a in acks if a["type"] != "ack"]
        return [a["message"]["id"] for a in acks]

    async def go():
        import asyncio
        a = await WSClient.connect(server, alice, name="alice")
        a2 = await WSClient.connect(server, alice, name="alice-2", msgpack_=True)
        b = await WSClient.connect(server, bob, name="bob")
        c = await WSClient.connect(server, carol, name="carol")
        d = await WSClient.connect(server, dave, name="dave")
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            loop = asyncio.get_running_loop()
            futures = [loop.run_in_executor(pool, f)
                       for f in (rest_messages, rest_edits, rest_reactions)]
            ws_ids = await asyncio.gather(ws_sender(a, "a"), ws_sender(a2, "a2"),
                                          ws_sender(b, "b"), ws_sender(c, "c"))
            rest_ids, _, reactions = await asyncio.gather(*futures)
        total = 5 * per_sender + per_sender // 2 + reactions
        end = last_seq(server, room)
        assert end == start + total
        assert [s for s, _ in stored_events(server, room, start)] == list(range(start + 1, end + 1))
        for ws in (a, a2, b, c, d):
            await ws.wait_for(lambda e: e.get("room") == room and e.get("seq") == end, 30)
            assert_contiguous(ws, room, start + 1, end)
        # every acknowledged message was delivered, once
        delivered = [e["message"]["id"] for e in b.of_type("message.new", room)]
        assert len(delivered) == len(set(delivered))
        assert set(delivered) == set(rest_ids).union(*map(set, ws_ids))
        # and every connection saw the same events
        ref = room_events(b.events, room)
        for ws in (a, a2, c, d):
            assert room_events(ws.events, room) == ref
        assert b.arrays or c.arrays or d.arrays, "expected some coalesced frames"
        for ws in (a, a2, b, c, d):
            await ws.close()
    run(go(), 120)


def test_connections_opened_during_traffic_get_gapless_events_from_their_first(
        server, alice, bob, carol):
    """Each new connection is subscribed at the room's last_seq of that
    moment: whatever it gets afterwards has no gap, also while other
    clients are sending into the room from several persisters."""
    rooms = [group(alice, bob, carol) for _ in range(4)]

    async def go():
        import asyncio
        a = await WSClient.connect(server, alice)
        c = await WSClient.connect(server, carol)
        stop = asyncio.Event()

        async def sender(ws, room):
            n = 0
            while not stop.is_set():
                await ws.pipeline([("message.send", {"room": room, "content": f"{n + i}"})
                                   for i in range(10)], window=10)
                n += 10
        senders = [asyncio.ensure_future(sender(ws, room)) for room in rooms for ws in (a, c)]
        conns = []
        for _ in range(40):
            conns.append(await WSClient.connect(server, bob, ready=False))
        for ws in conns:
            await ws.wait_for(is_type("ready"), 30)
        await conns[-1].request("ping")
        stop.set()
        await asyncio.gather(*senders)
        for room in rooms:
            end = last_seq(server, room)
            for ws in conns:
                await ws.wait_for(lambda e, r=room: e.get("room") == r and e.get("seq") == end)
                got = seqs(ws.events, room)
                assert got == list(range(got[0], end + 1)), (room, got)
        for ws in conns + [a, c]:
            await ws.close()
    run(go(), 90)


def test_sender_gets_ack_and_event_and_ack_means_committed(server, alice, bob):
    room = group(alice, bob)

    async def go():
        a = await WSClient.connect(server, alice)
        ack = await a.request("message.send", room=room, content="committed?")
        # the ack says it is in PostgreSQL: readable at once over REST
        r = bob.get(f"{MESSAGES}{ack['message']['id']}/")
        assert r.status_code == 200 and r.json()["content"] == "committed?"
        e = await a.wait_for(new_message("committed?"))
        assert e["message"]["id"] == ack["message"]["id"]
        await a.close()
    run(go())


# ------------------------------------------------------------------- resume --

async def _activity_while_away(server, room, alice, carol, a, old):
    """Messages, edits (also of an old message), reactions added and removed,
    a pin, a delete — over WebSocket and REST.  Returns the acked message ids."""
    ids = []
    for i in range(3):
        ids.append((await a.request("message.send", room=room, content=f"missed {i}"))["message"]["id"])
    await a.request("message.edit", message=old, content="old, edited while away")
    await a.request("message.edit", message=ids[0], content="missed 0, edited")
    await a.request("reaction.add", message=old, emoji="👀")
    await a.request("reaction.add", message=ids[1], emoji="✅")
    await a.request("reaction.remove", message=old, emoji="👀")
    ids.append(post(carol, room, "missed, over REST")["id"])
    r = alice.post(f"{MESSAGES}{ids[1]}/pin/")
    assert r.status_code == 200, r.text
    await a.request("message.delete", message=ids[2])
    return ids


def test_resume_after_forced_disconnect_replays_exactly_the_missed_events(
        server, alice, bob, carol):
    room = group(alice, bob, carol)

    async def go():
        a = await WSClient.connect(server, alice, name="alice")
        b = await WSClient.connect(server, bob, name="bob-1")
        old = (await a.request("message.send", room=room, content="before"))["message"]["id"]
        await b.wait_for(new_message("before"))
        seen = b.last_seq(room)
        b.abort()                                   # no closing handshake
        await b.wait_closed(5)
        await _activity_while_away(server, room, alice, carol, a, old)
        end = last_seq(server, room)
        assert end == seen + 11
        await a.wait_for(lambda e: e.get("room") == room and e.get("seq") == end)

        b2 = await WSClient.connect(server, bob, name="bob-2")
        # connected after the activity: subscribed from now, nothing replayed yet
        assert not room_events(b2.events, room)
        ack = await b2.request("resume", rooms={room: seen})
        replayed = room_events(b2.events, room)
        # exactly the missed events, in order, before the ack, each once
        assert [e["seq"] for e in replayed] == list(range(seen + 1, end + 1))
        assert b2.events.index(ack) > b2.events.index(replayed[-1])
        # identical to what a live connection got
        assert replayed == [e for e in room_events(a.events, room) if e["seq"] > seen]
        assert [e["type"] for e in replayed] == [
            "message.new", "message.new", "message.new", "message.updated",
            "message.updated", "reaction.added", "reaction.added", "reaction.removed",
            "message.new", "message.pinned", "message.deleted"]
        # live again, no duplicate of anything replayed
        await a.request("message.send", room=room, content="live again")
        e = await b2.wait_for(new_message("live again"))
        assert e["seq"] == end + 1
        assert_contiguous(b2, room, seen + 1, end + 1)
        await a.close()
        await b2.close()
    run(go())


def test_resume_sent_before_ready_with_live_traffic_has_no_gap_or_duplicate(
        server, alice, bob):
    """Reconnect and resume at once while another client keeps sending: the
    replay and the live events join without a gap or a duplicate."""
    room = group(alice, bob)

    async def go():
        import asyncio
        a = await WSClient.connect(server, alice)
        b = await WSClient.connect(server, bob)
        for i in range(30):
            await a.request("message.send", room=room, content=f"first {i}")
        await b.wait_for(new_message("first 29"))
        seen = b.last_seq(room)
        b.abort()
        await b.wait_closed(5)
        for i in range(50):
            await a.request("message.send", room=room, content=f"away {i}")

        stop = asyncio.Event()

        async def keep_sending():
            n = 0
            while not stop.is_set() or n < 20:
                await a.request("message.send", room=room, content=f"live {n}")
                n += 1
            return n

        sender = asyncio.ensure_future(keep_sending())
        b2 = await WSClient.connect(server, bob, ready=False, name="bob-2")
        ref, cmd = b2.command("resume", rooms={room: seen})
        await b2.send(cmd)
        ack = await b2.answer(ref)
        assert ack["type"] == "ack", ack
        stop.set()
        n = await sender
        end = last_seq(server, room)
        await b2.wait_for(lambda e: e.get("room") == room and e.get("seq") == end)
        assert_contiguous(b2, room, seen + 1, end)
        assert end == seen + 50 + n
        await a.close()
        await b2.close()
    run(go(), 60)


def test_resume_of_a_large_backlog_is_paged_and_complete(server, alice, bob):
    """Over 2 MiB of missed events (replies come in 512 KiB pages): all of
    them arrive, in order, and the connection is not cut off as slow."""
    room = group(alice, bob)
    big = "x" * 9000

    async def go():
        a = await WSClient.connect(server, alice)
        seen = last_seq(server, room)
        answers = await a.pipeline([("message.send", {"room": room, "content": f"{i} {big}"})
                                    for i in range(250)])
        assert all(x["type"] == "ack" for x in answers)
        end = last_seq(server, room)
        assert end == seen + 250
        b = await WSClient.connect(server, bob)
        ack = await b.request("resume", rooms={room: seen}, timeout=60)
        assert ack["type"] == "ack"
        assert_contiguous(b, room, seen + 1, end)
        assert [e["message"]["content"].split()[0] for e in b.of_type("message.new", room)] \
            == [str(i) for i in range(250)]
        assert not b.closed
        await a.close()
        await b.close()
    run(go(), 120)


def test_resume_more_than_5000_behind_is_truncated_then_pages_over_rest(server, alice, bob):
    room = group(alice, bob)
    seen = last_seq(server, room)

    async def go():
        a = await WSClient.connect(server, alice)
        answers = await a.pipeline([("message.send", {"room": room, "content": f"m{i}"})
                                    for i in range(5003)], window=200)
        assert all(x["type"] == "ack" for x in answers)
        await a.close()
    run(go(), 180)
    end = last_seq(server, room)
    assert end == seen + 5003

    async def resume():
        b = await WSClient.connect(server, bob)
        ack = await b.request("resume", rooms={room: seen})
        trunc = b.of_type("resume.truncated")
        assert trunc == [{"type": "resume.truncated", "room": room,
                          "from_seq": seen + 1, "to_seq": end}]
        assert not room_events(b.events, room)     # nothing replayed: REST pages it
        assert b.events.index(ack) > b.events.index(trunc[0])
        # live events continue after to_seq
        post(alice, room, "after truncation")
        e = await b.wait_for(new_message("after truncation"))
        assert e["seq"] == end + 1
        assert seqs(b.events, room) == [end + 1]
        await b.close()
    run(resume())

    # the same events page over REST
    got, url = [], f"{ROOMS}{room}/events/?after_seq={seen}&page_size=1000"
    while url:
        r = bob.get(url)
        assert r.status_code == 200, r.text
        got += r.json()["results"]
        url = r.json()["next"]
    assert [e["seq"] for e in got] == list(range(seen + 1, end + 2))

    # 5000 behind is not truncated
    async def exact():
        b = await WSClient.connect(server, bob)
        await b.request("resume", rooms={room: end + 1 - 5000}, timeout=60)
        assert not b.of_type("resume.truncated")
        assert_contiguous(b, room, end + 2 - 5000, end + 1)
        await b.close()
    run(exact(), 120)


def test_resume_validation(server, alice, bob, carol):
    room = group(alice, bob)
    foreign = group(carol)

    async def go():
        b = await WSClient.connect(server, bob)
        for rooms in ("not a map", {room: "1"}, {room: -1}, {"not-a-uuid": 1}, None):
            cmd = {"rooms": rooms} if rooms is not None else {}
            err = await b.request("resume", expect="error", **cmd)
            assert err["code"] == "invalid", err
        # a room the caller is not in replays nothing
        await b.request("resume", rooms={foreign: 0})
        assert not room_events(b.events, foreign)
        # an empty map is a no-op
        await b.request("resume", rooms={})
        # the socket still works, and the room still delivers
        post(alice, room, "still here")
        await b.wait_for(new_message("still here"))
        await b.close()
    run(go())


# ----------------------------------------------------------- malformed input --

def test_malformed_frames_get_errors_and_the_socket_stays_usable(server, alice, bob):
    room = group(alice, bob)

    async def go():
        ws = await WSClient.connect(server, alice)

        async def error_for(raw):
            n = len(ws.events)
            await ws.send_raw(raw)
            return await ws.wait_for(is_type("error"), start=n)

        for raw in ("{not json", "[1, 2]", '"text"', "42", "null", "", "{}",
                    '{"type": 5}', '{"ref": "x"}'):
            err = await error_for(raw)
            assert err["code"] == "invalid", (raw, err)
            assert isinstance(err["detail"], str) and err["detail"]
        err = await error_for(b"\x01\x02binary")
        assert err["code"] == "invalid"
        err = await ws.request("no.such.command", expect="error")
        assert err["code"] == "unknown_type"
        for fields, code in [({}, "invalid"),
                             ({"room": room}, "invalid"),
                             ({"room": "not-a-uuid", "content": "x"}, "invalid"),
                             ({"room": str(uuid.uuid4()), "content": "x"}, "not_found"),
                             ({"room": room, "content": "   "}, "invalid"),
                             ({"room": room, "content": "x" * 10001}, "invalid"),
                             ({"room": room, "content": 5}, "invalid"),
                             ({"room": room, "content": "x", "message_type": "nope"},
                              "invalid")]:
            err = await ws.request("message.send", expect="error", **fields)
            assert err["code"] == code, (fields, err)
        for type_, fields in [("message.edit", {"message": "x", "content": "y"}),
                              ("message.delete", {}),
                              ("read", {"room": 1}),
                              ("reaction.add", {"message": str(uuid.uuid4())}),
                              ("reaction.remove", {"emoji": "x"}),
                              ("presence.set", {"status": "sleeping"}),
                              ("typing.start", {})]:
            err = await ws.request(type_, expect="error", **fields)
            assert err["code"] in ("invalid", "not_found"), (type_, err)
        # still healthy: commands work and events arrive
        ack = await ws.request("message.send", room=room, content="still fine")
        await ws.wait_for(new_message("still fine"))
        assert ack["message"]["content"] == "still fine"
        assert not ws.closed
        await ws.close()
    run(go())


def test_fragmented_command_is_reassembled(server, alice, bob):
    room = group(alice, bob)

    async def go():
        ws = await WSClient.connect(server, alice)
        text = json.dumps({"type": "message.send", "ref": "frag", "room": room,
                           "content": "in " + "pieces " * 1400})
        await ws.send_raw([text[i:i + 1000] for i in range(0, len(text), 1000)])
        ack = await ws.answer("frag")
        assert ack["type"] == "ack", ack
        assert ack["message"]["content"].startswith("in pieces")
        await ws.close()
    run(go())


def test_frame_over_64_kib_closes_1009(server, alice, bob):
    room = group(alice, bob)

    async def go():
        ws = await WSClient.connect(server, alice)
        near = json.dumps({"type": "ping", "ref": "p", "pad": "y" * 60000})
        assert len(near) < 64 * 1024
        await ws.send_raw(near)
        assert (await ws.answer("p"))["type"] == "pong"
        await ws.send_raw(json.dumps({"type": "message.send", "room": room,
                                      "content": "z" * (65 * 1024)}))
        assert await ws.wait_closed(5) == 1009
        # other connections are unaffected
        async with await WSClient.connect(server, alice) as again:
            assert (await again.request("ping"))["type"] == "pong"
    run(go())


def test_invalid_utf8_text_frame_closes_1007(server, alice):
    """A text frame that is not UTF-8 breaks the WebSocket protocol itself
    (RFC 6455 §8.1): the server closes with 1007 rather than answering."""
    async def go():
        ws = await WSClient.connect(server, alice)
        # websockets refuses to send invalid UTF-8 as text: write the frame by hand
        await ws.ws.write_frame(True, OP_TEXT, b'{"type":"ping","x":"\xff\xfe"}')
        assert await ws.wait_closed(5) == 1007
    run(go())


# ------------------------------------------------------------------ msgpack --

def test_msgpack_subprotocol(server, alice, bob):
    room = group(alice, bob)

    async def go():
        m = await WSClient.connect(server, alice, msgpack_=True, name="alice-mp")
        assert m.ws.subprotocol == "parley.msgpack"
        j = await WSClient.connect(server, bob, name="bob-json")
        ack = await m.request("message.send", room=room, content="packed ✓")
        assert ack["message"]["content"] == "packed ✓"
        e_mp = await m.wait_for(new_message("packed ✓"))
        e_js = await j.wait_for(new_message("packed ✓"))
        assert e_mp == e_js                                   # the same maps
        post(bob, room, "from json land")
        e = await m.wait_for(new_message("from json land"))
        assert e["message"]["sender"] == bob.id
        # errors in msgpack too; a text frame or a non-map is refused politely
        err = await m.request("message.send", expect="error", room=room)
        assert err["code"] == "invalid"
        import msgpack as mp
        n = len(m.events)
        await m.send_raw(mp.packb([1, 2, 3]))
        assert (await m.wait_for(is_type("error"), start=n))["code"] == "invalid"
        n = len(m.events)
        await m.send_raw(b"\xc1")                             # never valid msgpack
        assert (await m.wait_for(is_type("error"), start=n))["code"] == "invalid"
        assert (await m.request("ping"))["type"] == "pong"
        await m.close()
        await j.close()
    run(go())
