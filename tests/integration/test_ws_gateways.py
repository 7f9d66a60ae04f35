"""Several gateway actors on one port (gateway_threads = 2): each listens on
its own SO_REUSEPORT socket and the kernel spreads new connections over
them; every actor sends room events to every gateway, so each connection
gets every event of its rooms once and in seq order, whichever gateway
holds it. Also: commands larger than the gateway's per-connection receive
buffer (512 bytes; lws hands them over in pieces) are reassembled.
"""

import asyncio
import uuid

from wsclient import WSClient, run, seqs

PARLEY_SETTINGS = {"gateway_threads": 2}

ROOMS = "/api/messaging/rooms/"
MESSAGES = "/api/messaging/messages/"


def test_rest_and_websocket_events_reach_connections_on_every_gateway(server):
    users = [server.user() for _ in range(4)]
    owner = users[0]
    r = owner.post(ROOMS, json={"name": "gw-" + uuid.uuid4().hex[:8], "room_type": "group",
                                "participants": [u.id for u in users[1:]]})
    assert r.status_code == 201, r.text
    room = r.json()["id"]
    # many short REST requests: every one is accepted, on whichever gateway
    for _ in range(20):
        assert owner.get(ROOMS + room + "/").status_code == 200

    async def scenario():
        # 12 connections (3 per user): both gateways hold some of them
        clients = [await WSClient.connect(server, u, name=f"{u.username}-{i}")
                   for u in users for i in range(3)]
        try:
            sender = clients[1]
            big = "x" * 3000                     # > the 512-byte receive buffer
            refs = []
            for i in range(10):
                ref, cmd = sender.command("message.send", room=room,
                                          content=f"m{i} " + (big if i % 3 == 0 else ""))
                await sender.send(cmd)
                refs.append(ref)
            for ref in refs:
                reply = await sender.answer(ref)
                assert reply["type"] == "ack", reply
            for i in range(5):
                r = await asyncio.to_thread(owner.post, MESSAGES,
                                            json={"room": room, "content": f"rest {i}"})
                assert r.status_code == 201, r.text
            for c in clients:
                await c.wait_count(lambda e: e.get("type") == "message.new"
                                   and e.get("room") == room, 15)
            first = seqs(clients[0].events, room)
            assert len(first) == 15 and first == sorted(first) and len(set(first)) == 15
            for c in clients:
                assert seqs(c.events, room) == first, c.name
            contents = [e["message"]["content"] for e in clients[0].events
                        if e.get("type") == "message.new"]
            assert contents[0] == "m0 " + big
        finally:
            for c in clients:
                await c.close()

    run(scenario())
