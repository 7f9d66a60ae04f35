"""A small asyncio WebSocket client for Parley's integration tests (API.md §3).

    async with WSClient.connect(server, user) as ws:       # ?token=, waits for "ready"
        ack = await ws.request("message.send", room=room, content="hi")
        event = await ws.wait_for(lambda e: e.get("type") == "message.new")

Every frame the server sends is parsed (JSON text, or msgpack binary with the
`parley.msgpack` subprotocol) and flattened: a frame holding an array of
events (coalesced) adds each of them to `events`, in order.  A background
task reads the socket all the time, so a client never looks slow to the
server unless a test wants it to; waiting never sleeps blindly: it waits for
the next frame (or the close) with a deadline.

`run(coro, timeout)` runs one test coroutine on a fresh event loop, bounded.
`RawWS` is a bare socket client (own handshake and framing) for the
slow-consumer test: it does not read until told to.
"""

import asyncio
import base64
import itertools
import json
import os
import socket
import struct
import time

import msgpack
import websockets
from websockets.exceptions import ConnectionClosed

DEFAULT_TIMEOUT = 10.0
_refs = itertools.count(1)


def run(coro, timeout=120.0):
    """Runs `coro` to completion within `timeout` seconds (fails otherwise)."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def room_events(events, room=None):
    """The room events (those with a seq) among `events`, of one room or all."""
    return [e for e in events if isinstance(e, dict) and "seq" in e
            and (room is None or e.get("room") == room)]


def seqs(events, room=None):
    return [e["seq"] for e in room_events(events, room)]


class WSTimeout(AssertionError):
    pass


class WSClient:
    """One WebSocket connection with a background reader."""

    def __init__(self, ws, name="ws", binary=False):
        self.ws = ws
        self.name = name
        self.binary = binary
        self.events = []          # every event, flattened, in arrival order
        self.frames = 0           # frames received
        self.arrays = 0           # of which were arrays (coalesced)
        self.closed = False
        self.close_code = None
        self.close_reason = None
        self.error = None         # a parse error in a server frame
        self._wake = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    # --- opening

    @classmethod
    async def connect(cls, server, user=None, *, auth="query", token=None, msgpack_=False,
                      ready=True, name=None, timeout=DEFAULT_TIMEOUT, **kw):
        """Opens server.ws_url as `user`.  auth: "query" (?token=), "cookie"
        (the sessionid cookie of the user's login), "frame" (a first
        {"type":"auth"} frame) or None (nothing).  `token` overrides the
        user's access token.  With ready, waits for the "ready" event.
        rcvbuf=N sets the socket's SO_RCVBUF; other keywords go to
        websockets.connect."""
        url = server.ws_url
        headers = dict(kw.pop("extra_headers", None) or {})
        tok = token if token is not None else (user.token if user is not None else None)
        if auth == "query":
            url += "?token=" + tok
        elif auth == "cookie":
            headers["Cookie"] = f"sessionid={user.cookies['sessionid']}"
        kw.setdefault("ping_interval", None)
        kw.setdefault("max_size", None)
        kw.setdefault("close_timeout", 2)
        kw.setdefault("open_timeout", timeout)
        if msgpack_:
            kw["subprotocols"] = ["parley.msgpack"]
        rcvbuf = kw.pop("rcvbuf", None)
        if rcvbuf:
            # a small receive buffer: the kernel absorbs little, so the
            # server's own queue bound is what a burst meets
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (server.host, server.port))
            kw["sock"] = sock
        ws = await websockets.connect(url, extra_headers=headers, **kw)
        client = cls(ws, name or (user.username if user is not None else "anon"),
                     binary=msgpack_)
        if auth == "frame":
            await client.send({"type": "auth", "token": tok})
        if ready:
            await client.wait_for(lambda e: e.get("type") == "ready", timeout,
                                  what="the ready event")
        return client

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    # --- reading

    def _parse(self, message):
        if isinstance(message, bytes):
            return msgpack.unpackb(message, raw=False)
        return json.loads(message)

    async def _read(self):
        try:
            async for message in self.ws:
                try:
                    data = self._parse(message)
                except Exception as exc:  # noqa: BLE001 - reported by wait_for
                    self.error = f"unparsable frame {message[:200]!r}: {exc!r}"
                    data = None
                self.frames += 1
                if isinstance(data, list):
                    self.arrays += 1
                    self.events.extend(data)
                elif data is not None:
                    self.events.append(data)
                self._notify()
        except ConnectionClosed:
            pass
        except Exception as exc:  # noqa: BLE001
            self.error = self.error or repr(exc)
        finally:
            self.closed = True
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason
            self._notify()

    def _notify(self):
        self._wake.set()
        self._wake = asyncio.Event()

    async def wait_for(self, predicate, timeout=DEFAULT_TIMEOUT, start=0, what=None):
        """The first event (from index `start`) for which predicate is true;
        waits for more frames up to `timeout`.  Fails on timeout or when the
        connection closes first."""
        deadline = time.monotonic() + timeout
        i = start
        while True:
            wake = self._wake
            while i < len(self.events):
                e = self.events[i]
                i += 1
                if isinstance(e, dict) and predicate(e):
                    return e
            if self.error:
                raise AssertionError(f"{self.name}: {self.error}")
            if self.closed:
                raise AssertionError(f"{self.name}: closed ({self.close_code} "
                                     f"{self.close_reason!r}) while waiting for "
                                     f"{what or predicate}; events: {self.tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise WSTimeout(f"{self.name}: no {what or 'matching event'} within "
                                f"{timeout} s; last events: {self.tail()}")
            try:
                await asyncio.wait_for(wake.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def wait_count(self, predicate, count, timeout=DEFAULT_TIMEOUT, what=None):
        """Waits until `count` events match; returns them."""
        found = []

        def enough(e):
            if predicate(e):
                found.append(e)
            return len(found) >= count
        try:
            await self.wait_for(enough, timeout, what=what)
        except WSTimeout:
            raise WSTimeout(f"{self.name}: {len(found)} of {count} {what or 'events'} "
                            f"within {timeout} s; last events: {self.tail()}") from None
        return found

    async def expect_none(self, predicate, within, start=None):
        """Fails if an event matching predicate arrives within `within`
        seconds (looking from index `start`, by default from the events not
        received yet); waits on the socket meanwhile."""
        if start is None:
            start = len(self.events)
        try:
            e = await self.wait_for(predicate, within, start=start)
        except WSTimeout:
            return
        raise AssertionError(f"{self.name}: unexpected event {e}")

    async def wait_closed(self, timeout=DEFAULT_TIMEOUT):
        """Waits for the connection to close; returns the close code."""
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        except asyncio.TimeoutError:
            raise WSTimeout(f"{self.name}: still open after {timeout} s") from None
        return self.close_code

    def tail(self, n=8):
        text = json.dumps(self.events[-n:], default=str)
        return text if len(text) < 3000 else text[:3000] + "..."

    def of_type(self, type_, room=None):
        return [e for e in self.events if isinstance(e, dict) and e.get("type") == type_
                and (room is None or e.get("room") == room)]

    def last_seq(self, room):
        s = seqs(self.events, room)
        return s[-1] if s else None

    # --- writing

    async def send(self, obj):
        """Sends one command object (JSON text, or msgpack binary)."""
        if self.binary:
            await self.ws.send(msgpack.packb(obj, use_bin_type=True))
        else:
            await self.ws.send(json.dumps(obj))

    async def send_raw(self, data):
        await self.ws.send(data)

    def command(self, type_, **fields):
        """Builds a command with a fresh ref; returns (ref, command)."""
        ref = f"r{next(_refs)}"
        return ref, dict(fields, type=type_, ref=ref)

    async def answer(self, ref, timeout=DEFAULT_TIMEOUT):
        """The ack or error carrying `ref`."""
        return await self.wait_for(
            lambda e: e.get("type") in ("ack", "error", "pong") and e.get("ref") == ref,
            timeout, what=f"answer to {ref}")

    async def request(self, type_, timeout=DEFAULT_TIMEOUT, expect="ack", **fields):
        """Sends a command and returns its answer; with expect ("ack" or
        "error", None for either) asserts the answer's type."""
        ref, cmd = self.command(type_, **fields)
        await self.send(cmd)
        reply = await self.answer(ref, timeout)
        if type_ == "ping" and expect == "ack":
            expect = "pong"
        if expect is not None:
            assert reply["type"] == expect, f"{self.name}: {type_} {fields} -> {reply}"
        return reply

    async def pipeline(self, commands, window=20, timeout=30):
        """Sends commands (type, fields) with up to `window` unanswered at a
        time, as a well-behaved client does; returns the answers in order."""
        answers = [None] * len(commands)
        sem = asyncio.Semaphore(window)

        async def one(i, ref):
            try:
                answers[i] = await self.answer(ref, timeout)
            finally:
                sem.release()
        tasks = []
        for i, (type_, fields) in enumerate(commands):
            await sem.acquire()
            ref, cmd = self.command(type_, **fields)
            await self.send(cmd)
            tasks.append(asyncio.ensure_future(one(i, ref)))
        await asyncio.gather(*tasks)
        return answers

    async def close(self):
        if not self.closed:
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except Exception:  # noqa: BLE001
                pass
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), 5)
        except Exception:  # noqa: BLE001
            self._reader.cancel()

    def abort(self):
        """Drops the TCP connection without a closing handshake (a crash,
        a network cut)."""
        self.ws.transport.abort()


# ---------------------------------------------------------------- raw client --

class RawWS:
    """A WebSocket client on a plain blocking socket: its own handshake, no
    background reading.  rcvbuf sets SO_RCVBUF before connecting, so that a
    client that does not read fills up quickly."""

    def __init__(self, server, token, rcvbuf=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((server.host, server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /ws/?token={token} HTTP/1.1\r\n"
                   f"Host: {server.host}:{server.port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError("connection closed during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.events = []
        self.close_code = None
        self.eof = False

    def send(self, obj):
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _parse(self):
        """Consumes complete frames from the buffer."""
        while True:
            if len(self.buf) < 2:
                return
            b0, b1 = self.buf[0], self.buf[1]
            n = b1 & 0x7F
            pos = 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n = struct.unpack("!H", self.buf[2:4])[0]
                pos = 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n = struct.unpack("!Q", self.buf[2:10])[0]
                pos = 10
            if len(self.buf) < pos + n:
                return
            payload = self.buf[pos:pos + n]
            self.buf = self.buf[pos + n:]
            opcode = b0 & 0x0F
            if opcode == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            elif opcode == 0x1:
                data = json.loads(payload)
                self.events.extend(data if isinstance(data, list) else [data])

    def read_until(self, predicate, timeout=10.0):
        """Reads (without waiting for the close) until an event satisfies
        predicate; returns it."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for e in self.events[seen:]:
                if predicate(e):
                    return e
            seen = len(self.events)
            if self.eof or self.close_code is not None:
                raise AssertionError(f"closed ({self.close_code}) while reading")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching event within {timeout} s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            if not chunk:
                self.eof = True
            self.buf += chunk
            self._parse()

    def drain(self, timeout=10.0):
        """Reads until the server closes the connection (or `timeout`);
        returns the close code (None when no close frame came)."""
        deadline = time.monotonic() + timeout
        while not self.eof and self.close_code is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the server did not close the slow connection "
                                     f"within {timeout} s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.eof = True
            self.buf += chunk
            self._parse()
        return self.close_code

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
