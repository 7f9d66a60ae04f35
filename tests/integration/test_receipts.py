"""Read receipts (API.md §2.3) and reactions (§2.4): create (201, then 200
with the existing one), own-only update and delete, visibility of lists and
objects, last_read_seq / unread_count, the `reactions` aggregate on
messages from two users' points of view, emoji validation, room events.
"""

import uuid


ROOMS = "/api/messaging/rooms/"
MESSAGES = "/api/messaging/messages/"
READS = "/api/messaging/reads/"
REACTIONS = "/api/messaging/reactions/"


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


def send(user, room, content="hello", **body):
    r = user.post(MESSAGES, json={"room": rid(room), "content": content, **body})
    assert r.status_code == 201, r.text
    return r.json()


def get_message(user, message):
    r = user.get(f"{MESSAGES}{rid(message)}/")
    assert r.status_code == 200, r.text
    return r.json()


def get_room(user, room):
    r = user.get(f"{ROOMS}{rid(room)}/")
    assert r.status_code == 200, r.text
    return r.json()


def results(who, path, expect=200, **params):
    params.setdefault("page_size", 200)
    r = who.get(path, params=params)
    assert r.status_code == expect, r.text
    return r.json()["results"] if expect == 200 else r


def read(user, message, expect=201):
    r = user.post(READS, json={"message": rid(message)})
    assert r.status_code == expect, r.text
    return r.json()


def react(user, message, emoji="👍", expect=201):
    r = user.post(REACTIONS, json={"message": rid(message), "emoji": emoji})
    assert r.status_code == expect, r.text
    return r.json()


def last_read_seq(server, room, user):
    return int(server.sql_value("SELECT last_read_seq FROM room_participants"
                                " WHERE room_id = %s AND user_id = %s", rid(room), user.id))


def room_events(server, room, after_seq):
    rows = server.sql("SELECT seq, type, payload->'reaction'->>'emoji' FROM room_events"
                      " WHERE room_id = %s AND seq > %s ORDER BY seq", rid(room), after_seq)
    return [(int(s), t, e) for s, t, e in rows]


def last_seq(server, room):
    return int(server.sql_value("SELECT last_seq FROM rooms WHERE id = %s", rid(room)))


def count(server, table, message):
    return int(server.sql_value(f"SELECT count(*) FROM {table} WHERE message_id = %s",
                                rid(message)))


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


# ------------------------------------------------------------------- reads --

def test_read_create_then_existing(server, alice, bob):
    room = group(alice, bob)
    m1 = send(alice, room, "one")
    m2 = send(alice, room, "two")
    assert get_room(bob, room)["unread_count"] == 2
    receipt = read(bob, m2)
    assert set(receipt) == {"id", "message", "user", "read_at"}
    assert receipt["message"] == m2["id"] and receipt["user"] == bob.id
    assert receipt["read_at"].endswith("Z")
    assert last_read_seq(server, room, bob) == m2["seq"]
    assert get_room(bob, room)["unread_count"] == 0
    again = read(bob, m2, expect=200)
    assert again == receipt
    # an older message does not lower last_read_seq
    read(bob, m1)
    assert last_read_seq(server, room, bob) == m2["seq"]
    assert count(server, "reads", m2) == 2            # alice's own + bob's
    # no room event for receipts (they are ephemeral)
    assert room_events(server, room, m2["seq"]) == []


def test_read_needs_participation(server, alice, bob, carol):
    private = group(alice, bob)
    public = public_group(alice, bob)
    hidden = send(alice, private, "x")
    open_ = send(alice, public, "y")
    assert_not_found(carol.post(READS, json={"message": hidden["id"]}))
    assert_forbidden(carol.post(READS, json={"message": open_["id"]}))
    assert_not_found(carol.post(READS, json={"message": str(uuid.uuid4())}))
    assert_field_error(carol.post(READS, json={}), "message")
    assert_field_error(carol.post(READS, json={"message": "nope"}), "message")
    assert count(server, "reads", hidden) == 1 and count(server, "reads", open_) == 1


def test_read_update_own_only(server, alice, bob, carol):
    room = group(alice, bob)
    msg = send(alice, room)
    receipt = read(bob, msg)
    for method in ("put", "patch"):
        r = getattr(bob, method)(f"{READS}{receipt['id']}/",
                                 json={"message": str(uuid.uuid4()), "read_at": "1999"})
        assert r.status_code == 200, r.text
        assert r.json() == receipt
        assert_forbidden(getattr(alice, method)(f"{READS}{receipt['id']}/", json={}))
        assert_not_found(getattr(carol, method)(f"{READS}{receipt['id']}/", json={}))


def test_read_delete_own_only(server, alice, bob, carol):
    room = group(alice, bob)
    m1 = send(alice, room, "one")
    m2 = send(alice, room, "two")
    r1, r2 = read(bob, m1), read(bob, m2)
    assert_forbidden(alice.delete(f"{READS}{r2['id']}/"))
    assert_not_found(carol.delete(f"{READS}{r2['id']}/"))
    r = bob.delete(f"{READS}{r2['id']}/")
    assert r.status_code == 204 and r.content == b""
    # the newest remaining receipt decides last_read_seq
    assert last_read_seq(server, room, bob) == m1["seq"]
    assert get_room(bob, room)["unread_count"] == 1
    assert_not_found(bob.get(f"{READS}{r2['id']}/"))
    assert bob.get(f"{READS}{r1['id']}/").status_code == 200


def test_read_retrieve_and_list_visibility(server, alice, bob, carol):
    room = group(alice, bob)
    other = group(bob, carol)
    public = public_group(bob, carol)
    msg = send(alice, room)
    receipt = read(bob, msg)
    elsewhere = send(carol, other, "other")
    read(bob, elsewhere)
    pub = send(carol, public, "public")
    assert alice.get(f"{READS}{receipt['id']}/").json() == receipt
    assert_not_found(carol.get(f"{READS}{receipt['id']}/"))
    assert_not_found(carol.get(f"{READS}{uuid.uuid4()}/"))
    # by message: alice's own receipt (as sender) and bob's
    assert {r["user"] for r in results(alice, READS, message=msg["id"])} == {alice.id, bob.id}
    assert [r["user"] for r in results(alice, READS, message=msg["id"], user=bob.id)] == [bob.id]
    assert_not_found(results(carol, READS, expect=404, message=msg["id"]))
    assert_not_found(results(carol, READS, expect=404, room=room["id"]))
    # without filters: receipts in the caller's rooms only
    mine = results(alice, READS)
    assert {r["message"] for r in mine} == {msg["id"]}
    assert {r["message"] for r in results(bob, READS, room=other["id"])} == {elsewhere["id"]}
    # a public room's receipts can be listed by naming it
    assert {r["user"] for r in results(alice, READS, room=public["id"])} == {carol.id}
    assert {r["message"] for r in results(alice, READS, message=pub["id"])} == {pub["id"]}
    assert_field_error(alice.get(READS, params={"user": "x"}), "user")


def test_sender_has_a_receipt_for_their_message(server, alice, bob):
    room = group(alice, bob)
    msg = send(bob, room)
    receipts = results(alice, READS, message=msg["id"])
    assert [r["user"] for r in receipts] == [bob.id]
    assert get_room(bob, room)["unread_count"] == 0
    assert get_room(alice, room)["unread_count"] == 1


# --------------------------------------------------------------- reactions --

def test_reaction_create_then_existing(server, alice, bob):
    room = group(alice, bob)
    msg = send(alice, room)
    k = last_seq(server, room)
    reaction = react(bob, msg, "👍")
    assert set(reaction) == {"id", "message", "user", "emoji", "created_at"}
    assert reaction["message"] == msg["id"] and reaction["user"] == bob.id
    assert reaction["emoji"] == "👍"
    assert react(bob, msg, "👍", expect=200) == reaction
    assert count(server, "reactions", msg) == 1
    assert room_events(server, room, k) == [(k + 1, "reaction.added", "👍")]
    assert bob.get("/api/auth/me/").json()["activity"]["reactions_given"] == 1


def test_reactions_aggregate_from_two_points_of_view(server, alice, bob):
    room = group(alice, bob)
    msg = send(alice, room)
    react(alice, msg, "👍")
    react(bob, msg, "👍")
    react(bob, msg, "❤️")
    assert get_message(alice, msg)["reactions"] == [
        {"emoji": "👍", "count": 2, "me": True},
        {"emoji": "❤️", "count": 1, "me": False},
    ]
    assert get_message(bob, msg)["reactions"] == [
        {"emoji": "👍", "count": 2, "me": True},
        {"emoji": "❤️", "count": 1, "me": True},
    ]
    listed = [m for m in results(alice, MESSAGES, room=room["id"]) if m["id"] == msg["id"]]
    assert listed[0]["reactions"][1] == {"emoji": "❤️", "count": 1, "me": False}


VALID_EMOJI = [
    "👍", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", ":+1:", "a", "+1", "é", "x" * 64,
    "😀" * 16,                      # 64 bytes
]
INVALID_EMOJI = [
    "", " ", "👍 ", " 👍", "a b", "\t", "\n", "a\rb", "\u000b", "\u00a0", "\u1680",
    "\u2000", "\u2005", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000",
    "\u0085", "\u0080", "\u009f", "\u007f", "\u0001", "\u001f", "x" * 65,
    "😀" * 17,                      # 68 bytes
    "é" * 33,                       # 66 bytes
    5, True, ["👍"], {"e": "👍"},
]


def test_emoji_validation_corpus(server, alice):
    room = group(alice)
    msg = send(alice, room)
    for emoji in VALID_EMOJI:
        r = alice.post(REACTIONS, json={"message": msg["id"], "emoji": emoji})
        assert r.status_code == 201, (emoji, r.text)
        assert r.json()["emoji"] == emoji
    for emoji in INVALID_EMOJI:
        r = alice.post(REACTIONS, json={"message": msg["id"], "emoji": emoji})
        assert r.status_code == 400, (emoji, r.text)
        assert "emoji" in r.json(), (emoji, r.text)
    assert_field_error(alice.post(REACTIONS, json={"message": msg["id"]}), "emoji")
    assert_field_error(alice.post(REACTIONS, json={"message": msg["id"], "emoji": None}),
                       "emoji")
    assert count(server, "reactions", msg) == len(VALID_EMOJI)


def test_invalid_utf8_body_is_400(server, alice):
    room = group(alice)
    msg = send(alice, room)
    for path in (REACTIONS, READS):
        body = b'{"message": "' + msg["id"].encode() + b'", "emoji": "\xf0\x9f\x91"}'
        r = alice.post(path, data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
    assert count(server, "reactions", msg) == 0


def test_reaction_needs_participation(server, alice, bob, carol):
    private = group(alice, bob)
    public = public_group(alice, bob)
    hidden = send(alice, private)
    open_ = send(alice, public)
    k = last_seq(server, public)
    assert_not_found(carol.post(REACTIONS, json={"message": hidden["id"], "emoji": "👍"}))
    assert_forbidden(carol.post(REACTIONS, json={"message": open_["id"], "emoji": "👍"}))
    assert_not_found(carol.post(REACTIONS, json={"message": str(uuid.uuid4()), "emoji": "👍"}))
    assert_field_error(carol.post(REACTIONS, json={"emoji": "👍"}), "message")
    assert count(server, "reactions", hidden) == 0 and count(server, "reactions", open_) == 0
    assert last_seq(server, public) == k
    # the visitor can see the public message's reactions, though
    react(bob, open_)
    assert get_message(carol, open_)["reactions"] == [{"emoji": "👍", "count": 1, "me": False}]


def test_reaction_refused_on_deleted_message_and_archived_room(server, alice, bob):
    room = group(alice, bob)
    gone = send(alice, room, "gone")
    assert alice.delete(f"{MESSAGES}{gone['id']}/").status_code == 204
    assert bob.post(REACTIONS, json={"message": gone["id"], "emoji": "👍"}).status_code == 400
    msg = send(alice, room)
    reaction = react(bob, msg)
    r = alice.patch(f"{ROOMS}{room['id']}/", json={"is_archived": True})
    assert r.status_code == 200, r.text
    assert_forbidden(bob.post(REACTIONS, json={"message": msg["id"], "emoji": "🎉"}))
    assert_forbidden(bob.delete(f"{REACTIONS}{reaction['id']}/"))
    # receipts are still fine in an archived room
    read(bob, msg)


def test_reaction_update_own_emoji(server, alice, bob, carol):
    room = group(alice, bob)
    msg = send(alice, room)
    reaction = react(bob, msg, "👍")
    other = react(bob, msg, "🎉")
    k = last_seq(server, room)
    url = f"{REACTIONS}{reaction['id']}/"
    assert_forbidden(alice.patch(url, json={"emoji": "❤️"}))
    assert_not_found(carol.patch(url, json={"emoji": "❤️"}))
    assert_field_error(bob.put(url, json={}), "emoji")
    assert_field_error(bob.patch(url, json={"emoji": "a b"}), "emoji")
    assert_field_error(bob.patch(url, json={"emoji": "🎉"}), "emoji")   # already there
    assert last_seq(server, room) == k
    r = bob.patch(url, json={"emoji": "❤️", "message": str(uuid.uuid4())})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["id"] == reaction["id"] and changed["emoji"] == "❤️"
    assert changed["message"] == msg["id"]
    assert room_events(server, room, k) == [(k + 1, "reaction.removed", "👍"),
                                            (k + 2, "reaction.added", "❤️")]
    # the same emoji again, or PATCH without emoji: nothing changes
    for body in ({"emoji": "❤️"}, {}):
        r = bob.patch(url, json=body)
        assert r.status_code == 200 and r.json() == changed
    assert last_seq(server, room) == k + 2
    assert r.json()["id"] != other["id"]
    assert {x["emoji"] for x in get_message(alice, msg)["reactions"]} == {"❤️", "🎉"}


def test_reaction_delete_own_only(server, alice, bob, carol):
    room = group(alice, bob)
    msg = send(alice, room)
    reaction = react(bob, msg, "👍")
    k = last_seq(server, room)
    url = f"{REACTIONS}{reaction['id']}/"
    assert_forbidden(alice.delete(url))
    assert_not_found(carol.delete(url))
    r = bob.delete(url)
    assert r.status_code == 204 and r.content == b""
    assert room_events(server, room, k) == [(k + 1, "reaction.removed", "👍")]
    assert get_message(alice, msg)["reactions"] == []
    assert_not_found(bob.get(url))
    assert_not_found(bob.delete(url))


def test_reaction_list_and_retrieve_visibility(server, alice, bob, carol):
    room = group(alice, bob)
    other = group(carol)
    m1, m2 = send(alice, room, "one"), send(alice, room, "two")
    r1 = react(bob, m1, "👍")
    r2 = react(alice, m2, "🎉")
    r3 = react(alice, m1, "🎉")
    mine = send(carol, other)
    react(carol, mine, "👀")
    assert [x["id"] for x in results(alice, REACTIONS)] == [r1["id"], r2["id"], r3["id"]]
    assert [x["id"] for x in results(alice, REACTIONS, message=m1["id"])] == [r1["id"], r3["id"]]
    assert [x["id"] for x in results(alice, REACTIONS, user=bob.id)] == [r1["id"]]
    assert_not_found(results(carol, REACTIONS, expect=404, message=m1["id"]))
    assert [x["emoji"] for x in results(carol, REACTIONS)] == ["👀"]
    assert alice.get(f"{REACTIONS}{r1['id']}/").json() == r1
    assert_not_found(carol.get(f"{REACTIONS}{r1['id']}/"))
    assert_field_error(alice.get(REACTIONS, params={"message": "x"}), "message")
