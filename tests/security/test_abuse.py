"""Abuse limits in the app: guessing join codes, writing and voting too fast,
oversized bodies and websocket frames, too many sockets per participant. The
flood against a real server is in test_flood.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session
from starlette.websockets import WebSocketDisconnect

from tests import factories as f
from tests.conftest import SECRET

from .world import World, csrf_from, leave, seed


def _world(client: TestClient) -> World:
    with Session(client.app.state.engine, expire_on_commit=False) as s:
        return seed(s, SECRET)


def _retry_after(r: Any) -> int:
    assert r.status_code == 429, r.text[:200]
    return int(r.headers["retry-after"])


def test_guessing_join_codes_is_limited_per_ip(client_with: Any) -> None:
    client = client_with()  # the defaults: 30 failed joins per IP per minute
    w = _world(client)
    for i in range(30):
        assert client.get("/join", params={"code": f"NOPE{i:04d}"}).status_code == 404
    assert _retry_after(client.get("/join", params={"code": "NOPE9999"})) > 0
    # Only failures count: the right code still gets in...
    assert client.get("/join", params={"code": w.code}, follow_redirects=False).status_code == 303
    # ... and other addresses may still make typing mistakes.
    other = TestClient(client.app, client=("198.51.100.4", 5000))
    assert other.get("/join", params={"code": "NOPE9999"}).status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/join/{code}", "/api/v1/workshops/{code}", "/api/v1/workshops/{code}/participants"],
)
def test_guessing_codes_through_other_routes_is_limited_too(client_with: Any, path: str) -> None:
    client = client_with(rate_failed_joins_per_ip_per_minute=5)
    method = "POST" if path.endswith("participants") else "GET"
    body = {"json": {"display_name": "Guess", "affiliation": "ODIHR"}} if method == "POST" else {}
    for i in range(5):
        r = client.request(method, path.format(code=f"GUESS{i:03d}"), **body)
        assert r.status_code == 404
    r = client.request(method, path.format(code="GUESS999"), **body)
    assert _retry_after(r) > 0


def test_guessing_spread_over_many_addresses_is_limited_for_the_deployment(
    client_with: Any,
) -> None:
    client = client_with(rate_failed_joins_per_minute=8)
    w = _world(client)
    for i in range(8):  # 8 addresses, one wrong guess each: under any per-IP limit
        guesser = TestClient(client.app, client=(f"203.0.113.{i + 1}", 5000))
        assert guesser.get("/join", params={"code": f"NOPE{i:04d}"}).status_code == 404
    fresh = TestClient(client.app, client=("203.0.113.99", 5000))
    assert _retry_after(fresh.get("/join", params={"code": "NOPE9999"})) > 0
    # A right code is never refused: the room keeps joining during an attack.
    r = fresh.get("/join", params={"code": w.code}, follow_redirects=False)
    assert r.status_code == 303
    r = fresh.post(
        f"/api/v1/workshops/{w.code}/participants",
        json={"display_name": "Latecomer", "affiliation": "ODIHR"},
    )
    assert r.status_code == 201


def test_wrong_keys_tried_on_one_workshop_are_limited_per_code(client_with: Any) -> None:
    client = client_with(rate_failed_keys_per_code_per_minute=4)
    w = _world(client)
    tries = [
        ("GET", f"/w/{w.code}/facilitate?key=wrong1", {}),
        ("GET", f"/w/{w.code}/projector?key=wrong2", {}),
        (
            "POST",
            f"/api/v1/workshops/{w.code}/participants",
            {"json": {"display_name": "F", "facilitator_key": "wrong3"}},
        ),
        ("GET", f"/w/{w.code}/projector?key=wrong4", {}),
    ]
    for i, (method, url, body) in enumerate(tries):  # each from its own address
        guesser = TestClient(client.app, client=(f"198.51.100.{i + 10}", 5000))
        assert guesser.request(method, url, **body).status_code == 403
    guesser = TestClient(client.app, client=("198.51.100.50", 5000))
    assert _retry_after(guesser.get(f"/w/{w.code}/facilitate?key=wrong5")) > 0
    # Participants of that workshop are not affected.
    r = guesser.post(
        f"/api/v1/workshops/{w.code}/participants",
        json={"display_name": "Participant", "affiliation": "ODIHR"},
    )
    assert r.status_code == 201


def test_a_hundred_joins_from_one_ip_in_a_minute_are_fine(client_with: Any) -> None:
    client = client_with()  # defaults
    w = _world(client)
    statuses = [
        client.post(
            f"/api/v1/workshops/{w.code}/participants",
            json={"display_name": f"Person {i}", "affiliation": "ODIHR"},
        ).status_code
        for i in range(100)
    ]
    assert statuses == [201] * 100


def test_card_writing_is_limited_per_participant(client_with: Any) -> None:
    client = client_with(rate_cards_per_minute=3)
    w = _world(client)
    url = f"/api/v1/workshops/{w.code}/cards"
    pat = f.bearer(w.tokens["participant"])
    for i in range(3):
        card = {"focus_area_id": w.fa_c.id, "kind": "tool", "title": f"Card {i}"}
        assert client.post(url, json=card, headers=pat).status_code == 201
    card = {"focus_area_id": w.fa_c.id, "kind": "tool", "title": "One too many"}
    assert _retry_after(client.post(url, json=card, headers=pat)) > 0
    # The page route shares the limit...
    client.cookies.clear()
    r = client.post(
        f"/w/{w.code}/cards",
        data={"focus_area_id": str(w.fa_c.id), "kind": "tool", "title": "By page"},
        headers={**w.headers("participant"), "HX-Request": "true"},
    )
    assert _retry_after(r) > 0
    # ... and another participant is not held back.
    other = f.bearer(w.tokens["author2"])
    assert client.post(url, json=card, headers=other).status_code == 201


def test_voting_is_limited_per_participant(client_with: Any) -> None:
    client = client_with(rate_votes_per_minute=3)
    w = _world(client)
    url = f"/api/v1/workshops/{w.code}/cards/{w.vcard.id}/votes"
    pat = f.bearer(w.tokens["participant"])
    assert client.post(url, headers=pat).status_code == 200
    assert client.delete(url, headers=pat).status_code == 200
    assert client.post(url, headers=pat).status_code == 200
    assert _retry_after(client.post(url, headers=pat)) > 0
    client.cookies.clear()
    r = client.post(f"/w/{w.code}/cards/{w.vcard.id}/votes", headers=w.headers("participant"))
    assert _retry_after(r) > 0
    assert client.post(url, headers=f.bearer(w.tokens["author2"])).status_code == 200


def _chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * 8192
        sent += 8192


def test_bodies_over_64_kb_are_refused_with_413(client: TestClient, session: Session) -> None:
    w = seed(session, SECRET)
    pat = f.bearer(w.tokens["participant"])
    url = f"/api/v1/workshops/{w.code}/cards"
    json_type = {**pat, "content-type": "application/json"}
    r = client.post(url, content=b" " * (64 * 1024 + 1), headers=json_type)
    assert r.status_code == 413
    # Streamed without a Content-Length: counted as it arrives.
    r = client.post(url, content=_chunks(70_000), headers=json_type)
    assert r.status_code == 413
    # A form post through the page, streamed or not.
    client.cookies.clear()
    form_type = {**w.headers("participant"), "content-type": "application/x-www-form-urlencoded"}
    r = client.post(f"/w/{w.code}/cards", content=_chunks(70_000), headers=form_type)
    assert r.status_code == 413
    r = client.post(
        f"/w/{w.code}/cards",
        data={"focus_area_id": str(w.fa_c.id), "kind": "tool", "title": "t", "body": "x" * 70_000},
        headers=w.headers("participant"),
    )
    assert r.status_code == 413
    # Just under the limit is read (and refused by the rules, not by size).
    r = client.post(url, content=b" " * (60 * 1024) + b"{}", headers=json_type)
    assert r.status_code == 422


def test_oversized_websocket_frames_close_the_socket(client: TestClient, session: Session) -> None:
    w = seed(session, SECRET)
    headers = {**w.headers("participant"), "Origin": "http://testserver"}
    with client.websocket_connect(f"/ws/workshops/{w.code}", headers=headers) as sock:
        sock.send_text('{"type": "hello", "seq": null}')
        sock.receive_text()
        sock.send_text("x" * 5000)
        with pytest.raises(WebSocketDisconnect) as closed:
            for _ in range(10):
                sock.receive_text()
        assert closed.value.code == 1009


def test_a_participant_holds_at_most_five_sockets(client: TestClient, session: Session) -> None:
    w = seed(session, SECRET)
    url = f"/ws/workshops/{w.code}"
    headers = {**w.headers("participant"), "Origin": "http://testserver"}
    socks = []
    try:
        for _ in range(5):
            sock = client.websocket_connect(url, headers=headers).__enter__()
            sock.send_text('{"type": "hello", "seq": null}')
            sock.receive_text()
            socks.append(sock)
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect(url, headers=headers) as extra,
        ):
            extra.receive_text()
        assert refused.value.code == 4429
    finally:
        for sock in socks:
            leave(sock, client.app)
            sock.__exit__(None, None, None)


def test_a_join_page_post_needs_its_token_once_joined(client: TestClient, session: Session) -> None:
    """Joining again from a browser that already holds a seat is a cookie
    request like any other: it needs the page's CSRF token."""
    w = seed(session, SECRET)
    client.cookies.clear()
    page = client.get(f"/join/{w.code}")
    client.cookies.set(f.cookie_names(w.uid)[0], w.tokens["participant"])
    r = client.post(f"/join/{w.code}", data={"display_name": "Again", "affiliation": "ODIHR"})
    assert r.status_code == 403
    r = client.post(
        f"/join/{w.code}",
        data={"display_name": "Again", "affiliation": "ODIHR", "csrf_token": csrf_from(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
