"""API.md §1 — registration, login, tokens, sessions, CSRF, logout, users.

A real parleyd (conftest's `server`) driven over HTTP with plain `requests`
(so cookies and headers are exactly what a client sends); tokens are forged
by hand here (base64url + HMAC) with the server's secret.
"""
import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
import requests

PASSWORD = "correct horse 1"
NO_ACCOUNT = "No active account found with the given credentials"


# --- fixtures and helpers -------------------------------------------------------

@pytest.fixture(scope="module")
def base(server):
    return server.url


@pytest.fixture(scope="module")
def jwt_secret(server):
    return server.jwt_secret


def api(base, path):
    return base + "/api/auth/" + path


def new_name(prefix="u"):
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def register(base, username=None, password=PASSWORD, **fields):
    body = {"username": username or new_name(), "password": password, **fields}
    return requests.post(api(base, "register/"), json=body, timeout=30)


def login(base, username, password=PASSWORD, session=None):
    return (session or requests).post(api(base, "login/"), timeout=30,
                                      json={"username": username, "password": password})


def signed_up(base, **fields):
    """Registers and logs in a user: (user object, login answer, requests.Session
    holding the login's cookies)."""
    username = new_name()
    r = register(base, username, **fields)
    assert r.status_code == 201, r.text
    session = requests.Session()
    answer = login(base, username, session=session)
    assert answer.status_code == 200, answer.text
    return r.json(), answer.json(), session


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(secret, claims, alg="HS256"):
    """A JWT signed by hand (no pyjwt needed): HS256/HS512 or alg none."""
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    if alg == "none":
        return f"{header}.{payload}."
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    sig = hmac.new(secret.encode(), signing_input, digest).digest()
    return f"{header}.{payload}.{b64url(sig)}"


def claims(user_id, token_type="access", ttl=300):
    now = int(time.time())
    return {"sub": user_id, "type": token_type, "jti": str(uuid.uuid4()),
            "iat": now, "exp": now + ttl}


def set_cookies(response):
    """The Set-Cookie header lines of a response."""
    raw = response.raw.headers
    return raw.getlist("Set-Cookie") if hasattr(raw, "getlist") else \
        [v for k, v in raw.items() if k.lower() == "set-cookie"]


def cookie_line(response, name):
    lines = [c for c in set_cookies(response) if c.startswith(name + "=")]
    assert lines, f"no {name} cookie in {set_cookies(response)}"
    return lines[0]


# --- register ------------------------------------------------------------------

def test_register_answers_201_with_the_user_and_email(base):
    username = new_name()
    r = register(base, username, email="ann@example.com", display_name="Ann")
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["username"] == username
    assert user["email"] == "ann@example.com"
    assert user["display_name"] == "Ann"
    assert user["is_staff"] is False
    uuid.UUID(user["id"])
    assert user["date_joined"].endswith("Z")
    assert user["activity"] == {"messages_sent": 0, "reactions_given": 0,
                                "last_message_at": None, "last_seen": None}
    assert "password" not in r.text and PASSWORD not in r.text


def test_register_stores_an_argon2id_hash_and_one_presence_record(base, server):
    user = register(base).json()
    stored = server.sql_value("SELECT password_hash FROM users WHERE id = %s", user["id"])
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert server.sql_value("SELECT count(*) FROM presence WHERE user_id = %s",
                            user["id"]) == "1"
    assert server.sql_value("SELECT count(*) FROM notification_settings WHERE user_id = %s",
                            user["id"]) == "1"


def test_register_email_and_display_name_are_optional(base):
    r = register(base)
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "" and r.json()["display_name"] == ""


@pytest.mark.parametrize("username", [
    "ab",                 # too short
    "a" * 151,            # too long
    "with space",
    "at@sign",
    "plus+sign",
    "ümlaut",             # ASCII letters only
    "",
    None,                 # missing
    42,                   # wrong type
])
def test_register_refuses_bad_usernames(base, username):
    body = {"password": PASSWORD}
    if username is not None:
        body["username"] = username
    r = requests.post(api(base, "register/"), json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert "username" in r.json()


@pytest.mark.parametrize("make", [
    lambda tag: tag[:3],                        # the shortest allowed
    lambda tag: f"A.b-c_9{tag}",
    lambda tag: ("x" * 150)[:150 - len(tag)] + tag,   # the longest allowed
])
def test_register_accepts_letters_digits_and_dot_dash_underscore(base, make):
    username = make(uuid.uuid4().hex)
    r = register(base, username)
    # a three-character name may have been taken by an earlier run
    assert r.status_code == 201 or \
        r.json() == {"username": ["A user with that username already exists."]}, r.text


def test_register_refuses_a_taken_username(base):
    username = new_name()
    assert register(base, username).status_code == 201
    r = register(base, username, password="another password")
    assert r.status_code == 400
    assert r.json() == {"username": ["A user with that username already exists."]}


def test_usernames_are_case_sensitive(base):
    username = new_name("Case")
    assert register(base, username).status_code == 201
    assert register(base, username.lower()).status_code == 201


@pytest.mark.parametrize("password", ["short1!", "", None, 12345678])
def test_register_refuses_bad_passwords(base, password):
    body = {"username": new_name()}
    if password is not None:
        body["password"] = password
    r = requests.post(api(base, "register/"), json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert "password" in r.json()


def test_register_password_of_eight_characters_is_enough(base):
    assert register(base, password="12345678").status_code == 201


@pytest.mark.parametrize("email", ["nope", "a@b", "a b@example.com", "@example.com",
                                   "a@@example.com", "a@.com", 42])
def test_register_refuses_bad_emails(base, email):
    r = register(base, email=email)
    assert r.status_code == 400, r.text
    assert "email" in r.json()


def test_register_refuses_a_display_name_that_is_not_a_string(base):
    r = register(base, display_name=["x"])
    assert r.status_code == 400
    assert "display_name" in r.json()


def test_bad_registration_creates_nothing(base):
    username = new_name()
    assert register(base, username, email="bad").status_code == 400
    assert login(base, username).status_code == 401
    assert register(base, username).status_code == 201


def test_register_refuses_a_non_json_body(base):
    r = requests.post(api(base, "register/"), data="username=x",
                      headers={"Content-Type": "application/x-www-form-urlencoded"},
                      timeout=30)
    assert r.status_code == 415


# --- login -----------------------------------------------------------------

def test_login_answers_tokens_user_and_cookies(base):
    username = new_name()
    user = register(base, username, email="l@example.com").json()
    r = login(base, username)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access", "refresh", "user"}
    assert body["user"]["id"] == user["id"]
    assert body["user"]["email"] == "l@example.com"
    session = cookie_line(r, "sessionid")
    csrf = cookie_line(r, "csrftoken")
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/" in session
    assert "HttpOnly" not in csrf and "SameSite=Lax" in csrf
    assert r.cookies["sessionid"] and r.cookies["csrftoken"]
    assert r.cookies["sessionid"] != r.cookies["csrftoken"]


def test_access_token_claims(base):
    user, tokens, _ = signed_up(base)
    payload = tokens["access"].split(".")[1]
    header = json.loads(base64.urlsafe_b64decode(tokens["access"].split(".")[0] + "=="))
    claims_ = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert header["alg"] == "HS256"
    assert claims_["sub"] == user["id"] and claims_["type"] == "access"
    assert claims_["exp"] > claims_["iat"] and claims_["jti"]


def test_login_with_a_wrong_password_is_401(base):
    username = new_name()
    register(base, username)
    r = login(base, username, "wrong password")
    assert r.status_code == 401
    assert r.json() == {"detail": NO_ACCOUNT}
    assert "sessionid" not in r.cookies


def test_login_of_an_unknown_user_is_401(base):
    r = login(base, new_name(), PASSWORD)
    assert r.status_code == 401
    assert r.json() == {"detail": NO_ACCOUNT}


@pytest.mark.parametrize("body,field", [({"password": PASSWORD}, "username"),
                                        ({"username": "someone"}, "password"),
                                        ({"username": 1, "password": PASSWORD}, "username")])
def test_login_refuses_missing_fields(base, body, field):
    r = requests.post(api(base, "login/"), json=body, timeout=30)
    assert r.status_code == 400
    assert field in r.json()


# --- authenticating requests ---------------------------------------------------

def test_me_with_a_bearer_token(base):
    user, tokens, _ = signed_up(base, email="me@example.com")
    r = requests.get(api(base, "me/"), headers=bearer(tokens["access"]), timeout=30)
    assert r.status_code == 200
    assert r.json()["id"] == user["id"] and r.json()["email"] == "me@example.com"


def test_me_with_the_session_cookie_alone(base):
    user, _, session = signed_up(base)
    r = session.get(api(base, "me/"), timeout=30)
    assert r.status_code == 200
    assert r.json()["id"] == user["id"]


def test_cookie_auth_unsafe_method_without_csrf_header_is_403(base):
    _, _, session = signed_up(base)
    r = session.patch(base + "/api/messaging/presence/me/", json={"status": "busy"},
                      timeout=30)
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]


def test_cookie_auth_unsafe_method_with_a_wrong_csrf_header_is_403(base):
    _, _, session = signed_up(base)
    r = session.patch(base + "/api/messaging/presence/me/", json={"status": "busy"},
                      headers={"X-CSRFToken": "not-the-token"}, timeout=30)
    assert r.status_code == 403


def test_cookie_auth_unsafe_method_with_csrf_header_works(base):
    _, _, session = signed_up(base)
    r = session.patch(base + "/api/messaging/presence/me/", json={"status": "busy"},
                      headers={"X-CSRFToken": session.cookies["csrftoken"]}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "busy"


def test_an_unknown_session_cookie_is_401(base):
    r = requests.get(api(base, "me/"), cookies={"sessionid": "made-up"}, timeout=30)
    assert r.status_code == 401
    assert "WWW-Authenticate" in r.headers


PROTECTED = [
    ("GET", "/api/auth/me/"),
    ("GET", "/api/auth/users/"),
    ("GET", "/api/messaging/presence/"),
    ("POST", "/api/messaging/presence/"),
    ("GET", "/api/messaging/presence/me/"),
    ("PATCH", "/api/messaging/presence/me/"),
    ("PUT", "/api/messaging/presence/me/"),
    ("GET", f"/api/messaging/presence/{uuid.UUID(int=1)}/"),
    ("PATCH", f"/api/messaging/presence/{uuid.UUID(int=1)}/"),
    ("DELETE", f"/api/messaging/presence/{uuid.UUID(int=1)}/"),
    ("GET", "/api/messaging/rooms/"),
    ("POST", "/api/messaging/rooms/"),
    ("GET", "/api/messaging/messages/"),
    ("POST", "/api/messaging/messages/"),
    ("GET", "/api/messaging/reads/"),
    ("GET", "/api/messaging/reactions/"),
    ("GET", "/api/messaging/notifications/"),
    ("GET", "/api/messaging/notification-settings/me/"),
]


@pytest.mark.parametrize("method,path", PROTECTED)
def test_protected_endpoints_without_credentials_are_401(base, method, path):
    kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    r = requests.request(method, base + path, timeout=30, **kwargs)
    assert r.status_code == 401, r.text
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert r.json()["detail"] == "Authentication credentials were not provided."


# --- forged and expired tokens -------------------------------------------------

def get_me(base, token):
    return requests.get(api(base, "me/"), headers=bearer(token), timeout=30)


def test_a_token_crafted_with_the_server_secret_is_accepted(base, jwt_secret):
    # sanity check for the forgery tests below: the crafting itself is right
    user, _, _ = signed_up(base)
    assert get_me(base, craft(jwt_secret, claims(user["id"]))).status_code == 200


def test_alg_none_token_is_401(base):
    user, _, _ = signed_up(base)
    r = get_me(base, craft("", claims(user["id"]), alg="none"))
    assert r.status_code == 401
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")


def test_token_signed_with_another_secret_is_401(base):
    user, _, _ = signed_up(base)
    assert get_me(base, craft("not the secret" * 4, claims(user["id"]))).status_code == 401


def test_token_with_another_hmac_algorithm_is_401(base, jwt_secret):
    user, _, _ = signed_up(base)
    assert get_me(base, craft(jwt_secret, claims(user["id"]), alg="HS512")).status_code == 401


def test_expired_token_is_401(base, jwt_secret):
    user, _, _ = signed_up(base)
    assert get_me(base, craft(jwt_secret, claims(user["id"], ttl=-10))).status_code == 401


def test_refresh_token_used_as_access_token_is_401(base):
    _, tokens, _ = signed_up(base)
    assert get_me(base, tokens["refresh"]).status_code == 401


def test_token_without_type_is_401(base, jwt_secret):
    user, _, _ = signed_up(base)
    c = claims(user["id"])
    del c["type"]
    assert get_me(base, craft(jwt_secret, c)).status_code == 401


def test_tampered_token_is_401(base):
    _, tokens, _ = signed_up(base)
    head, payload, sig = tokens["access"].split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["sub"] = str(uuid.uuid4())
    assert get_me(base, f"{head}.{b64url(json.dumps(data).encode())}.{sig}").status_code == 401


def test_malformed_authorization_header_is_401(base):
    r = requests.get(api(base, "me/"), headers={"Authorization": "Basic abc"}, timeout=30)
    assert r.status_code == 401


# --- refresh -------------------------------------------------------------------

def refresh(base, token):
    return requests.post(api(base, "token/refresh/"), json={"refresh": token}, timeout=30)


def test_refresh_rotates_the_pair(base):
    user, tokens, _ = signed_up(base)
    r = refresh(base, tokens["refresh"])
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert set(fresh) == {"access", "refresh"}
    assert fresh["refresh"] != tokens["refresh"]
    assert get_me(base, fresh["access"]).json()["id"] == user["id"]
    # the new refresh token works in turn
    assert refresh(base, fresh["refresh"]).status_code == 200


def test_a_used_refresh_token_is_401(base):
    _, tokens, _ = signed_up(base)
    assert refresh(base, tokens["refresh"]).status_code == 200
    r = refresh(base, tokens["refresh"])
    assert r.status_code == 401
    assert r.json() == {"detail": "Token is invalid or expired", "code": "token_not_valid"}


def test_refresh_with_an_access_token_is_401(base):
    _, tokens, _ = signed_up(base)
    assert refresh(base, tokens["access"]).status_code == 401


def test_refresh_with_garbage_is_401(base):
    assert refresh(base, "not.a.token").status_code == 401


def test_refresh_with_a_forged_unrecorded_token_is_401(base, jwt_secret):
    # well signed but never issued: its jti is not in refresh_tokens
    user, _, _ = signed_up(base)
    assert refresh(base, craft(jwt_secret, claims(user["id"], "refresh"))).status_code == 401


def test_refresh_without_a_token_is_400(base):
    r = requests.post(api(base, "token/refresh/"), json={}, timeout=30)
    assert r.status_code == 400
    assert "refresh" in r.json()


# --- logout --------------------------------------------------------------------

def test_logout_ends_the_session_and_revokes_the_refresh_token(base):
    _, tokens, session = signed_up(base)
    sid = session.cookies["sessionid"]
    r = session.post(api(base, "logout/"), json={"refresh": tokens["refresh"]},
                     headers={"X-CSRFToken": session.cookies["csrftoken"]}, timeout=30)
    assert r.status_code == 204, r.text
    assert "Max-Age=0" in cookie_line(r, "sessionid")
    assert "Max-Age=0" in cookie_line(r, "csrftoken")
    assert refresh(base, tokens["refresh"]).status_code == 401
    assert requests.get(api(base, "me/"), cookies={"sessionid": sid},
                        timeout=30).status_code == 401


def test_logout_by_cookie_alone_ends_the_login(base):
    _, tokens, session = signed_up(base)
    sid = session.cookies["sessionid"]
    r = session.post(api(base, "logout/"), headers={"X-CSRFToken": session.cookies["csrftoken"]},
                     timeout=30)
    assert r.status_code == 204
    assert requests.get(api(base, "me/"), cookies={"sessionid": sid}, timeout=30).status_code == 401
    # the refresh token of that login goes with it
    assert refresh(base, tokens["refresh"]).status_code == 401


def test_logout_by_refresh_token_alone_ends_the_login(base):
    _, tokens, session = signed_up(base)
    sid = session.cookies["sessionid"]
    r = requests.post(api(base, "logout/"), json={"refresh": tokens["refresh"]}, timeout=30)
    assert r.status_code == 204
    assert refresh(base, tokens["refresh"]).status_code == 401
    assert requests.get(api(base, "me/"), cookies={"sessionid": sid}, timeout=30).status_code == 401


def test_logout_with_cookie_needs_csrf(base):
    _, _, session = signed_up(base)
    assert session.post(api(base, "logout/"), timeout=30).status_code == 403
    assert session.get(api(base, "me/"), timeout=30).status_code == 200


def test_logout_ends_only_its_own_login(base):
    username = new_name()
    register(base, username)
    first = requests.Session()
    first_tokens = login(base, username, session=first).json()
    second = requests.Session()
    second_tokens = login(base, username, session=second).json()
    r = first.post(api(base, "logout/"), json={"refresh": first_tokens["refresh"]},
                   headers={"X-CSRFToken": first.cookies["csrftoken"]}, timeout=30)
    assert r.status_code == 204
    assert second.get(api(base, "me/"), timeout=30).status_code == 200
    assert refresh(base, second_tokens["refresh"]).status_code == 200


def test_anonymous_logout_is_204(base):
    assert requests.post(api(base, "logout/"), json={}, timeout=30).status_code == 204
    r = requests.post(api(base, "logout/"), json={"refresh": "garbage"}, timeout=30)
    assert r.status_code == 204


def test_a_refresh_token_after_logout_cannot_be_rotated(base):
    _, tokens, _ = signed_up(base)
    fresh = refresh(base, tokens["refresh"]).json()
    requests.post(api(base, "logout/"), json={"refresh": fresh["refresh"]}, timeout=30)
    assert refresh(base, fresh["refresh"]).status_code == 401


# --- users/ ---------------------------------------------------------------------

def users(base, token, **params):
    return requests.get(api(base, "users/"), headers=bearer(token), params=params, timeout=30)


def test_users_search_matches_username_or_display_name(base):
    tag = uuid.uuid4().hex[:8]
    by_name = register(base, f"zed{tag}").json()
    by_display = register(base, new_name(), display_name=f"Big {tag.upper()} Fan").json()
    register(base, new_name())
    _, tokens, _ = signed_up(base)
    r = users(base, tokens["access"], search=tag)
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 2 and body["next"] is None and body["previous"] is None
    assert {u["id"] for u in body["results"]} == {by_name["id"], by_display["id"]}
    for item in body["results"]:
        assert set(item) == {"id", "username", "display_name"}


def test_users_are_ordered_by_username_and_paginated(base):
    tag = uuid.uuid4().hex[:8]
    names = [f"p{tag}{c}" for c in "dcab"]
    for name in names:
        register(base, name)
    _, tokens, _ = signed_up(base)
    first = users(base, tokens["access"], search=tag, page_size=3).json()
    assert first["count"] == 4
    assert [u["username"] for u in first["results"]] == sorted(names)[:3]
    assert first["next"] and "page=2" in first["next"] and first["next"].startswith("http")
    second = requests.get(first["next"], headers=bearer(tokens["access"]), timeout=30).json()
    assert [u["username"] for u in second["results"]] == sorted(names)[3:]


def test_users_search_treats_wildcards_literally(base):
    tag = uuid.uuid4().hex[:8]
    register(base, f"w{tag}abc")
    _, tokens, _ = signed_up(base)
    assert users(base, tokens["access"], search=f"{tag}abc").json()["count"] == 1
    assert users(base, tokens["access"], search=f"{tag}%").json()["count"] == 0
    assert users(base, tokens["access"], search=f"{tag}_bc").json()["count"] == 0


def test_users_never_show_email(base):
    tag = uuid.uuid4().hex[:8]
    register(base, f"mail{tag}", email="hidden@example.com")
    _, tokens, _ = signed_up(base)
    assert "hidden@example.com" not in users(base, tokens["access"], search=tag).text


def test_login_upgrades_a_hash_made_with_other_argon2_limits(server, server_factory):
    # a second node on the same database, configured with a higher opslimit
    other = server_factory({"password_ops": 2}, database=server.database)
    user = register(server.url).json()
    before = server.sql_value("SELECT password_hash FROM users WHERE id = %s", user["id"])
    assert "t=1" in before
    assert login(other.url, user["username"]).status_code == 200
    after = server.sql_value("SELECT password_hash FROM users WHERE id = %s", user["id"])
    assert after != before and "t=2" in after
    assert login(server.url, user["username"]).status_code == 200


def test_logout_without_a_body_is_204(base):
    r = requests.post(api(base, "logout/"), timeout=30)
    assert r.status_code == 204
