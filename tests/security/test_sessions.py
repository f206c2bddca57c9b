"""Organizer sessions and credentials: cookie flags, a fresh token at every
login, logout, idle and absolute expiry, the Argon2id cost, and the login
rate limits (failures per address and account, and per address)."""

from __future__ import annotations

import re
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.domain import access
from app.models import AuthSession, Organizer, utcnow
from tests import factories as f
from tests.conftest import SECRET

from .world import csrf_from, seed


def _login(client: TestClient, name: str = "Org", password: str = f.PASSWORD) -> Any:
    token = csrf_from(client.get("/login").text)
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


def _set_cookies(response: Any) -> dict[str, Any]:
    jar: dict[str, Any] = {}
    for header in response.headers.get_list("set-cookie"):
        cookie = SimpleCookie()
        cookie.load(header)
        jar.update({name: morsel for name, morsel in cookie.items()})
    return jar


def _assert_flags(morsel: Any, *, secure: bool = False) -> None:
    assert morsel["httponly"] is True, f"{morsel.key} is not HttpOnly"
    assert str(morsel["samesite"]).lower() == "lax", f"{morsel.key} is not SameSite=Lax"
    assert morsel["path"] == "/"
    assert bool(morsel["secure"]) is secure


def test_every_cookie_is_httponly_and_samesite_lax(client: TestClient, session: Session) -> None:
    w = seed(session, SECRET)
    f.organizer(session)
    seen: dict[str, Any] = {}
    seen.update(_set_cookies(client.get("/login")))  # the CSRF cookie
    seen.update(_set_cookies(_login(client)))
    client.cookies.clear()
    page = client.get(f"/join/{w.code}")
    r = client.post(
        f"/join/{w.code}",
        data={"display_name": "Ana", "affiliation": "ODIHR", "csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )
    seen.update(_set_cookies(r))
    client.cookies.clear()
    r = client.get(f"/w/{w.code}/projector", params={"key": w.keys["projector"]})
    seen.update(_set_cookies(r))
    client.cookies.clear()
    r = client.get(
        f"/w/{w.code}/facilitate", params={"key": w.keys["facilitator"]}, follow_redirects=False
    )
    seen.update({f"facilitator {k}": v for k, v in _set_cookies(r).items()})
    pc, pj = f.cookie_names(w.uid)
    names = {"lw_csrf", "lw_session", pc, pj, f"facilitator {pc}"}
    assert names <= seen.keys(), sorted(seen)
    for morsel in seen.values():
        _assert_flags(morsel)


def test_cookies_are_secure_when_served_over_https(client_with: Any, session: Session) -> None:
    client = client_with(cookie_secure=True)
    with Session(client.app.state.engine) as s:
        f.organizer(s)
    # Secure cookies (the CSRF cookie included) only travel back over HTTPS.
    https = TestClient(client.app, base_url="https://testserver")
    jar = _set_cookies(_login(https))
    _assert_flags(jar["lw_session"], secure=True)


def test_cookies_are_secure_on_https_requests_without_the_setting(
    client: TestClient, session: Session
) -> None:
    """Served over HTTPS (or through a trusted proxy that says so), the
    cookies are Secure even when LESSONS_COOKIE_SECURE was forgotten."""
    f.organizer(session)
    https = TestClient(client.app, base_url="https://testserver")
    jar = {**_set_cookies(https.get("/login")), **_set_cookies(_login(https))}
    _assert_flags(jar["lw_csrf"], secure=True)
    _assert_flags(jar["lw_session"], secure=True)


def test_each_login_gets_a_new_token_stored_only_as_a_hash(
    client: TestClient, session: Session
) -> None:
    f.organizer(session)
    first = _login(client).cookies["lw_session"]
    # Logging in again with the old cookie still present: a new token, never the old one.
    second = _login(client).cookies["lw_session"]
    assert first != second and len(second) >= 32
    hashes = set(session.exec(select(AuthSession.token_hash)).all())
    assert {access.hash_token(first), access.hash_token(second)} <= hashes
    assert not {first, second} & hashes, "a session token is stored in clear"


def test_logout_invalidates_the_session(client: TestClient, session: Session) -> None:
    f.organizer(session)
    token = _login(client).cookies["lw_session"]
    assert client.get("/organizer").status_code == 200
    page = client.get("/organizer").text
    r = client.post("/logout", data={"csrf_token": csrf_from(page)}, follow_redirects=False)
    assert r.status_code == 303
    deleted = _set_cookies(r)["lw_session"]
    assert deleted.value == "" or deleted["max-age"] in ("0", 0)
    # The old token, replayed, opens nothing any more.
    client.cookies.clear()
    client.cookies.set("lw_session", token)
    r = client.get("/organizer", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert (
        client.post("/api/v1/workshops", json={"title": "x"}, headers=f.bearer(token)).status_code
        == 401
    )
    session.expire_all()
    assert session.exec(select(AuthSession)).all() == []


def _age_session(session: Session, *, idle: timedelta, age: timedelta) -> None:
    row = session.exec(select(AuthSession)).one()
    now = utcnow()
    row.last_seen_at = now - idle
    row.created_at = now - age
    session.add(row)
    session.commit()


def test_sessions_expire_when_idle(client_with: Any) -> None:
    client = client_with(session_idle_minutes=5, session_absolute_hours=1)
    with Session(client.app.state.engine, expire_on_commit=False) as s:
        f.organizer(s)
        _login(client)
        _age_session(s, idle=timedelta(minutes=4), age=timedelta(minutes=30))
        assert client.get("/organizer", follow_redirects=False).status_code == 200
        _age_session(s, idle=timedelta(minutes=6), age=timedelta(minutes=30))
        r = client.get("/organizer", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        s.expire_all()
        assert s.exec(select(AuthSession)).all() == [], "an expired session row was kept"


def test_sessions_expire_after_their_absolute_lifetime(client_with: Any) -> None:
    client = client_with(session_idle_minutes=5, session_absolute_hours=1)
    with Session(client.app.state.engine, expire_on_commit=False) as s:
        f.organizer(s)
        token = _login(client).cookies["lw_session"]
        # Active a minute ago, but created 61 minutes ago: over the 1-hour lifetime.
        _age_session(s, idle=timedelta(minutes=1), age=timedelta(minutes=61))
        client.cookies.clear()
        r = client.post("/api/v1/workshops", json={"title": "x"}, headers=f.bearer(token))
        assert r.status_code == 401


def test_passwords_are_hashed_with_argon2id_at_owasp_cost(session: Session) -> None:
    f.organizer(session)
    stored = session.exec(select(Organizer.password_hash)).one()
    m = re.fullmatch(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[^$]+\$[^$]+", stored)
    assert m, f"not an Argon2id hash: {stored[:30]}"
    memory_kib, iterations, parallelism = map(int, m.groups())
    assert memory_kib >= 19456 and iterations >= 2 and parallelism >= 1
    assert f.PASSWORD not in stored


def _api_login(client: TestClient, name: str = "Org", password: str = f.PASSWORD) -> Any:
    return client.post("/api/v1/login", json={"name": name, "password": password})


def test_a_wrong_password_on_the_login_form_is_a_401(client_with: Any) -> None:
    client = client_with()
    with Session(client.app.state.engine) as s:
        f.organizer(s)
    quiet = TestClient(client.app, raise_server_exceptions=False)
    assert _login(quiet, password="not the password").status_code == 401


def test_login_is_rate_limited_per_address_and_account(client_with: Any) -> None:
    client = client_with(rate_logins_per_minute=2)
    with Session(client.app.state.engine) as s:
        f.organizer(s)
    assert _api_login(client, password="wrong password 1").status_code == 401
    assert _api_login(client, password="wrong password 2").status_code == 401
    # The right password now gets no further from this address (the name is
    # compared case-insensitively)...
    r = _login(client, name="org")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # ... but from another one it does: failures elsewhere lock nobody out.
    elsewhere = TestClient(client.app, client=("192.0.2.7", 40000))
    assert _api_login(elsewhere).status_code == 200


def test_login_is_rate_limited_per_ip(client_with: Any) -> None:
    client = client_with(rate_logins_per_minute=1)  # 3 per IP per minute
    with Session(client.app.state.engine) as s:
        f.organizer(s)
    for name in ("alpha", "bravo", "charlie"):
        assert _api_login(client, name=name, password="guess guess").status_code == 401
    r = _login(client)  # a name never tried, with the right password
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # Another address is not affected.
    elsewhere = TestClient(client.app, client=("192.0.2.8", 40000))
    assert _api_login(elsewhere).status_code == 200
