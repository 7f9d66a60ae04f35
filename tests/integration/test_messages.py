"""Messages (API.md §2.2): create (validation, permissions, idempotency,
mentions, seq), list (visibility, filters, full-text search, keyset and
page pagination), retrieve, edit and its history, soft delete, pin/unpin,
thread, forward — and 50 concurrent sends into one room.

Rooms are made through POST /api/messaging/rooms/, users through
/api/auth/register/ + login/ (conftest's server.user()).
"""

import concurrent.futures
import uuid


ROOMS = "/api/messaging/rooms/"
MESSAGES = "/api/messaging/messages/"
READS = "/api/messaging/reads/"
REACTIONS = "/api/messaging/reactions/"

MESSAGE_FIELDS = {
    "id", "room", "seq", "sender", "content", "message_type", "attachment",
    "location", "reply_to", "reply_count", "forward_from", "mentions",
    "reactions", "is_edited", "edited_at", "is_deleted", "is_pinned",
    "client_id", "stream_id", "created_at", "updated_at",
}


# ----------------------------------------------------------------- helpers --

def rid(obj):
    return obj["id"] if isinstance(obj, dict) else obj


def group(user, *others, **body):
    body.setdefault("name", "room-" + uuid.uuid4().hex[:8])
    r = user.post(ROOMS, json={"participants": [o.id for o in others], **body})
    assert r.status_code == 201, r.text
    return r.json()


def public_group(user, *others, **body):
    return group(user, *others, is_private=False, **body)


def send(user, room, content="hello", expect=201, **body):
    r = user.post(MESSAGES, json={"room": rid(room), "content": content, **body})
    assert r.status_code == expect, r.text
    return r.json()


def message_url(message, action=""):
    return f"{MESSAGES}{rid(message)}/" + (f"{action}/" if action else "")


def get_message(user, message, expect=200):
    r = user.get(message_url(message))
    assert r.status_code == expect, r.text
    return r.json()


def get_room(user, room):
    r = user.get(f"{ROOMS}{rid(room)}/")
    assert r.status_code == 200, r.text
    return r.json()


def listing(user, path=MESSAGES, expect=200, **params):
    params.setdefault("page_size", 200)
    r = user.get(path, params=params)
    assert r.status_code == expect, r.text
    return r.json()


def results(user, path=MESSAGES, **params):
    return listing(user, path, **params)["results"]


def ids(items):
    return [item["id"] for item in items]


def room_events(server, room, after_seq=0):
    """(seq, type, payload message/reaction id) of the room's event log."""
    rows = server.sql(
        "SELECT seq, type, coalesce(payload->'message'->>'id', payload->'reaction'->>'id')"
        "  FROM room_events WHERE room_id = %s AND seq > %s ORDER BY seq",
        rid(room), after_seq)
    return [(int(s), t, i) for s, t, i in rows]


def last_seq(server, room):
    return int(server.sql_value("SELECT last_seq FROM rooms WHERE id = %s", rid(room)))


def message_count(server, room):
    return int(server.sql_value("SELECT count(*) FROM messages WHERE room_id = %s", rid(room)))


def assert_field_error(r, field):
    assert r.status_code == 400, r.text
    body = r.json()
    assert field in body and isinstance(body[field], list) and body[field], body


def assert_not_found(r):
    assert r.status_code == 404, r.text
    assert r.json() == {"detail": "Not found."}


def assert_forbidden(r):
    assert r.status_code == 403, r.text
    assert "detail" in r.json()


def add_attachment(server, user, mime="image/png", name="a.png"):
    """An uploaded attachment row (the upload endpoint is §2.7's work)."""
    return server.sql_value(
        "INSERT INTO attachments (uploader_id, name, mime, size, storage_path)"
        " VALUES (%s, %s, %s, 10, '/nonexistent') RETURNING id", user.id, name, mime)


# ------------------------------------------------------------------ create --

def test_create_shape_seq_and_sender_receipt(server, alice, bob):
    room = group(alice, bob)
    msg = send(alice, room, "  hello world \n")
    assert set(msg) >= MESSAGE_FIELDS
    assert msg["room"] == room["id"] and msg["sender"] == alice.id
    assert msg["seq"] == 2                       # room.created is event 1
    assert msg["content"] == "hello world"       # trimmed
    assert msg["message_type"] == "text"
    assert msg["attachment"] is None and msg["location"] is None
    assert msg["reply_to"] is None and msg["forward_from"] is None
    assert msg["reply_count"] == 0 and msg["mentions"] == [] and msg["reactions"] == []
    assert msg["is_edited"] is False and msg["edited_at"] is None
    assert msg["is_deleted"] is False and msg["is_pinned"] is False
    assert msg["client_id"] is None and msg["stream_id"] is None
    assert msg["created_at"].endswith("Z")
    # the sender's own receipt, and their last_read_seq follows it
    reads = results(alice, READS, message=msg["id"])
    assert [(r["user"], r["message"]) for r in reads] == [(alice.id, msg["id"])]
    assert server.sql_value("SELECT last_read_seq FROM room_participants"
                            " WHERE room_id = %s AND user_id = %s", room["id"], alice.id) == "2"
    assert get_room(alice, room)["unread_count"] == 0
    assert get_room(bob, room)["unread_count"] == 1
    info = get_room(bob, room)
    assert info["messages_count"] == 1 and info["last_seq"] == 2
    assert info["last_message"]["id"] == msg["id"]
    # the message.new event carries the same seq
    assert room_events(server, room, 1) == [(2, "message.new", msg["id"])]


def test_create_validation(server, alice, bob):
    room = group(alice, bob)
    assert_field_error(alice.post(MESSAGES, json={"content": "x"}), "room")
    assert_field_error(alice.post(MESSAGES, json={"room": "nope", "content": "x"}), "room")
    assert_field_error(alice.post(MESSAGES, json={"room": 5, "content": "x"}), "room")
    for bad in ("sticker", "TEXT", ""):
        assert_field_error(alice.post(MESSAGES, json={"room": room["id"], "content": "x",
                                                      "message_type": bad}), "message_type")
    assert_field_error(alice.post(MESSAGES, json={"room": room["id"], "content": "x",
                                                  "message_type": 3}), "message_type")
    assert_field_error(alice.post(MESSAGES, json={"room": room["id"]}), "content")
    for bad in ("", "   ", "\n\t \u00a0\u3000", 42, ["x"]):
        assert_field_error(alice.post(MESSAGES, json={"room": room["id"], "content": bad}),
                           "content")
    for field in ("reply_to", "forward_from", "attachment"):
        assert_field_error(alice.post(MESSAGES, json={"room": room["id"], "content": "x",
                                                      field: "not-a-uuid"}), field)
    assert_field_error(alice.post(MESSAGES, json={"room": room["id"], "content": "x",
                                                  "client_id": 7}), "client_id")
    assert message_count(server, room) == 0
    # unknown fields are ignored
    send(alice, room, "ok", colour="blue")


def test_content_length_counts_characters(server, alice):
    room = group(alice)
    # 10 000 characters of 2 bytes each is fine; 10 001 is not
    msg = send(alice, room, "é" * 10000)
    assert len(msg["content"]) == 10000
    assert_field_error(alice.post(MESSAGES, json={"room": room["id"], "content": "é" * 10001}),
                       "content")
    # trimming happens before counting
    send(alice, room, "  " + "x" * 10000 + "  ")
    assert message_count(server, room) == 2


def test_invalid_utf8_body_is_400(server, alice):
    room = group(alice)
    body = b'{"room": "' + room["id"].encode() + b'", "content": "bad \xff\xfe bytes"}'
    r = alice.post(MESSAGES, data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    r = alice.post(MESSAGES, data=b'{"room": "' + room["id"].encode() + b'", "content": "\xc3"}',
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert message_count(server, room) == 0


def test_non_participant_cannot_post(server, alice, bob, carol):
    private = group(alice, bob)
    public = public_group(alice, bob)
    assert_not_found(carol.post(MESSAGES, json={"room": private["id"], "content": "hi"}))
    assert_forbidden(carol.post(MESSAGES, json={"room": public["id"], "content": "hi"}))
    assert_not_found(carol.post(MESSAGES, json={"room": str(uuid.uuid4()), "content": "hi"}))
    assert message_count(server, private) == 0 and message_count(server, public) == 0
    assert last_seq(server, private) == 1 and last_seq(server, public) == 1
    # once joined, carol may post in the public room
    r = carol.post(f"{ROOMS}{public['id']}/join/")
    assert r.status_code == 200, r.text
    assert send(carol, public, "hi")["sender"] == carol.id


def test_archived_room_refuses_messages_but_stays_readable(server, alice, bob):
    room = group(alice, bob)
    msg = send(alice, room, "before")
    r = alice.patch(f"{ROOMS}{room['id']}/", json={"is_archived": True})
    assert r.status_code == 200, r.text
    assert_forbidden(bob.post(MESSAGES, json={"room": room["id"], "content": "after"}))
    assert_forbidden(alice.post(MESSAGES, json={"room": room["id"], "content": "after"}))
    assert_forbidden(alice.patch(message_url(msg), json={"content": "changed"}))
    assert_forbidden(alice.post(message_url(msg, "pin")))
    assert ids(results(bob, room=room["id"])) == [msg["id"]]
    assert get_message(bob, msg)["content"] == "before"


def test_system_messages_room_admins_only(server, alice, bob):
    room = group(alice, bob)
    assert_forbidden(bob.post(MESSAGES, json={"room": room["id"], "content": "sys",
                                              "message_type": "system"}))
    assert message_count(server, room) == 0
    msg = send(alice, room, "Welcome!", message_type="system")
    assert msg["message_type"] == "system"
    assert_field_error(alice.post(MESSAGES, json={"room": room["id"], "content": " ",
                                                  "message_type": "system"}), "content")


def test_location_messages(server, alice):
    room = group(alice)
    assert_field_error(alice.post(MESSAGES, json={"room": room["id"],
                                                  "message_type": "location"}), "location")
    for bad in ({"latitude": 91, "longitude": 0}, {"latitude": 0, "longitude": -180.5},
                {"latitude": "1", "longitude": 2}, {"latitude": 1}, [1, 2], "1,2",
                {"latitude": True, "longitude": 2}):
        r = alice.post(MESSAGES, json={"room": room["id"], "message_type": "location",
                                       "location": bad})
        assert_field_error(r, "location")
    msg = send(alice, room, "", message_type="location",
               location={"latitude": 48.8584, "longitude": -180})
    assert msg["location"] == {"latitude": 48.8584, "longitude": -180}
    assert msg["content"] == ""
    edge = send(alice, room, "meet here", message_type="location",
                location={"latitude": -90, "longitude": 180})
    assert edge["location"] == {"latitude": -90, "longitude": 180}
    assert message_count(server, room) == 2


def test_media_types_need_a_fitting_attachment(server, alice, bob, carol):
    room = group(alice, bob)
    for kind in ("image", "video", "audio", "file"):
        assert_field_error(alice.post(MESSAGES, json={"room": room["id"],
                                                      "message_type": kind}), "attachment")
    png = add_attachment(server, alice, "image/png")
    # nonexistent, or someone else's unposted upload: 404 like any invisible object
    assert_not_found(alice.post(MESSAGES, json={"room": room["id"], "message_type": "image",
                                                "attachment": str(uuid.uuid4())}))
    assert_not_found(bob.post(MESSAGES, json={"room": room["id"], "message_type": "image",
                                              "attachment": png}))
    # the mime must fit the type; text carries no attachment
    assert_field_error(alice.post(MESSAGES, json={"room": room["id"], "message_type": "video",
                                                  "attachment": png}), "attachment")
    assert_field_error(alice.post(MESSAGES, json={"room": room["id"], "content": "x",
                                                  "attachment": png}), "attachment")
    assert message_count(server, room) == 0
    msg = send(alice, room, "a picture", message_type="image", attachment=png)
    att = msg["attachment"]
    assert att["id"] == png and att["mime"] == "image/png" and att["name"] == "a.png"
    assert att["url"].startswith("http") and att["url"].endswith(f"/attachments/{png}/download/")
    # anything fits `file`; bob may re-share what was posted in his room
    assert send(bob, room, "", message_type="file", attachment=png)["attachment"]["id"] == png
    other = group(carol)
    assert_not_found(carol.post(MESSAGES, json={"room": other["id"], "message_type": "image",
                                                "attachment": png}))


# ------------------------------------------------------------ idempotency --

def test_client_id_is_idempotent(server, alice, bob):
    room = group(alice, bob)
    first = alice.post(MESSAGES, json={"room": room["id"], "content": "once",
                                       "client_id": "c-1"})
    assert first.status_code == 201, first.text
    again = alice.post(MESSAGES, json={"room": room["id"], "content": "twice?",
                                       "client_id": "c-1"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["content"] == "once" and again.json()["client_id"] == "c-1"
    assert message_count(server, room) == 1
    assert [t for _, t, _ in room_events(server, room, 1)] == ["message.new"]
    # the key is per sender
    other = send(bob, room, "mine", client_id="c-1")
    assert other["id"] != first.json()["id"]
    assert message_count(server, room) == 2


def test_client_id_concurrent_duplicates(server, alice):
    room = group(alice)
    before = last_seq(server, room)

    def post(_):
        return alice.post(MESSAGES, json={"room": room["id"], "content": "dup",
                                          "client_id": "same-key"})

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, range(20)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 19 + [201], [r.text for r in answers if r.status_code >= 300]
    assert len({r.json()["id"] for r in answers}) == 1
    assert message_count(server, room) == 1
    assert last_seq(server, room) == before + 1      # no seq burnt


def test_client_id_concurrent_across_rooms(server, alice):
    """The same key sent to several rooms at once (possibly different
    persisters): one message in one room, no seq burnt anywhere."""
    rooms = [group(alice) for _ in range(4)]
    before = {r["id"]: last_seq(server, r) for r in rooms}

    def post(i):
        return alice.post(MESSAGES, json={"room": rooms[i % 4]["id"], "content": "x",
                                          "client_id": "across"})

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(post, range(16)))
    assert sorted(r.status_code for r in answers) == [200] * 15 + [201], \
        [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    winner = answers[0].json()["room"]
    for room in rooms:
        grew = 1 if room["id"] == winner else 0
        assert last_seq(server, room) == before[room["id"]] + grew
        assert message_count(server, room) == grew


# ------------------------------------------------------------- concurrency --

def test_fifty_concurrent_sends_get_gapless_seqs(server, alice, bob, carol):
    dave, erin = server.user(), server.user()
    users = [alice, bob, carol, dave, erin]
    room = group(alice, bob, carol, dave, erin)
    send(alice, room, "warm-up")
    k = last_seq(server, room)
    count_before = get_room(alice, room)["messages_count"]
    events_before = len(room_events(server, room))

    def post(i):
        user = users[i % len(users)]
        return user.post(MESSAGES, json={"room": room["id"], "content": f"msg {i}"})

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(post, range(50)))
    assert all(r.status_code == 201 for r in answers), [r.text for r in answers
                                                        if r.status_code != 201]
    seqs = sorted(r.json()["seq"] for r in answers)
    assert seqs == list(range(k + 1, k + 51))
    assert len({r.json()["id"] for r in answers}) == 50
    info = get_room(alice, room)
    assert info["messages_count"] == count_before + 50
    assert info["last_seq"] == k + 50
    new_events = room_events(server, room, k)
    assert len(room_events(server, room)) == events_before + 50
    assert [s for s, _, _ in new_events] == seqs
    assert {t for _, t, _ in new_events} == {"message.new"}
    by_id = {r.json()["id"]: r.json()["seq"] for r in answers}
    assert {i: s for s, _, i in new_events} == by_id
    # every sender got their receipt, nobody else's
    assert server.sql_value("SELECT count(*) FROM reads r JOIN messages m ON m.id = r.message_id"
                            " WHERE m.room_id = %s AND m.seq > %s AND r.user_id = m.sender_id",
                            room["id"], k) == "50"
    assert server.sql_value("SELECT count(*) FROM reads r JOIN messages m ON m.id = r.message_id"
                            " WHERE m.room_id = %s AND m.seq > %s", room["id"], k) == "50"


def test_concurrent_mix_of_failing_and_succeeding_sends(server, alice, bob):
    """Sends that fail after touching the database (400/403 past the room
    lock) batched with sends that succeed: each failure undoes only itself
    (its savepoint), every 201 is committed once, seqs stay gapless."""
    room = group(alice, bob)
    elsewhere = send(alice, group(alice, bob), "in another room")
    count_before = get_room(alice, room)["messages_count"]
    seq_before = last_seq(server, room)

    def post(i):
        kind = i % 4
        if kind == 1:       # 400 after the lock and a lookup
            body = {"reply_to": elsewhere["id"]}
        elif kind == 3:     # 403 after the lock: system by a non-admin
            body = {"message_type": "system"}
        else:
            body = {"client_id": f"mix-{i}"} if kind == 2 else {}
        return i, bob.post(MESSAGES, json={"room": room["id"], "content": f"n{i}", **body})

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(post, range(48)))
    for i, r in answers:
        assert r.status_code == {0: 201, 1: 400, 2: 201, 3: 403}[i % 4], (i, r.text)
    created = [r.json() for i, r in answers if r.status_code == 201]
    assert len(created) == 24
    info = get_room(alice, room)
    assert info["messages_count"] == count_before + 24 == message_count(server, room)
    seqs = sorted(m["seq"] for m in created)
    assert last_seq(server, room) == seq_before + 24 and seqs[-1] == seq_before + 24
    assert seqs == list(range(seq_before + 1, seq_before + 25))
    listed = {m["content"] for m in results(alice, room=room["id"])}
    assert listed >= {m["content"] for m in created}
    assert not any(f"n{i}" in listed for i, _ in answers if i % 2)


# ---------------------------------------------------------------- mentions --

def test_mentions(server, alice, bob, carol):
    dave = server.user()
    room = group(alice, bob, dave)
    msg = send(alice, room, f"hi @{bob.username}, and @{carol.username} and @ghost_user")
    assert msg["mentions"] == [bob.id]          # carol is no participant
    assert send(alice, room, f"me: @{alice.username}")["mentions"] == []
    assert send(alice, room, f"@{bob.username} @{bob.username}")["mentions"] == [bob.id]
    assert send(alice, room, f"end of sentence @{bob.username}.")["mentions"] == [bob.id]
    assert send(alice, room, f"mail me at x@{bob.username}")["mentions"] == []
    assert set(send(alice, room, "@all look")["mentions"]) == {bob.id, dave.id}
    assert set(send(bob, room, "(@room) look")["mentions"]) == {alice.id, dave.id}
    # processed by the at-commit notifier (test_notifications.py)
    assert server.sql_value("SELECT mentions_processed_at FROM messages WHERE id = %s",
                            msg["id"]) is not None
    # mentions are recomputed on edit
    r = alice.patch(message_url(msg), json={"content": f"now @{dave.username}"})
    assert r.status_code == 200, r.text
    assert r.json()["mentions"] == [dave.id]


# ----------------------------------------------------------------- listing --

def test_list_visibility(server, alice, bob, carol):
    mine = group(alice, bob)
    secret = group(bob, carol)
    public = public_group(bob, carol)
    a = send(alice, mine, "in mine")
    s = send(bob, secret, "secret")
    p = send(bob, public, "public")
    listed = ids(results(alice))
    assert a["id"] in listed and s["id"] not in listed and p["id"] not in listed
    # a public room can be read before joining
    assert ids(results(alice, room=public["id"])) == [p["id"]]
    assert get_message(alice, p)["id"] == p["id"]
    # a private room is 404, as is its message
    assert_not_found(alice.get(MESSAGES, params={"room": secret["id"]}))
    assert_not_found(alice.get(message_url(s)))
    assert_not_found(alice.get(message_url(str(uuid.uuid4()))))
    assert_field_error(alice.get(MESSAGES, params={"room": "nope"}), "room")


def test_list_order_and_pagination(server, alice):
    room = group(alice)
    sent = [send(alice, room, f"m{i}") for i in range(5)]
    newest_first = ids(results(alice, room=room["id"]))
    assert newest_first == ids(reversed(sent))
    assert ids(results(alice, room=room["id"], ordering="seq")) == ids(sent)
    assert ids(results(alice, room=room["id"], ordering="-seq")) == ids(reversed(sent))
    page = listing(alice, room=room["id"], page_size=2)
    assert page["count"] == 5 and page["previous"] is None
    assert ids(page["results"]) == ids(reversed(sent))[:2]
    assert page["next"].startswith("http") and "page=2" in page["next"]
    page3 = alice.get(page["next"]).json()
    page3 = alice.get(page3["next"]).json()
    assert ids(page3["results"]) == [sent[0]["id"]] and page3["next"] is None
    # multi-room lists are newest first too
    other = group(alice)
    last = send(alice, other, "latest")
    assert results(alice)[0]["id"] == last["id"]
    assert results(alice, ordering="seq")[-1]["id"] == last["id"]


def test_unfiltered_count_is_the_rooms_messages_count(server, alice, bob):
    """An unfiltered room listing takes its count from rooms.messages_count
    (no count(*)): it must equal the rows listed, tombstones, forwards and
    concurrent sends included, and the exact count of a filtered listing."""
    room = group(alice, bob)
    other = group(alice, bob)
    sent = [send(alice, room, f"m{i}") for i in range(3)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: send(bob if i % 2 else alice, room, f"c{i}"), range(12)))
    source = send(alice, other, "forward me")
    r = bob.post(message_url(source, "forward"), json={"room": room["id"]})
    assert r.status_code == 201, r.text
    assert alice.delete(message_url(sent[1])).status_code == 204     # a tombstone
    rows = message_count(server, room)
    assert rows == 3 + 12 + 1
    assert get_room(alice, room)["messages_count"] == rows
    by_room = f"{ROOMS}{room['id']}/messages/"
    for path, params in ((by_room, {}), (MESSAGES, {"room": room["id"]})):
        page = listing(alice, path, page_size=5, **params)
        assert page["count"] == rows
        seen = ids(page["results"])
        while page["next"]:
            page = alice.get(page["next"]).json()
            assert page["count"] == rows
            seen += ids(page["results"])
        assert len(seen) == len(set(seen)) == rows
        # the exact count(*) of a filtered listing agrees
        assert listing(alice, path, after_seq=0, **params)["count"] == rows
        # past the last page: 404 as before
        assert alice.get(path, params={"page": 99, **params}).status_code == 404


def test_keyset_before_after_seq(server, alice):
    room = group(alice)
    sent = [send(alice, room, f"m{i}") for i in range(6)]      # seqs 2..7
    seqs = [m["seq"] for m in sent]
    assert seqs == [2, 3, 4, 5, 6, 7]
    before = results(alice, room=room["id"], before_seq=5)
    assert [m["seq"] for m in before] == [4, 3, 2]               # strict, newest first
    after = results(alice, room=room["id"], after_seq=5, ordering="seq")
    assert [m["seq"] for m in after] == [6, 7]
    window = results(alice, room=room["id"], after_seq=2, before_seq=7)
    assert [m["seq"] for m in window] == [6, 5, 4, 3]
    assert results(alice, room=room["id"], after_seq=7) == []
    for param in ("before_seq", "after_seq"):
        assert_field_error(alice.get(MESSAGES, params={param: 3}), param)
        assert_field_error(alice.get(MESSAGES, params={"room": room["id"], param: "x"}), param)


def test_list_filters(server, alice, bob):
    room = group(alice, bob)
    a = send(alice, room, "from alice")
    b = send(bob, room, "from bob")
    reply = send(bob, room, "a reply", reply_to=a["id"])
    sysm = send(alice, room, "system note", message_type="system")
    r = bob.post(message_url(b, "pin"))
    assert r.status_code == 200, r.text
    rid_ = room["id"]
    assert set(ids(results(alice, room=rid_, sender=bob.id))) == {b["id"], reply["id"]}
    assert ids(results(alice, room=rid_, message_type="system")) == [sysm["id"]]
    assert ids(results(alice, room=rid_, reply_to=a["id"])) == [reply["id"]]
    assert ids(results(alice, room=rid_, is_pinned="true")) == [b["id"]]
    assert len(results(alice, room=rid_, is_pinned="false")) == 3
    assert_field_error(alice.get(MESSAGES, params={"message_type": "sticker"}), "message_type")
    assert_field_error(alice.get(MESSAGES, params={"sender": "x"}), "sender")
    assert_field_error(alice.get(MESSAGES, params={"is_pinned": "maybe"}), "is_pinned")


def test_full_text_search(server, alice, bob, carol):
    room = group(alice, bob)
    fox = send(alice, room, "The quick brown fox jumps")
    dog = send(bob, room, "over the lazy dog")
    both = send(bob, room, "a fox and a dog")
    hidden = group(carol)
    send(carol, hidden, "another fox")
    assert set(ids(results(alice, search="fox"))) == {fox["id"], both["id"]}
    assert set(ids(results(alice, room=room["id"], search="FOX"))) == {fox["id"], both["id"]}
    assert ids(results(alice, search="fox dog")) == [both["id"]]
    assert ids(results(alice, search="lazy")) == [dog["id"]]
    assert results(alice, search="cat") == []
    # deleted messages are no longer found
    assert alice.delete(message_url(fox)).status_code == 204
    assert ids(results(alice, search="quick")) == []


# -------------------------------------------------------------------- edit --

def test_edit_sender_only_and_history(server, alice, bob, carol):
    room = group(alice, bob)
    msg = send(alice, room, "first")
    k = last_seq(server, room)
    assert_forbidden(bob.patch(message_url(msg), json={"content": "bob's"}))
    assert_not_found(carol.patch(message_url(msg), json={"content": "carol's"}))
    r = alice.patch(message_url(msg), json={"content": " second "})
    assert r.status_code == 200, r.text
    edited = r.json()
    assert edited["content"] == "second" and edited["is_edited"] is True
    assert edited["edited_at"] is not None and edited["seq"] == msg["seq"]
    r = alice.put(message_url(msg), json={"content": "third", "message_type": "image"})
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "third" and r.json()["message_type"] == "text"
    history = listing(bob, message_url(msg, "history"))
    assert history["count"] == 2
    assert [h["content"] for h in history["results"]] == ["first", "second"]
    assert all(h["message"] == msg["id"] and h["edited_at"] for h in history["results"])
    assert [t for _, t, _ in room_events(server, room, k)] == ["message.updated"] * 2
    assert_not_found(carol.get(message_url(msg, "history")))


def test_edit_validation_and_no_op(server, alice):
    room = group(alice)
    msg = send(alice, room, "same")
    k = last_seq(server, room)
    assert_field_error(alice.put(message_url(msg), json={}), "content")
    assert_field_error(alice.patch(message_url(msg), json={"content": "  "}), "content")
    assert_field_error(alice.patch(message_url(msg), json={"content": 1}), "content")
    assert_field_error(alice.patch(message_url(msg), json={"content": "x" * 10001}), "content")
    # PATCH without content, or the same content: nothing changes
    for body in ({}, {"content": "same"}, {"content": " same "}):
        r = alice.patch(message_url(msg), json=body)
        assert r.status_code == 200, r.text
        assert r.json()["is_edited"] is False
    assert last_seq(server, room) == k
    assert listing(alice, message_url(msg, "history"))["count"] == 0


# ------------------------------------------------------------------ delete --

def test_soft_delete_tombstone(server, alice, bob, carol):
    room = group(alice, bob)
    png = add_attachment(server, alice)
    msg = send(alice, room, f"picture for @{bob.username}", message_type="image",
               attachment=png)
    assert bob.post(REACTIONS, json={"message": msg["id"], "emoji": "👍"}).status_code == 201
    assert alice.patch(message_url(msg), json={"content": "edited"}).status_code == 200
    k = last_seq(server, room)
    assert_forbidden(bob.delete(message_url(msg)))          # neither sender nor admin
    assert_not_found(carol.delete(message_url(msg)))
    r = alice.delete(message_url(msg))
    assert r.status_code == 204 and r.content == b""
    tomb = get_message(bob, msg)
    assert tomb["is_deleted"] is True and tomb["content"] == ""
    assert tomb["attachment"] is None and tomb["mentions"] == []
    assert tomb["id"] == msg["id"] and tomb["seq"] == msg["seq"]
    assert tomb["sender"] == alice.id and tomb["message_type"] == "image"
    assert tomb["reactions"] == [{"emoji": "👍", "count": 1, "me": True}]
    assert ids(results(bob, room=room["id"])) == [msg["id"]]     # still listed
    assert listing(alice, message_url(msg, "history"))["count"] == 0
    # a second delete is a no-op
    assert alice.delete(message_url(msg)).status_code == 204
    assert [t for _, t, _ in room_events(server, room, k)] == ["message.deleted"]
    # a tombstone cannot be edited, pinned or forwarded
    assert alice.patch(message_url(msg), json={"content": "back"}).status_code == 400
    assert alice.post(message_url(msg, "pin")).status_code == 400
    assert alice.post(message_url(msg, "forward"), json={"room": room["id"]}).status_code == 400
    assert get_room(bob, room)["messages_count"] == 1


def test_room_admin_may_delete_others_messages(server, alice, bob):
    room = group(alice, bob)
    msg = send(bob, room, "rude")
    assert alice.delete(message_url(msg)).status_code == 204
    assert get_message(bob, msg)["is_deleted"] is True


def test_delete_from_unread_count(server, alice, bob):
    room = group(alice, bob)
    msg = send(bob, room, "unread")
    assert get_room(alice, room)["unread_count"] == 1
    assert bob.delete(message_url(msg)).status_code == 204
    assert get_room(alice, room)["unread_count"] == 0


# --------------------------------------------------------------- pin/unpin --

def test_pin_unpin_any_participant(server, alice, bob, carol):
    room = public_group(alice, bob)
    msg = send(alice, room, "pin me")
    k = last_seq(server, room)
    assert_forbidden(carol.post(message_url(msg, "pin")))       # visitor of a public room
    private = group(alice, bob)
    hidden = send(alice, private, "x")
    assert_not_found(carol.post(message_url(hidden, "pin")))
    r = bob.post(message_url(msg, "pin"))
    assert r.status_code == 200 and r.json()["is_pinned"] is True
    r = bob.post(message_url(msg, "pin"))                         # no change, no event
    assert r.status_code == 200 and r.json()["is_pinned"] is True
    r = alice.post(message_url(msg, "unpin"))
    assert r.status_code == 200 and r.json()["is_pinned"] is False
    r = alice.post(message_url(msg, "unpin"))
    assert r.status_code == 200 and r.json()["is_pinned"] is False
    assert [t for _, t, _ in room_events(server, room, k)] == ["message.pinned",
                                                               "message.unpinned"]


# ------------------------------------------------------------------ thread --

def test_thread_and_reply_count(server, alice, bob, carol):
    room = group(alice, bob)
    parent = send(alice, room, "question")
    replies = [send(bob if i % 2 else alice, room, f"answer {i}", reply_to=parent["id"])
               for i in range(4)]
    assert all(r["reply_to"] == parent["id"] for r in replies)
    assert get_message(bob, parent)["reply_count"] == 4
    thread = listing(bob, message_url(parent, "thread"))
    assert thread["count"] == 4 and ids(thread["results"]) == ids(replies)   # oldest first
    page = listing(bob, message_url(parent, "thread"), page_size=3)
    assert ids(page["results"]) == ids(replies)[:3] and page["next"]
    assert bob.delete(message_url(replies[1])).status_code == 204
    assert get_message(alice, parent)["reply_count"] == 3
    assert_not_found(carol.get(message_url(parent, "thread")))


def test_reply_to_rules(server, alice, bob, carol):
    room = group(alice, bob)
    other = group(alice, bob)
    hidden = send(carol, group(carol), "hidden")
    there = send(alice, other, "elsewhere")
    assert_field_error(alice.post(MESSAGES, json={"room": room["id"], "content": "re",
                                                  "reply_to": there["id"]}), "reply_to")
    assert_not_found(alice.post(MESSAGES, json={"room": room["id"], "content": "re",
                                                "reply_to": hidden["id"]}))
    assert_not_found(alice.post(MESSAGES, json={"room": room["id"], "content": "re",
                                                "reply_to": str(uuid.uuid4())}))
    assert message_count(server, room) == 0


# ----------------------------------------------------------------- forward --

def test_forward(server, alice, bob, carol):
    source_room = group(alice, bob)
    target = group(bob, carol)
    png = add_attachment(server, alice)
    src = send(alice, source_room, "look", message_type="image", attachment=png)
    r = bob.post(message_url(src, "forward"), json={"room": target["id"]})
    assert r.status_code == 201, r.text
    fwd = r.json()
    assert fwd["forward_from"] == src["id"] and fwd["room"] == target["id"]
    assert fwd["sender"] == bob.id and fwd["content"] == "look"
    assert fwd["message_type"] == "image" and fwd["attachment"]["id"] == png
    assert fwd["seq"] == 2 and fwd["id"] != src["id"]
    assert get_message(carol, fwd)["forward_from"] == src["id"]
    # carol cannot see the source: 404; bob's own rooms only as targets
    assert_not_found(carol.post(message_url(src, "forward"), json={"room": target["id"]}))
    secret = group(alice)
    public = public_group(alice)
    assert_not_found(bob.post(message_url(src, "forward"), json={"room": secret["id"]}))
    assert_forbidden(bob.post(message_url(src, "forward"), json={"room": public["id"]}))
    assert_field_error(bob.post(message_url(src, "forward"), json={}), "room")
    assert message_count(server, secret) == 0 and message_count(server, public) == 0
    # forward_from on create: a message the caller can see
    assert_not_found(carol.post(MESSAGES, json={"room": target["id"], "content": "fw",
                                                "forward_from": src["id"]}))
    again = send(bob, target, "fw", forward_from=src["id"])
    assert again["forward_from"] == src["id"]


def test_forward_location_and_system(server, alice):
    a, b = group(alice), group(alice)
    loc = send(alice, a, "here", message_type="location",
               location={"latitude": 1.5, "longitude": 2.5})
    r = alice.post(message_url(loc, "forward"), json={"room": b["id"]})
    assert r.status_code == 201, r.text
    assert r.json()["location"] == {"latitude": 1.5, "longitude": 2.5}
    sysm = send(alice, a, "system words", message_type="system")
    r = alice.post(message_url(sysm, "forward"), json={"room": b["id"]})
    assert r.status_code == 201 and r.json()["message_type"] == "text"


# ---------------------------------------------------------------- activity --

def test_user_activity_counts(server, alice, bob):
    room = group(alice, bob)
    msg = send(alice, room, "one")
    send(alice, room, "two")
    bob.post(REACTIONS, json={"message": msg["id"], "emoji": "🎉"})
    me = alice.get("/api/auth/me/").json()
    assert me["activity"]["messages_sent"] == 2
    assert me["activity"]["last_message_at"] is not None
    assert bob.get("/api/auth/me/").json()["activity"]["reactions_given"] == 1
