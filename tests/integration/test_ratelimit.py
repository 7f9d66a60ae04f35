"""Per-user send rate limit (API.md §6): REST answers 429 with Retry-After,
WebSocket answers `error` code `rate_limited` and stays open; nothing is
created by a refused send; other users are not affected; tokens refill."""
import time

from wsclient import WSClient, run

PARLEY_SETTINGS = {"rate_limit_per_sec": 2, "rate_limit_burst": 3}


def _room(server, owner, *others):
    r = owner.post("/api/messaging/rooms/", json={
        "name": "limits", "room_type": "group", "participants": [u.id for u in others]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _count(server, room):
    return int(server.sql_value("SELECT count(*) FROM messages WHERE room_id = %s", room))


def test_rest_burst_then_429_with_retry_after(server):
    alice, bob = server.user(), server.user()
    room = _room(server, alice, bob)
    for i in range(3):
        r = alice.post("/api/messaging/messages/", json={"room": room, "content": f"m{i}"})
        assert r.status_code == 201, r.text
    refused = alice.post("/api/messaging/messages/", json={"room": room, "content": "too many"})
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert "detail" in refused.json()
    assert _count(server, room) == 3          # the refused send created nothing
    # another user has a bucket of their own
    assert bob.post("/api/messaging/messages/",
                    json={"room": room, "content": "bob"}).status_code == 201


def test_tokens_refill(server):
    alice, bob = server.user(), server.user()
    room = _room(server, alice, bob)
    statuses = [alice.post("/api/messaging/messages/",
                           json={"room": room, "content": "x"}).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    deadline = time.monotonic() + 5           # 2 tokens/s: one is back within 0.5 s
    while True:
        r = alice.post("/api/messaging/messages/", json={"room": room, "content": "again"})
        if r.status_code == 201:
            break
        assert r.status_code == 429 and time.monotonic() < deadline, r.text


def test_websocket_rate_limited_error_keeps_socket(server):
    alice, bob = server.user(), server.user()
    room = _room(server, alice, bob)

    async def scenario():
        async with await WSClient.connect(server, alice) as ws:
            for i in range(3):
                await ws.request("message.send", room=room, content=f"w{i}")
            error = await ws.request("message.send", expect="error", room=room, content="no")
            assert error["code"] == "rate_limited", error
            pong = await ws.request("ping")
            assert pong["type"] == "pong"

    run(scenario(), timeout=60)
    assert _count(server, room) == 3
