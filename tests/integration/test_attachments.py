"""Media (API.md §2.7, §2.2 inline files): uploads by multipart, alone or with
a message; the type sniffed from the bytes and checked against
message_type; the size limit, refused while the body streams; storage
(random names, nothing half-written left behind); image sizes and
thumbnails; who may download; response headers; byte ranges; deleting the
message removes access (and, soon after, the bytes).

The module's server has upload_max = 256 KiB; the streaming-memory test
runs its own server with the default 25 MiB.  Test files are made here: a
PNG by hand (zlib + struct), a WAV header, /bin/true as an executable.
"""

import concurrent.futures
import os
import re
import socket
import struct
import uuid
import zlib

import pytest
import requests

from conftest import wait_until

ROOMS = "/api/messaging/rooms/"
MESSAGES = "/api/messaging/messages/"
ATTACHMENTS = "/api/messaging/attachments/"
UPLOAD_MAX = 256 * 1024

PARLEY_SETTINGS = {"upload_max": UPLOAD_MAX}

ATTACHMENT_FIELDS = {"id", "url", "name", "mime", "size", "width", "height",
                     "thumbnail_url", "created_at"}


# ----------------------------------------------------------------- helpers --

def png(width, height, alpha=False):
    """A valid PNG (8-bit RGB or RGBA) with a gradient."""
    channels = 4 if alpha else 3
    row = bytes((i * 7) % 256 for i in range(width * channels))
    raw = b"".join(b"\x00" + row[y % 5:] + row[:y % 5] for y in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def jpeg_size(data):
    """(width, height) from a JPEG's start-of-frame segment."""
    assert data[:2] == b"\xff\xd8"
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    raise AssertionError("no SOF in the JPEG")


def wav(samples=6000):
    body = bytes((i * 13) % 256 for i in range(samples))
    return (b"RIFF" + struct.pack("<I", 36 + samples) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 8000, 1, 8)
            + b"data" + struct.pack("<I", samples) + body)


def executable():
    with open("/bin/true", "rb") as f:
        return f.read()


def group(user, *others, **body):
    body.setdefault("name", "room-" + uuid.uuid4().hex[:8])
    r = user.post(ROOMS, json={"participants": [o.id for o in others], **body})
    assert r.status_code == 201, r.text
    return r.json()


def upload(user, data, name="file.bin", content_type="application/octet-stream",
           expect=201, **fields):
    r = user.post(ATTACHMENTS, files={"file": (name, data, content_type)},
                  data={k: str(v) for k, v in fields.items()})
    assert r.status_code == expect, r.text
    return r.json()


def send_file(user, room, data, name="file.bin", message_type=None, expect=201,
              content_type="application/octet-stream", **fields):
    form = {"room": room["id"], **fields}
    if message_type:
        form["message_type"] = message_type
    r = user.post(MESSAGES, files={"file": (name, data, content_type)}, data=form)
    assert r.status_code == expect, r.text
    return r.json()


def assert_field_error(r, field):
    assert r.status_code == 400, r.text
    body = r.json()
    assert field in body and isinstance(body[field], list) and body[field], body


def assert_not_found(r):
    assert r.status_code == 404, r.text
    assert r.json() == {"detail": "Not found."}


def media_dir(server):
    return os.path.join(server.var_dir, "media")


def stored_files(server):
    """Relative paths of the files under the media dir, spool included."""
    found = []
    for root, _, files in os.walk(media_dir(server)):
        for f in files:
            found.append(os.path.relpath(os.path.join(root, f), media_dir(server)))
    return sorted(found)


def spool(server):
    return [f for f in stored_files(server) if f.startswith("incoming/")]


def rss_peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def alice(server):
    return server.user()


@pytest.fixture(scope="module")
def bob(server):
    return server.user()


@pytest.fixture(scope="module")
def carol(server):
    return server.user()


# ------------------------------------------------------------------ upload --

def test_upload_png_measured_with_thumbnail(server, alice):
    data = png(1000, 500)
    att = upload(alice, data, name="holiday.png", content_type="image/png")
    assert set(att) == ATTACHMENT_FIELDS
    assert att["mime"] == "image/png" and att["name"] == "holiday.png"
    assert att["size"] == len(data) and (att["width"], att["height"]) == (1000, 500)
    assert att["url"] == f"{server.url}{ATTACHMENTS}{att['id']}/download/"
    assert att["thumbnail_url"] == f"{server.url}{ATTACHMENTS}{att['id']}/thumbnail/"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", att["created_at"])
    assert alice.get(f"{ATTACHMENTS}{att['id']}/").json() == att

    r = alice.get(att["url"])
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert not r.headers.get("Content-Disposition", "").startswith("attachment")

    thumb = alice.get(att["thumbnail_url"])
    assert thumb.status_code == 200, thumb.text
    assert thumb.headers["Content-Type"] == "image/jpeg"
    assert thumb.headers["X-Content-Type-Options"] == "nosniff"
    assert jpeg_size(thumb.content) == (320, 160)


def test_thumbnail_keeps_alpha_and_aspect(alice):
    att = upload(alice, png(800, 400, alpha=True), name="logo.png")
    assert (att["width"], att["height"]) == (800, 400)
    thumb = alice.get(att["thumbnail_url"])
    assert thumb.headers["Content-Type"] == "image/png"
    assert png_size(thumb.content) == (320, 160)
    small = upload(alice, png(40, 30), name="icon.png")
    r = alice.get(small["thumbnail_url"])
    assert r.status_code == 200      # never enlarged
    assert (small["width"], small["height"]) == (40, 30)


def test_text_file_is_a_download(alice):
    data = "Grocery list\nmilk\neggs\n".encode()
    att = upload(alice, data, name="list.txt", content_type="image/png")
    assert att["mime"] == "text/plain"              # sniffed, not the client's word
    assert att["width"] is None and att["height"] is None and att["thumbnail_url"] is None
    r = alice.get(att["url"])
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Disposition"].startswith('attachment; filename="list.txt"')
    assert_not_found(alice.get(f"{ATTACHMENTS}{att['id']}/thumbnail/"))


def test_unicode_file_name_in_content_disposition(alice):
    att = upload(alice, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", name="../r\u00e9sum\u00e9 v2.pdf")
    assert att["name"] == "r\u00e9sum\u00e9 v2.pdf"           # no path, kept as text
    assert att["mime"] == "application/pdf"
    disposition = alice.get(att["url"]).headers["Content-Disposition"]
    assert disposition.startswith("attachment; filename=\"r__sum__ v2.pdf\"")
    assert disposition.endswith("filename*=UTF-8''r%C3%A9sum%C3%A9%20v2.pdf")


def test_executables_only_as_file(alice, bob):
    room = group(alice, bob)
    elf = executable()
    att = upload(alice, elf, name="true", message_type="file")
    assert att["mime"].startswith("application/x-") and "executable" in att["mime"] \
        or att["mime"] == "application/x-sharedlib"
    assert alice.get(att["url"]).headers["Content-Disposition"].startswith("attachment")
    for kind in ("image", "video", "audio"):
        assert_field_error(alice.post(ATTACHMENTS, files={"file": ("true.png", elf)},
                                      data={"message_type": kind}), "file")
        assert_field_error(alice.post(MESSAGES, files={"file": ("true.png", elf)},
                                      data={"room": room["id"], "message_type": kind}),
                           "file")
    msg = send_file(alice, room, elf, name="true", message_type="file")
    assert msg["message_type"] == "file" and msg["attachment"]["mime"] == att["mime"]


def test_type_sniffed_from_the_bytes(server, alice, bob):
    room = group(alice, bob)
    data = png(64, 64)
    before = int(server.sql_value("SELECT count(*) FROM attachments"))
    r = alice.post(MESSAGES, files={"file": ("clip.mp4", data, "video/mp4")},
                   data={"room": room["id"], "message_type": "video", "content": "watch"})
    assert_field_error(r, "file")
    assert "image/png" in r.json()["file"][0]
    assert_field_error(alice.post(ATTACHMENTS, files={"file": ("clip.mp4", data, "video/mp4")},
                                  data={"message_type": "video"}), "file")
    assert int(server.sql_value("SELECT count(*) FROM attachments")) == before
    assert spool(server) == []
    # without a message_type it is simply what it is
    assert upload(alice, data, name="clip.mp4", content_type="video/mp4")["mime"] == "image/png"
    # an image that is not one, an SVG, a text message with a file
    assert_field_error(alice.post(ATTACHMENTS, files={"file": ("x.png", data[:60])},
                                  data={"message_type": "image"}), "file")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"></svg>'
    assert_field_error(alice.post(ATTACHMENTS, files={"file": ("x.svg", svg)},
                                  data={"message_type": "image"}), "file")
    as_file = upload(alice, svg, name="x.svg", message_type="file")
    assert alice.get(as_file["url"]).headers["Content-Disposition"].startswith("attachment")
    assert_field_error(alice.post(MESSAGES, files={"file": ("a.png", data)},
                                  data={"room": room["id"], "message_type": "text",
                                        "content": "hi"}), "file")


def test_bad_uploads(server, alice):
    assert_field_error(alice.post(ATTACHMENTS, files={"file": ("empty.txt", b"")}), "file")
    assert_field_error(alice.post(ATTACHMENTS, files={"other": ("a.txt", b"abc")}), "file")
    assert alice.post(ATTACHMENTS, data={"message_type": "file"}).status_code == 415
    assert_field_error(alice.post(ATTACHMENTS), "file")
    assert_field_error(alice.post(ATTACHMENTS, files={"file": ("a.txt", b"abc")},
                                  data={"message_type": "sticker"}), "message_type")
    assert_field_error(alice.post(ATTACHMENTS, files=[("file", ("a.txt", b"abc")),
                                                      ("file", ("b.txt", b"def"))]), "file")
    r = alice.post(ATTACHMENTS, json={"file": "abc"})
    assert r.status_code == 415, r.text
    assert server.post(ATTACHMENTS, files={"file": ("a.txt", b"abc")}).status_code == 401
    # a body cut short: no file part end, nothing stored
    boundary = "xyzzy"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"a.txt\"\r\n\r\nhello").encode()
    r = alice.post(ATTACHMENTS, data=body + f"\r\n--{boundary}--\r\n".encode()[:3],
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 400, r.text
    assert spool(server) == []


# ------------------------------------------------------------------- limit --

def test_size_limit(server, alice):
    assert upload(alice, os.urandom(UPLOAD_MAX), name="max.bin")["size"] == UPLOAD_MAX
    # over the limit but within the slack Content-Length allows: refused while
    # streaming, once the file passes upload_max
    r = alice.post(ATTACHMENTS, files={"file": ("big.bin", os.urandom(UPLOAD_MAX + 1))})
    assert r.status_code == 413, r.text
    # a declared length far above: refused before the body is read
    r = alice.post(ATTACHMENTS, files={"file": ("huge.bin", os.urandom(4 * UPLOAD_MAX))})
    assert r.status_code == 413, r.text
    assert spool(server) == []
    assert server.alive


def test_refused_before_the_body_is_sent(server, alice):
    """413 arrives on headers alone: the client never has to send 1 GiB."""
    length = 1 << 30
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall((f"POST {ATTACHMENTS} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
                   f"Authorization: Bearer {alice.token}\r\n"
                   "Content-Type: multipart/form-data; boundary=b\r\n"
                   f"Content-Length: {length}\r\n\r\n").encode())
        answer = s.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer


def test_streamed_upload_does_not_grow_memory(server_factory):
    """25 MiB default: a 20 MiB upload streams to disk, not into memory."""
    srv = server_factory({"upload_max": None})
    user = srv.user()
    data = os.urandom(20 * 1024 * 1024)
    baseline = rss_peak_kib(srv.proc.pid)
    r = user.post(ATTACHMENTS, files={"file": ("blob.bin", data)}, timeout=60)
    assert r.status_code == 201, r.text
    att = r.json()
    assert att["size"] == len(data) and att["mime"] == "application/octet-stream"
    grown = rss_peak_kib(srv.proc.pid) - baseline
    assert grown < 8 * 1024, f"peak RSS grew by {grown} KiB for a 20 MiB upload"
    got = user.get(att["url"], timeout=60)
    assert got.status_code == 200 and got.content == data
    r = user.post(ATTACHMENTS, files={"file": ("blob.bin", os.urandom(25 * 1024 * 1024 + 1))},
                  timeout=60)
    assert r.status_code == 413, r.text


def test_concurrent_uploads(alice):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        atts = list(pool.map(lambda i: upload(alice, png(40 + i, 30), name=f"p{i}.png"),
                             range(16)))
    assert len({a["id"] for a in atts}) == 16
    assert [a["width"] for a in atts] == [40 + i for i in range(16)]


def test_keep_alive_around_uploads(server, alice):
    """A connection carries requests after an upload; after a refused one
    (its body unread) the server closes it and the client reconnects."""
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {alice.token}"
        first = s.post(server.url + ATTACHMENTS, files={"file": ("a.txt", b"one\n")})
        got = s.get(first.json()["url"])
        refused = s.post(server.url + ATTACHMENTS,
                         files={"file": ("b.bin", os.urandom(UPLOAD_MAX + 1))})
        me = s.get(server.url + "/api/auth/me/")
    assert [first.status_code, got.status_code, refused.status_code, me.status_code] \
        == [201, 200, 413, 200]
    assert got.content == b"one\n"


# ----------------------------------------------------------------- storage --

def test_stored_under_random_names(server, alice):
    att = upload(alice, png(50, 50), name="secret-plans.png")
    path, thumb = server.sql(
        "SELECT storage_path, thumb_path FROM attachments WHERE id = %s", att["id"])[0]
    assert re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{32}", path)
    assert path.startswith(path[3:5]) and thumb == path + ".thumb.jpg"
    files = stored_files(server)
    assert path in files and thumb in files
    assert not any("secret" in f for f in files)
    assert spool(server) == []


# ------------------------------------------------------------- permissions --

def test_who_may_download(server, alice, bob, carol):
    room = group(alice, bob)
    att = upload(alice, png(30, 20))
    urls = [f"{ATTACHMENTS}{att['id']}/", att["url"], att["thumbnail_url"]]
    for url in urls:                              # not posted yet: uploader only
        assert alice.get(url).status_code == 200
        assert_not_found(bob.get(url))
    r = alice.post(MESSAGES, json={"room": room["id"], "message_type": "image",
                                   "attachment": att["id"], "content": ""})
    assert r.status_code == 201, r.text
    for url in urls:                              # posted: the room's participants
        assert bob.get(url).status_code == 200
        assert_not_found(carol.get(url))
    assert server.get(att["url"]).status_code == 401
    assert_not_found(bob.get(f"{ATTACHMENTS}{uuid.uuid4()}/download/"))
    # someone else's unposted upload cannot be attached
    mine = upload(carol, png(10, 10))
    r = bob.post(MESSAGES, json={"room": room["id"], "message_type": "image",
                                 "attachment": mine["id"]})
    assert_not_found(r)


def test_public_room_visitors_see_the_message_not_the_bytes(alice, bob, carol):
    room = group(alice, bob, is_private=False)
    msg = send_file(alice, room, wav(), name="hello.wav", message_type="audio")
    assert msg["attachment"]["mime"].startswith("audio/")
    r = carol.get(f"{MESSAGES}{msg['id']}/")        # a visitor reads the room
    assert r.status_code == 200
    assert_not_found(carol.get(msg["attachment"]["url"]))
    assert bob.get(msg["attachment"]["url"]).status_code == 200


# ------------------------------------------------------------------- ranges --

def test_byte_ranges(server, alice, bob):
    room = group(alice, bob)
    data = wav(10000)
    msg = send_file(alice, room, data, name="voice.wav", message_type="audio",
                    content_type="audio/wav")
    url = msg["attachment"]["url"]
    full = bob.get(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["Content-Disposition"].startswith("attachment")
    assert full.headers["Content-Type"] == msg["attachment"]["mime"]
    size = len(data)
    cases = {"bytes=10-19": (10, 19), "bytes=100-": (100, size - 1),
             "bytes=-50": (size - 50, size - 1), "bytes=0-": (0, size - 1),
             f"bytes=5-{size + 1000}": (5, size - 1)}
    for header, (first, last) in cases.items():
        r = bob.get(url, headers={"Range": header})
        assert r.status_code == 206, (header, r.status_code)
        assert r.headers["Content-Range"] == f"bytes {first}-{last}/{size}", header
        assert r.content == data[first:last + 1], header
        assert int(r.headers["Content-Length"]) == last - first + 1
    r = bob.get(url, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{size}"
    # several ranges, or nonsense: the whole file
    for header in ("bytes=0-1,5-6", "lines=1-2", "bytes=9-3"):
        r = bob.get(url, headers={"Range": header})
        assert r.status_code == 200 and r.content == data, header
    head = server.head(url, token=bob)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["Content-Length"]) == size


def test_big_download_in_chunks(alice):
    data = os.urandom(UPLOAD_MAX)
    att = upload(alice, data, name="video.bin")
    r = alice.get(att["url"], headers={"Range": f"bytes=1000-{UPLOAD_MAX - 1000}"})
    assert r.status_code == 206 and r.content == data[1000:UPLOAD_MAX - 999]


# ---------------------------------------------------- messages with a file --

def test_inline_upload_with_message(server, alice, bob):
    room = group(alice, bob)
    data = png(120, 90)
    msg = send_file(alice, room, data, name="cat.png", message_type="image",
                    content="my cat @" + bob.username, content_type="image/png")
    assert msg["message_type"] == "image" and msg["content"] == "my cat @" + bob.username
    assert msg["mentions"] == [bob.id]
    att = msg["attachment"]
    assert set(att) == ATTACHMENT_FIELDS
    assert (att["mime"], att["width"], att["height"], att["name"]) == ("image/png", 120, 90,
                                                                        "cat.png")
    assert bob.get(att["url"]).content == data
    assert bob.get(att["thumbnail_url"]).status_code == 200
    seen = bob.get(f"{MESSAGES}{msg['id']}/").json()
    assert seen["attachment"] == att
    # no message_type: a file message
    other = send_file(bob, room, b"plain words\n", name="notes.txt")
    assert other["message_type"] == "file" and other["attachment"]["mime"] == "text/plain"


def test_inline_upload_refused_leaves_nothing(server, alice, bob, carol):
    room = group(alice, bob)
    before_rows = int(server.sql_value("SELECT count(*) FROM attachments"))
    before_files = stored_files(server)
    r = carol.post(MESSAGES, files={"file": ("a.png", png(20, 20))},
                   data={"room": room["id"], "message_type": "image"})
    assert_not_found(r)                                 # not a participant
    r = alice.post(MESSAGES, files={"file": ("a.png", png(20, 20))},
                   data={"room": room["id"], "message_type": "image",
                         "reply_to": str(uuid.uuid4())})
    assert_not_found(r)
    assert int(server.sql_value("SELECT count(*) FROM attachments")) == before_rows
    assert stored_files(server) == before_files


def test_inline_upload_idempotent_on_client_id(server, alice, bob):
    room = group(alice, bob)
    first = send_file(alice, room, png(20, 20), message_type="image", client_id="up-1")
    rows = int(server.sql_value("SELECT count(*) FROM attachments"))
    files = stored_files(server)
    again = send_file(alice, room, png(21, 21), message_type="image", client_id="up-1",
                      expect=200)
    assert again["id"] == first["id"] and again["attachment"] == first["attachment"]
    assert int(server.sql_value("SELECT count(*) FROM attachments")) == rows
    assert stored_files(server) == files


def test_media_types_need_an_attachment(alice, bob):
    room = group(alice, bob)
    for kind in ("image", "video", "audio", "file"):
        r = alice.post(MESSAGES, json={"room": room["id"], "message_type": kind,
                                       "content": "x"})
        assert_field_error(r, "attachment")
        r = alice.post(MESSAGES, files={"other": ("a.txt", b"abc")},
                       data={"room": room["id"], "message_type": kind})
        assert_field_error(r, "attachment")
    # a multipart form without a file is an ordinary message
    r = alice.post(MESSAGES, files={"other": ("a.txt", b"abc")},
                   data={"room": room["id"], "content": "just text"})
    assert r.status_code == 201 and r.json()["attachment"] is None


# ------------------------------------------------------------------ delete --

def test_deleting_the_message_removes_access(server, alice, bob):
    room = group(alice, bob)
    msg = send_file(alice, room, png(64, 48), name="oops.png", message_type="image")
    att = msg["attachment"]
    urls = [f"{ATTACHMENTS}{att['id']}/", att["url"], att["thumbnail_url"]]
    assert all(bob.get(u).status_code == 200 for u in urls)
    path, thumb = server.sql(
        "SELECT storage_path, thumb_path FROM attachments WHERE id = %s", att["id"])[0]
    assert alice.delete(f"{MESSAGES}{msg['id']}/").status_code == 204
    for user in (alice, bob):                            # the uploader too
        for url in urls:
            assert_not_found(user.get(url))
    r = alice.post(MESSAGES, json={"room": room["id"], "message_type": "image",
                                   "attachment": att["id"]})
    assert_not_found(r)                                  # cannot be posted again
    # the bytes go soon after (media.0 purges revoked attachments)
    wait_until(lambda: path not in stored_files(server) and thumb not in stored_files(server),
               timeout=20, message="the revoked attachment's files were not removed")
    wait_until(lambda: server.sql_value(
        "SELECT purged_at IS NOT NULL FROM attachments WHERE id = %s", att["id"]) == "t",
        timeout=20)


def test_a_forwarded_copy_keeps_it_alive(alice, bob, carol):
    first = group(alice, bob)
    second = group(bob, carol)
    msg = send_file(alice, first, b"shared notes\n", name="notes.txt", message_type="file")
    r = bob.post(f"{MESSAGES}{msg['id']}/forward/", json={"room": second["id"]})
    assert r.status_code == 201, r.text
    assert alice.delete(f"{MESSAGES}{msg['id']}/").status_code == 204
    url = msg["attachment"]["url"]
    assert carol.get(url).status_code == 200            # still carried in `second`
    assert alice.get(url).status_code == 200            # and still the uploader's
    assert bob.get(url).status_code == 200
    fwd = r.json()
    assert bob.delete(f"{MESSAGES}{fwd['id']}/").status_code == 204
    for user in (alice, bob, carol):
        assert_not_found(user.get(url))


def test_server_still_serves_after_uploads(server):
    assert server.alive and server.get("/healthz").status_code == 200
