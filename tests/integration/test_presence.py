"""API.md §2.5 — presence records over REST: the caller's own record,
validation, visibility (self + people sharing a room), invisible shown as
offline to others, read-only records of others, DELETE resets.

The table is the truth for now (no live Redis overlay yet)."""
import uuid

import pytest

P = "/api/messaging/presence/"
FIELDS = {"id", "user", "status", "last_seen", "custom_status", "status_emoji",
          "away_since", "total_online_time", "is_online"}


def share_room(owner, *others):
    """A private group room of owner and others; returns its id."""
    r = owner.post("/api/messaging/rooms/", json={
        "name": f"r{uuid.uuid4().hex[:6]}", "room_type": "group",
        "participants": [o.id for o in others]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def record_of(user):
    r = user.get(P + "me/")
    assert r.status_code == 200, r.text
    return r.json()


# --- the caller's record --------------------------------------------------------

def test_every_user_has_an_offline_record_from_registration(alice):
    me = record_of(alice)
    assert set(me) == FIELDS
    assert me["user"] == alice.id
    assert me["status"] == "offline" and me["is_online"] is False
    assert me["custom_status"] == "" and me["status_emoji"] == ""
    assert me["away_since"] is None and me["total_online_time"] == 0
    uuid.UUID(me["id"])


def test_patch_me_sets_status_custom_status_and_emoji(alice):
    r = alice.patch(P + "me/", json={"status": "busy", "custom_status": "in a meeting",
                                     "status_emoji": "📅"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "busy" and body["is_online"] is True
    assert body["custom_status"] == "in a meeting" and body["status_emoji"] == "📅"
    assert record_of(alice) == body


def test_patch_me_changes_only_the_fields_given(alice):
    alice.patch(P + "me/", json={"status": "busy", "custom_status": "focus"})
    body = alice.patch(P + "me/", json={"status_emoji": "🎧"}).json()
    assert body["status"] == "busy" and body["custom_status"] == "focus"
    assert body["status_emoji"] == "🎧"


def test_put_me_works_like_patch(alice):
    r = alice.put(P + "me/", json={"status": "online"})
    assert r.status_code == 200
    assert r.json()["status"] == "online"


def test_away_since_is_set_while_away_only(alice):
    away = alice.patch(P + "me/", json={"status": "away"}).json()
    assert away["away_since"] is not None and away["away_since"].endswith("Z")
    # staying away keeps the moment it started
    again = alice.patch(P + "me/", json={"status": "away", "custom_status": "brb"}).json()
    assert again["away_since"] == away["away_since"]
    back = alice.patch(P + "me/", json={"status": "online"}).json()
    assert back["away_since"] is None


def test_going_offline_sets_last_seen(alice):
    alice.patch(P + "me/", json={"status": "online"})
    assert record_of(alice)["last_seen"] is None
    gone = alice.patch(P + "me/", json={"status": "offline"}).json()
    assert gone["last_seen"] is not None
    # the user's activity follows
    assert alice.get("/api/auth/me/").json()["activity"]["last_seen"] == gone["last_seen"]


def test_null_custom_status_clears_it(alice):
    alice.patch(P + "me/", json={"custom_status": "hello"})
    assert alice.patch(P + "me/", json={"custom_status": None}).json()["custom_status"] == ""


def test_post_presence_returns_the_callers_record_with_200(alice):
    r = alice.post(P, json={})
    assert r.status_code == 200, r.text
    assert r.json()["user"] == alice.id and r.json()["id"] == record_of(alice)["id"]


def test_post_presence_applies_the_fields_given(alice):
    r = alice.post(P, json={"status": "away"})
    assert r.status_code == 200
    assert r.json()["status"] == "away"


# --- validation -----------------------------------------------------------------

@pytest.mark.parametrize("body,field", [
    ({"status": "sleeping"}, "status"),
    ({"status": "ONLINE"}, "status"),
    ({"status": 1}, "status"),
    ({"status": None}, "status"),
    ({"custom_status": "x" * 101}, "custom_status"),
    ({"custom_status": ["x"]}, "custom_status"),
    ({"status_emoji": 7}, "status_emoji"),
    ({"status_emoji": "x" * 65}, "status_emoji"),
])
def test_bad_input_is_400_naming_the_field_and_changes_nothing(alice, body, field):
    before = record_of(alice)
    r = alice.patch(P + "me/", json={**body, **({"custom_status": "changed"}
                                                 if field != "custom_status" else {})})
    assert r.status_code == 400, r.text
    assert field in r.json()
    assert record_of(alice) == before


def test_custom_status_of_100_characters_is_accepted(alice):
    text = "é" * 100                      # characters, not bytes
    r = alice.patch(P + "me/", json={"custom_status": text})
    assert r.status_code == 200
    assert r.json()["custom_status"] == text


def test_bad_input_on_create_is_400(alice):
    assert alice.post(P, json={"status": "nope"}).status_code == 400


def test_unknown_fields_are_ignored(alice):
    r = alice.patch(P + "me/", json={"status": "busy", "user": str(uuid.uuid4()),
                                     "total_online_time": 99, "mood": "great"})
    assert r.status_code == 200
    assert r.json()["user"] == alice.id and r.json()["total_online_time"] == 0


# --- visibility -------------------------------------------------------------------

def test_a_stranger_cannot_see_your_record(alice, bob):
    mine = record_of(alice)
    assert bob.get(P + mine["id"] + "/").status_code == 404
    listed = bob.get(P, params={"user": alice.id}).json()
    assert listed["count"] == 0 and listed["results"] == []
    assert mine["id"] not in {p["id"] for p in bob.get(P).json()["results"]}


def test_sharing_a_room_makes_records_visible_both_ways(alice, bob):
    share_room(alice, bob)
    mine, theirs = record_of(alice), record_of(bob)
    r = bob.get(P + mine["id"] + "/")
    assert r.status_code == 200 and r.json()["user"] == alice.id
    assert alice.get(P + theirs["id"] + "/").status_code == 200
    listed = bob.get(P, params={"user": alice.id}).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == mine["id"]


def test_list_holds_own_record_and_roommates_only(server, alice, bob):
    carol = server.user()                 # shares no room with alice
    share_room(alice, bob)
    listed = alice.get(P).json()
    users = {p["user"] for p in listed["results"]}
    assert users == {alice.id, bob.id}
    assert listed["count"] == 2
    assert carol.id not in users


def test_list_filter_with_a_bad_user_id_is_400(alice):
    r = alice.get(P, params={"user": "not-a-uuid"})
    assert r.status_code == 400
    assert "user" in r.json()


def test_invisible_shows_as_offline_to_others_but_not_to_yourself(alice, bob):
    share_room(alice, bob)
    alice.patch(P + "me/", json={"status": "online"})
    mine = alice.patch(P + "me/", json={"status": "invisible"}).json()
    assert mine["status"] == "invisible" and mine["is_online"] is False
    seen = bob.get(P + mine["id"] + "/").json()
    assert seen["status"] == "offline" and seen["is_online"] is False
    listed = bob.get(P, params={"user": alice.id}).json()["results"][0]
    assert listed["status"] == "offline"


def test_others_see_your_status(alice, bob):
    share_room(alice, bob)
    mine = alice.patch(P + "me/", json={"status": "busy", "custom_status": "deep work"}).json()
    seen = bob.get(P + mine["id"] + "/").json()
    assert seen["status"] == "busy" and seen["custom_status"] == "deep work"


def test_unknown_record_is_404(alice):
    assert alice.get(P + str(uuid.uuid4()) + "/").status_code == 404


# --- writes by record id ------------------------------------------------------------

@pytest.mark.parametrize("method", ["patch", "put"])
def test_updating_your_own_record_by_id(alice, method):
    mine = record_of(alice)
    r = getattr(alice, method)(P + mine["id"] + "/", json={"status": "away"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "away" and r.json()["away_since"] is not None


@pytest.mark.parametrize("method", ["patch", "put", "delete"])
def test_a_roommates_record_is_read_only(alice, bob, method):
    share_room(alice, bob)
    theirs = record_of(bob)
    kwargs = {} if method == "delete" else {"json": {"status": "busy"}}
    r = getattr(alice, method)(P + theirs["id"] + "/", **kwargs)
    assert r.status_code == 403, r.text
    assert record_of(bob) == theirs


def test_forbidden_comes_before_validation(alice, bob):
    share_room(alice, bob)
    r = alice.patch(P + record_of(bob)["id"] + "/", json={"status": "nonsense"})
    assert r.status_code == 403


@pytest.mark.parametrize("method", ["patch", "put", "delete"])
def test_a_strangers_record_is_404_to_writes(alice, bob, method):
    theirs = record_of(bob)
    kwargs = {} if method == "delete" else {"json": {"status": "busy"}}
    assert getattr(alice, method)(P + theirs["id"] + "/", **kwargs).status_code == 404
    assert record_of(bob) == theirs


def test_delete_resets_your_record_to_offline(alice):
    mine = alice.patch(P + "me/", json={"status": "busy", "custom_status": "x",
                                        "status_emoji": "🔥"}).json()
    r = alice.delete(P + mine["id"] + "/")
    assert r.status_code == 204
    assert r.content == b""
    after = record_of(alice)
    assert after["id"] == mine["id"]
    assert after["status"] == "offline" and after["custom_status"] == ""
    assert after["status_emoji"] == "" and after["away_since"] is None
    assert after["last_seen"] is not None        # it went offline from busy
