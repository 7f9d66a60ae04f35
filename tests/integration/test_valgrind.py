"""parleyd under valgrind: start-up, REST and WebSocket traffic, and a clean
stop leave no memory errors and no definite leaks (the foundation issue asks
for a valgrind-clean start/stop cycle)."""
import asyncio
import json
import os
import re

import pytest
import websockets

# valgrind cannot run an ASan build; the sanitizers check that build instead
pytestmark = pytest.mark.skipif(os.environ.get("PARLEY_SANITIZE", "0") in ("1", "ON", "on", "yes", "true"),
                                reason="the ASan+UBSan build is checked by the sanitizers")

VALGRIND = ["valgrind", "--quiet", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--error-exitcode=9",
            "--trace-children=no"]


def _traffic(srv):
    alice, bob = srv.user(), srv.user()
    room = alice.post("/api/messaging/rooms/", json={
        "name": "valgrind", "room_type": "group", "participants": [bob.id]})
    assert room.status_code == 201, room.text
    room_id = room.json()["id"]

    async def next_events(sock):
        frame = json.loads(await asyncio.wait_for(sock.recv(), 30))
        return frame if isinstance(frame, list) else [frame]

    async def ws():
        async with websockets.connect(srv.ws_url + "?token=" + bob.token) as sock:
            while not any(e.get("type") == "ready" for e in await next_events(sock)):
                pass
            sent = alice.post("/api/messaging/messages/", json={"room": room_id, "content": "hi"})
            assert sent.status_code == 201, sent.text
            deadline = asyncio.get_event_loop().time() + 30
            while asyncio.get_event_loop().time() < deadline:
                if any(e.get("type") == "message.new" for e in await next_events(sock)):
                    return
            raise AssertionError("message.new never arrived")

    asyncio.run(ws())
    assert srv.get("/api/messaging/rooms/", token=alice).status_code == 200
    assert srv.get("/metrics").status_code == 200


def test_start_traffic_stop_is_valgrind_clean(server_factory, tmp_path):
    log = tmp_path / "valgrind.log"
    srv = server_factory(wrapper=VALGRIND + [f"--log-file={log}"], name="valgrind")
    assert srv.proc.args[0] == "valgrind"
    _traffic(srv)
    status = srv.stop(timeout=120, check=False)
    report = log.read_text() if log.exists() else ""
    assert status == 0, f"parleyd under valgrind exited {status}:\n{report[-6000:]}"
    assert not re.search(r"definitely lost: [1-9]", report), report[-6000:]
    assert "Invalid read" not in report and "Invalid write" not in report, report[-6000:]
    assert os.path.getsize(srv.log_path) > 0
