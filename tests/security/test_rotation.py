"""Rotating links: new facilitator and projector keys make the old links
useless at once (pages, the facilitator seat they gave, open websockets);
a new join code makes the old code unknown."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session
from starlette.websockets import WebSocketDisconnect

from app.domain import access
from app.models import Workshop
from tests import factories as f
from tests.conftest import SECRET

from .world import World, leave, seed

ORIGIN = {"Origin": "http://testserver"}
HELLO = '{"type": "hello", "seq": null}'


def _rotate(client: TestClient, w: World, what: str) -> None:
    client.cookies.clear()
    r = client.post(
        f"/organizer/w/{w.code}/rotate",
        data={"what": what},
        headers=w.headers("organizer"),
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def _closed_code(sock: Any) -> int:
    with pytest.raises(WebSocketDisconnect) as closed:
        for _ in range(20):  # frames already queued may come first
            sock.receive_text()
    return closed.value.code


def test_rotating_keys_refuses_the_old_links_and_closes_their_sockets(
    client: TestClient, session: Session
) -> None:
    w = seed(session, SECRET)
    old_pj, old_fk = w.keys["projector"], w.keys["facilitator"]
    url = f"/ws/workshops/{w.code}"
    with (
        client.websocket_connect(f"{url}?key={old_pj}", headers=ORIGIN) as projector,
        client.websocket_connect(url, headers={**w.headers("facilitator"), **ORIGIN}) as fac,
        client.websocket_connect(url, headers={**w.headers("participant"), **ORIGIN}) as board,
    ):
        for sock in (projector, fac, board):
            sock.send_text(HELLO)
            assert "hx-swap-oob" in sock.receive_text()
        _rotate(client, w, "keys")
        # Every socket of the workshop is closed (1012, so that browsers try again);
        # only those whose credential still holds (the participant's) get back in.
        for sock in (projector, fac, board):
            assert _closed_code(sock) in (1012, 4401)
    client.cookies.clear()
    assert client.get(f"/w/{w.code}/projector", params={"key": old_pj}).status_code == 403
    client.cookies.set(f.cookie_names(w.uid)[1], old_pj)
    assert client.get(f"/w/{w.code}/projector").status_code == 403
    client.cookies.clear()
    r = client.get(f"/w/{w.code}/facilitate", params={"key": old_fk}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post(
        f"/api/v1/workshops/{w.code}/participants",
        json={"display_name": "Late", "facilitator_key": old_fk},
    )
    assert r.status_code == 403
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(f"{url}?key={old_pj}", headers=ORIGIN) as sock,
    ):
        sock.receive_text()
    assert refused.value.code == 4401
    # The participant reconnects at once; the new projector key works.
    with client.websocket_connect(url, headers={**w.headers("participant"), **ORIGIN}) as board:
        board.send_text(HELLO)
        assert "hx-swap-oob" in board.receive_text()
        leave(board, client.app)
    new_pj = access.derive_key(SECRET, uid=w.uid, role="projector", rotation=1)
    client.cookies.clear()
    assert client.get(f"/w/{w.code}/projector", params={"key": new_pj}).status_code == 200


def test_rotating_keys_unseats_facilitators_who_came_through_the_old_link(
    client: TestClient, session: Session
) -> None:
    """A leaked facilitator link is contained only if the seats it gave go too:
    the real facilitator opens the new link from the organizer's page."""
    w = seed(session, SECRET)
    fac = f.bearer(w.tokens["facilitator"])
    phase = f"/api/v1/workshops/{w.code}/focus-areas/{w.fa_c.id}/phase"
    assert client.put(phase, json={"phase": "cluster"}, headers=fac).status_code == 200
    _rotate(client, w, "keys")
    client.cookies.clear()
    assert client.put(phase, json={"phase": "vote"}, headers=fac).status_code in (401, 403)
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(
            f"/ws/workshops/{w.code}", headers={**w.headers("facilitator"), **ORIGIN}
        ) as sock,
    ):
        sock.receive_text()
    assert refused.value.code == 4401
    new_fk = access.derive_key(SECRET, uid=w.uid, role="facilitator", rotation=1)
    r = client.get(f"/w/{w.code}/facilitate", params={"key": new_fk}, follow_redirects=False)
    assert r.status_code == 303
    # Participants keep their seats.
    r = client.get(f"/api/v1/workshops/{w.code}/me", headers=f.bearer(w.tokens["participant"]))
    assert r.status_code == 200


def test_rotating_the_code_makes_the_old_code_unknown(client: TestClient, session: Session) -> None:
    w = seed(session, SECRET)
    old = w.code
    _rotate(client, w, "code")
    with Session(client.app.state.engine) as fresh:
        new = fresh.get(Workshop, w.wid).code  # type: ignore[union-attr]
    assert new != old
    client.cookies.clear()
    assert client.get(f"/join/{old}").status_code == 404
    assert client.get(f"/api/v1/workshops/{old}").status_code == 404
    r = client.post(
        f"/api/v1/workshops/{old}/participants", json={"display_name": "X", "affiliation": "ODIHR"}
    )
    assert r.status_code == 404
    assert client.get(f"/join/{new}").status_code == 200
    # Those who joined keep their seat under the new code.
    r = client.get(f"/api/v1/workshops/{new}/me", headers=f.bearer(w.tokens["participant"]))
    assert r.status_code == 200
