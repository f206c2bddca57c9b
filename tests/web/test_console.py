"""The facilitator console over a real websocket: its phase menu is part of
the facilitator's push, so a phase changed elsewhere (another console, the
organizer's API call) shows in every open console, and never reaches a
participant's socket."""

from __future__ import annotations

import contextlib
import re
from concurrent.futures import CancelledError
from html.parser import HTMLParser
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from tests import factories as f
from tests.conftest import SECRET


class _PhaseMenu(HTMLParser):
    """The options of the phase ``<select>`` of one focus area in a frame,
    and which are selected."""

    def __init__(self, fa_id: int) -> None:
        super().__init__()
        self.select_id = f"phase-{fa_id}"
        self.inside = False
        self.forms: list[dict[str, str | None]] = []
        self.options: list[str] = []
        self.selected: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and (a.get("id") or "").startswith("fa-phase-"):
            self.forms.append(a)
        if tag == "select" and a.get("id") == self.select_id:
            self.inside = True
        elif tag == "option" and self.inside:
            self.options.append(a["value"] or "")
            if "selected" in a:
                self.selected.append(a["value"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self.inside = False


def phase_menu(frame: str, fa_id: int) -> _PhaseMenu:
    parser = _PhaseMenu(fa_id)
    parser.feed(frame)
    return parser


def until(sock: Any, needle: str) -> list[str]:
    """Frames up to and including the first that contains ``needle``."""
    frames = [sock.receive_text()]
    while needle not in frames[-1]:
        frames.append(sock.receive_text())
    return frames


def has_phase_control(frame: str) -> bool:
    return bool(
        "data-phase-select" in frame
        or 'id="fa-phase-' in frame
        or re.search(r'hx-put="[^"]*/phase"', frame)
    )


def test_phase_changed_elsewhere_reaches_the_console_menu_and_not_participants(
    client: TestClient, session: Session
) -> None:
    org = f.organizer(session)
    ws = f.workshop(session, private_writing=False, organizer_id=org.id)
    fa = f.set_phase(session, ws, 0, "collect")
    _, first = f.join(session, ws, "Facilitator", facilitator=True, secret=SECRET)
    _, second = f.join(session, ws, "Facilitator", facilitator=True, secret=SECRET)
    _, participant = f.join(session, ws, "Ana")
    session.close()  # SQLite: the app's writes need the lock the test session would hold
    organizer = f.bearer(
        client.post("/api/v1/login", json={"name": "Org", "password": f.PASSWORD}).json()["token"]
    )
    url = f"/ws/workshops/{ws.code}"
    changed = f'id="fa-head-{fa.id}" class="fa-head" data-phase="{{}}"'
    with (
        contextlib.suppress(CancelledError),  # see test_pages: teardown noise only
        client.websocket_connect(url, headers=f.bearer(first)) as console,
        client.websocket_connect(url, headers=f.bearer(participant)) as board,
    ):
        for sock in (console, board):
            sock.send_text('{"type": "hello", "seq": null}')
        menu = phase_menu(console.receive_text(), fa.id)
        assert menu.options[:3] == ["draft", "collect", "cluster"] and menu.selected == ["collect"]
        assert not has_phase_control(board.receive_text())

        # Another facilitator's console sends the form (as htmx does, CSRF token in a header).
        client.cookies.set(f.cookie_names(ws.uid)[0], second)
        page = client.get(f"/w/{ws.code}/console")
        assert page.status_code == 200 and 'id="fa-phase-' in page.text
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        r = client.put(
            f"/w/{ws.code}/fa/{fa.id}/phase",
            data={"phase": "cluster"},
            headers={"HX-Request": "true", "X-CSRF-Token": token},
        )
        assert r.status_code == 204, r.text
        frames = until(console, changed.format("cluster"))
        assert phase_menu(frames[-1], fa.id).selected == ["cluster"]
        # The pushed menu replaces the one on the page (out of band, by id).
        assert phase_menu(frames[-1], fa.id).forms[0]["hx-swap-oob"] == "true"
        seen = until(board, changed.format("cluster"))

        # The organizer, through the JSON API.
        r = client.put(
            f"/api/v1/workshops/{ws.code}/focus-areas/{fa.id}/phase",
            json={"phase": "vote"},
            headers=organizer,
        )
        assert r.status_code == 200, r.text
        frames = until(console, changed.format("vote"))
        assert phase_menu(frames[-1], fa.id).selected == ["vote"]
        seen += until(board, changed.format("vote"))
        assert not [frame for frame in seen if has_phase_control(frame)]


def test_workshop_switches_follow_a_change_made_on_another_console(
    client: TestClient, session: Session
) -> None:
    """Locking joins or turning private writing on from one console relabels
    the buttons on every console, and participants never get the buttons."""
    ws = f.workshop(session, private_writing=False)
    f.set_phase(session, ws, 0, "collect")
    _, first = f.join(session, ws, "Facilitator", facilitator=True, secret=SECRET)
    _, second = f.join(session, ws, "Facilitator", facilitator=True, secret=SECRET)
    _, participant = f.join(session, ws, "Ana")
    session.close()
    url = f"/ws/workshops/{ws.code}"
    with (
        contextlib.suppress(CancelledError),
        client.websocket_connect(url, headers=f.bearer(first)) as console,
        client.websocket_connect(url, headers=f.bearer(participant)) as board,
    ):
        for sock in (console, board):
            sock.send_text('{"type": "hello", "seq": null}')
        assert ">Lock joins<" in console.receive_text()
        assert 'id="console-toggles"' not in board.receive_text()

        client.cookies.set(f.cookie_names(ws.uid)[0], second)
        page = client.get(f"/w/{ws.code}/console")
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        htmx = {"HX-Request": "true", "X-CSRF-Token": token}
        assert client.post(f"/w/{ws.code}/lock", data={"locked": "1"}, headers=htmx).is_success
        frames = until(console, ">Open joins<")
        assert 'id="console-toggles"' in frames[-1] and 'hx-swap-oob="true"' in frames[-1]
        assert ">Turn private writing on<" in frames[-1]
        r = client.post(f"/w/{ws.code}/private-writing", data={"on": "1"}, headers=htmx)
        assert r.is_success
        frames = until(console, ">Turn private writing off<")
        assert ">Open joins<" in frames[-1]
        seen = until(board, "Private writing</span>")
        assert not [frame for frame in seen if 'id="console-toggles"' in frame or "/lock" in frame]
