"""Closing a workshop from the organizer page: one unconfirmed click closes
nothing, the confirmation says what closing erases, and reopening says what
it restores (tests/exports/test_close_invariance.py proves the numbers)."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session

from app.domain import workshops
from tests import factories as f
from tests.web.test_pages import _csrf, _login


def test_close_needs_a_confirmation_that_says_what_it_erases(client: Any, session: Session) -> None:
    _login(client, session)
    ws = f.workshop(session, anonymize_on_close=True)
    f.set_phase(session, ws, 0, "collect")
    url = f"/organizer/w/{ws.code}"
    page = client.get(url)
    assert page.status_code == 200, page.text
    text = re.sub(r"\s+", " ", page.text)
    assert 'name="confirm_close"' in text and "erases for good who wrote and voted what" in text
    token = _csrf(page.text)
    # One unconfirmed click closes nothing.
    r = client.post(f"{url}/close", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 422 and "Tick the box to confirm" in r.text
    session.refresh(ws)
    session.commit()  # end the read: the app needs SQLite's write lock next
    assert not ws.closed
    r = client.post(
        f"{url}/close", data={"csrf_token": token, "confirm_close": "yes"}, follow_redirects=False
    )
    assert r.status_code == 303
    session.refresh(ws)
    session.commit()  # end the read: the app needs SQLite's write lock next
    assert ws.closed
    page = client.get(url).text
    assert "stays erased" in page
    r = client.post(f"{url}/reopen", data={"csrf_token": token}, follow_redirects=True)
    assert r.status_code == 200 and "back in its phase" in r.text
    session.refresh(ws)
    session.commit()  # end the read: the app needs SQLite's write lock next
    assert not ws.closed
    assert workshops.focus_areas(session, ws.id or 0)[0].phase == "collect"
