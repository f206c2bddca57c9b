"""Pages in the browser's way: cookies, CSRF tokens in forms, htmx fragments,
and the live push on a websocket."""

from __future__ import annotations

import contextlib
import re
from concurrent.futures import CancelledError
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from tests import factories as f


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert m, "page has no CSRF token"
    return m.group(1)


def _login(client: TestClient, session: Session) -> None:
    f.organizer(session)
    page = client.get("/login").text
    r = client.post(
        "/login",
        data={"name": "Org", "password": f.PASSWORD, "csrf_token": _csrf(page)},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_organizer_creates_workshop_and_sees_links(client: TestClient, session: Session) -> None:
    _login(client, session)
    page = client.get("/organizer").text
    assert "osce-organized-crime-2007" in page
    r = client.post(
        "/organizer/workshops",
        data={
            "title": "OC 2007",
            "template": "osce-organized-crime-2007",
            "csrf_token": _csrf(page),
        },
        follow_redirects=True,
    )
    assert r.status_code == 200
    assert "/facilitate?key=" in r.text and "/projector?key=" in r.text
    code = re.search(r"/join/([A-Z2-9]{8})", r.text).group(1)  # type: ignore[union-attr]
    qr = client.get(f"/w/{code}/qr.svg")
    assert qr.headers["content-type"].startswith("image/svg") and b"<svg" in qr.content


def test_form_without_csrf_token_is_refused(client: TestClient, session: Session) -> None:
    _login(client, session)
    r = client.post("/organizer/workshops", data={"title": "x"})
    assert r.status_code == 403


def test_participant_joins_writes_and_sees_fragment(
    client: TestClient, session: Session, settings: Any
) -> None:
    ws = f.workshop(session, private_writing=False)
    f.set_phase(session, ws, 0, "collect")
    join_page = client.get(f"/join/{ws.code.lower()}")
    assert join_page.status_code == 200 and "OSCE Secretariat" in join_page.text
    r = client.post(
        f"/join/{ws.code}",
        data={"display_name": "Ana", "affiliation": "ODIHR", "csrf_token": _csrf(join_page.text)},
        follow_redirects=True,
    )
    assert r.status_code == 200 and "Add card" in r.text
    token = _csrf(r.text)
    fa_id = re.search(r'name="focus_area_id" value="(\d+)"', r.text).group(1)  # type: ignore[union-attr]
    r = client.post(
        f"/w/{ws.code}/cards",
        data={"focus_area_id": fa_id, "kind": "tool", "title": "<script>alert(1)</script>"},
        headers={"HX-Request": "true", "X-CSRF-Token": token},
    )
    assert r.status_code == 200, r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text and "<script>alert" not in r.text
    page = client.get(f"/w/{ws.code}").text
    assert "&lt;script&gt;" in page and "Ana" in page
    assert client.get(f"/w/{ws.code}").headers["cache-control"] == "no-store"
    assert "unsafe-inline" not in client.get("/").headers["content-security-policy"]


def test_websocket_push_reaches_the_board(client: TestClient, session: Session) -> None:
    ws = f.workshop(session, private_writing=False)
    fa = f.set_phase(session, ws, 0, "collect")
    _, token = f.join(session, ws, "Viewer")
    author, author_token = f.join(session, ws, "Author")
    client.cookies.set(f.cookie_names(ws.uid)[0], token)
    # Starlette's test session sometimes reports the server task's cancellation
    # at teardown, after every assertion below has run; tolerate only that.
    with (
        contextlib.suppress(CancelledError),
        client.websocket_connect(f"/ws/workshops/{ws.code}") as sock,
    ):
        sock.send_text('{"type": "hello", "seq": null}')
        first = sock.receive_text()
        assert 'id="ws-status"' in first
        r = client.post(
            f"/api/v1/workshops/{ws.code}/cards",
            json={"focus_area_id": fa.id, "kind": "tool", "title": "Financial investigations"},
            headers=f.bearer(author_token),
        )
        assert r.status_code == 201
        frame = sock.receive_text()
        while "Financial investigations" not in frame:
            frame = sock.receive_text()
        assert "Author" not in frame


def test_websocket_refuses_foreign_origin_and_no_credentials(
    client: TestClient, session: Session
) -> None:
    import pytest
    from starlette.websockets import WebSocketDisconnect

    ws = f.workshop(session)
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect(f"/ws/workshops/{ws.code}") as sock,
    ):
        sock.receive_text()
    _, token = f.join(session, ws, "Viewer")
    client.cookies.set(f.cookie_names(ws.uid)[0], token)
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect(
            f"/ws/workshops/{ws.code}", headers={"Origin": "https://evil.example"}
        ) as sock,
    ):
        sock.receive_text()
