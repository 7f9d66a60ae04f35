"""API.md §2.2 and §3 — kill -9 of parleyd while WebSocket clients send:
every acknowledged message is in PostgreSQL after the restart, every event
a client saw before the crash was committed, and a client that reconnects
and resumes from the last seq it saw gets exactly the rest (no gap, no
duplicate).  Sends that were not acknowledged are retried with the same
client_id: each client_id ends up as exactly one message.
"""

import asyncio
import uuid

from wsclient import WSClient, run, seqs, room_events

ROOMS = "/api/messaging/rooms/"
MESSAGES = "/api/messaging/messages/"


def group(owner, *others):
    r = owner.post(ROOMS, json={"name": "crash-" + uuid.uuid4().hex[:8], "room_type": "group",
                                "participants": [o.id for o in others]})
    assert r.status_code == 201, r.text
    return r.json()


async def sender(ws, room, tag, acked, pending, stop):
    """Sends without waiting for answers (a window of 20), until `stop` or the
    connection dies. acked: client_id -> message; pending: client_id -> ref."""
    window = asyncio.Semaphore(20)
    i = 0

    async def collect(cid, ref):
        try:
            reply = await ws.answer(ref, 60)
        except AssertionError:        # the connection died first: unknown fate
            return
        finally:
            window.release()
        if reply["type"] == "ack":
            acked[cid] = reply["message"]
            pending.pop(cid, None)

    tasks = []
    while not stop.is_set() and not ws.closed:
        await window.acquire()
        cid = f"{tag}-{i}"
        ref, cmd = ws.command("message.send", room=room, content=f"{tag} {i}", client_id=cid)
        pending[cid] = ref
        try:
            await ws.send(cmd)
        except Exception:  # noqa: BLE001 - the server is gone
            window.release()
            break
        tasks.append(asyncio.ensure_future(collect(cid, ref)))
        i += 1
    await asyncio.gather(*tasks)


def test_kill_9_while_clients_send_loses_nothing_acknowledged(server):
    users = [server.user() for _ in range(3)]
    watcher_user = server.user()
    room_obj = group(users[0], *users[1:], watcher_user)
    room, start = room_obj["id"], room_obj["last_seq"]
    acked, pending = {}, {}
    before = {}                      # client name -> events before the crash

    async def phase1():
        clients = [await WSClient.connect(server, u, name=f"s{n}")
                   for n, u in enumerate(users)]
        watcher = await WSClient.connect(server, watcher_user, name="watcher")
        stop = asyncio.Event()
        senders = [asyncio.ensure_future(sender(ws, room, ws.name, acked, pending, stop))
                   for ws in clients]
        # let them run until a good number is acknowledged, then crash
        while len(acked) < 300:
            await asyncio.sleep(0.01)   # the senders run meanwhile
            assert not any(s.done() for s in senders), [s.exception() for s in senders]
        server.kill()                   # SIGKILL with sends in flight
        stop.set()
        await asyncio.gather(*senders)
        for ws in clients + [watcher]:
            await ws.wait_closed(10)
            before[ws.name] = list(ws.events)
        return [ws.name for ws in clients] + ["watcher"]

    names = run(phase1(), 120)
    assert len(acked) >= 300
    assert server.exit_codes[-1] == -9

    server.start()                      # same database, ports, var dir

    # every acknowledged message is there
    committed = {row[0]: int(row[1]) for row in server.sql(
        "SELECT client_id, seq FROM messages WHERE room_id = %s", room)}
    missing = [cid for cid in acked if cid not in committed]
    assert not missing, f"{len(missing)} acknowledged messages lost: {missing[:10]}"
    for cid, msg in acked.items():
        assert committed[cid] == msg["seq"], cid
    # every event a client saw before the crash was committed
    for name in names:
        for e in room_events(before[name], room):
            if e["type"] == "message.new":
                assert committed.get(e["message"]["client_id"]) == e["seq"], e
    end = int(server.sql_value("SELECT last_seq FROM rooms WHERE id = %s", room))

    async def phase2():
        by_name = dict(zip(names, users + [watcher_user]))
        for name in names:
            last = max(seqs(before[name], room), default=start)
            ws = await WSClient.connect(server, by_name[name], ready=False, name=name)
            ref, cmd = ws.command("resume", rooms={room: last})
            await ws.send(cmd)              # at once: replayed before anything live
            assert (await ws.answer(ref, 30))["type"] == "ack"
            combined = seqs(before[name], room) + seqs(ws.events, room)
            assert combined == list(range(start + 1, end + 1)), \
                f"{name}: {len(combined)} events, want {start + 1}..{end}"
            # the resumed events are the stored ones
            r = by_name[name].get(f"{ROOMS}{room}/events/",
                                  params={"after_seq": last, "page_size": 1000})
            assert r.status_code == 200, r.text
            stored = r.json()["results"]
            while r.json()["next"]:
                r = by_name[name].get(r.json()["next"])
                stored += r.json()["results"]
            assert room_events(ws.events, room) == stored
            await ws.close()

        # retry what was never acknowledged, with the same client_id
        retried = 0
        for n, user in enumerate(users):
            ws = await WSClient.connect(server, user, name=f"retry-{n}")
            for cid in sorted(c for c in pending if c.startswith(f"s{n}-") and c not in acked):
                reply = await ws.request("message.send", room=room,
                                         content=f"s{n} {cid.split('-')[1]}", client_id=cid)
                if cid in committed:        # it had committed, its ack was lost
                    assert reply["message"]["seq"] == committed[cid]
                retried += 1
            await ws.close()
        return retried

    retried = run(phase2(), 120)
    assert retried > 0, "no send was in flight at the crash"
    dupes = server.sql("SELECT sender_id, client_id, count(*) FROM messages WHERE room_id = %s"
                       " GROUP BY 1, 2 HAVING count(*) > 1", room)
    assert dupes == []
    # and REST agrees with the acks
    for cid, msg in list(acked.items())[::25]:
        r = users[0].get(f"{MESSAGES}{msg['id']}/")
        assert r.status_code == 200 and r.json()["client_id"] == cid, r.text


def test_rooms_cold_after_restart_deliver_concurrent_first_events_in_order(server):
    """After a restart the room shards know nothing of a room's seq: its
    first events can arrive out of order from different persisters (a
    message is routed by room, a reaction by user); none may be lost."""
    alice, bob = server.user(), server.user()
    rooms = []
    for _ in range(8):
        room_obj = group(alice, bob)
        r = alice.post(MESSAGES, json={"room": room_obj["id"], "content": "seed"})
        assert r.status_code == 201, r.text
        rooms.append((room_obj["id"], r.json()["id"]))
    server.restart()

    async def go():
        a = await WSClient.connect(server, alice, name="alice")
        b = await WSClient.connect(server, bob, name="bob")
        starts = {room: int(server.sql_value("SELECT last_seq FROM rooms WHERE id = %s", room))
                  for room, _ in rooms}
        commands_a = []
        commands_b = []
        for room, seed in rooms:
            for i in range(6):
                commands_a.append(("message.send", {"room": room, "content": f"m{i}"}))
                commands_b.append(("reaction.add", {"message": seed, "emoji": f"r{i}"}))
        answers = await asyncio.gather(a.pipeline(commands_a, window=50),
                                       b.pipeline(commands_b, window=50))
        assert all(x["type"] == "ack" for batch in answers for x in batch)
        for room, _ in rooms:
            end = starts[room] + 12
            for ws in (a, b):
                await ws.wait_for(lambda e, r=room, s=end: e.get("room") == r
                                  and e.get("seq") == s, 10)
                assert seqs(ws.events, room) == list(range(starts[room] + 1, end + 1)), \
                    (ws.name, room, seqs(ws.events, room))
        await a.close()
        await b.close()
    run(go(), 60)
