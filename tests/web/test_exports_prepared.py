"""Closing a workshop on the organizer's page prepares its slow downloads
(PDF, DOCX) in the background; the download then serves that file."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.exports.prepared import PreparedExports
from tests import factories as f
from tests.security.world import csrf_from


def test_closing_a_workshop_prepares_its_downloads(client: TestClient, session: Session) -> None:
    org = f.organizer(session)
    ws = f.workshop(session, organizer_id=org.id)
    f.set_phase(session, ws, 0, "collect")
    session.close()
    token = csrf_from(client.get("/login").text)
    r = client.post(
        "/login",
        data={"name": "Org", "password": f.PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    r = client.post(
        f"/organizer/w/{ws.code}/close",
        data={"csrf_token": token, "confirm_close": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    cache: PreparedExports = client.app.state.exports  # type: ignore[attr-defined]
    assert ws.id is not None
    deadline = time.monotonic() + 120
    while not (cache.ready(ws.id, "pdf") and cache.ready(ws.id, "docx")):
        assert time.monotonic() < deadline, "the downloads were not prepared"
        time.sleep(0.05)
    r = client.get(f"/w/{ws.code}/export/pdf")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    with Session(client.app.state.engine) as s:  # type: ignore[attr-defined]
        assert r.content == cache.export(s, ws.id, "pdf").content
