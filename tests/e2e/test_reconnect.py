"""The server goes away mid-workshop (SIGTERM, as when the laptop's service
restarts) and comes back on the same port and data. Every open page says it
is reconnecting, then catches up with a card written while it was away,
and keeps following live changes."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import Api
from tests.factories import cookie_names

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def card(page: Any, fa_id: int, title: str) -> Any:
    return page.locator(f"#fa-board-{fa_id} article.card").filter(
        has=page.get_by_role("heading", name=title)
    )


def test_pages_reconnect_after_a_restart_and_catch_up(
    own_server: Any, actors: Any, guard: Any
) -> None:
    srv = own_server
    api = Api(srv.url)
    organizer = api.login()
    ws = api.create_workshop(organizer, "Restart workshop")
    code, fa = ws["code"], ws["focus_areas"][0]["id"]
    # Card text must be visible on the boards while cards can still be written:
    # the facilitator turns private writing off and opens the focus area.
    api.page_action(f"/w/{code}/private-writing", organizer, on="0")
    api.phase(code, organizer, fa, "collect")
    writer = api.join(code, "Writer")
    api.card(code, writer["token"], fa, "Written before the restart")

    reader = api.join(code, "Reader", "OSCE Secretariat")
    board = actors("board", srv.url)
    board.context.add_cookies(
        [{"name": cookie_names(ws["uid"])[0], "value": reader["token"], "url": srv.url}]
    )
    sockets: list[list[str]] = []  # frames received, per socket the board opened

    def on_socket(ws: Any) -> None:
        frames: list[str] = []
        sockets.append(frames)
        ws.on("framereceived", lambda payload: frames.append(str(payload)))

    board.on("websocket", on_socket)
    board.goto(f"/w/{code}")
    console = actors("console", srv.url)
    console.goto(ws["facilitator_url"])
    projector = actors("projector", srv.url, width=1920, height=1080)
    projector.goto(ws["projector_url"])
    pages = (board, console, projector)
    for page in pages:
        expect(page.locator("[data-conn]")).to_have_text("Live")
        expect(page.locator("[data-conn]")).to_have_attribute("data-state", "up")
    for page in (board, console):
        expect(card(page, fa, "Written before the restart")).to_be_visible()
    expect(projector.locator("#projector")).to_contain_text("Written before the restart")

    # While the server is down, the browsers' reconnect attempts fail loudly.
    guard.allow(
        r"WebSocket connection to .* failed",
        r"ERR_CONNECTION_REFUSED",
        r"ERR_INTERNET_DISCONNECTED",
        r"^\[object Event\]",
    )
    srv.stop()
    for page in pages:
        expect(page.locator("[data-conn]")).to_have_text("Reconnecting…")
        expect(page.locator("[data-conn]")).to_have_attribute("data-state", "down")

    # Keep the browsers off the network until the change is made, so that
    # they must catch up on reconnecting rather than get it as a live push.
    for page in pages:
        page.context.set_offline(True)
    srv.start()
    api.close()
    api = Api(srv.url)
    api.card(code, writer["token"], fa, "Written during the outage")
    for page in (board, console):
        expect(card(page, fa, "Written during the outage")).to_have_count(0)
    for page in pages:
        page.context.set_offline(False)
    for page in pages:
        expect(page.locator("[data-conn]")).to_have_text("Live", timeout=20_000)
    for page in (board, console):
        expect(card(page, fa, "Written during the outage")).to_be_visible()
        expect(card(page, fa, "Written before the restart")).to_be_visible()
    expect(projector.locator("#projector")).to_contain_text("Written during the outage")
    # It came with the first frame on the new socket: the resync after "hello".
    opened = [frames for frames in sockets if frames]
    assert len(opened) >= 2
    assert "Written during the outage" in opened[-1][0]

    # And the pages follow live changes again.
    api.phase(code, organizer, fa, "vote")
    expect(board.locator(f"#my-{fa}")).to_contain_text("5 of 5 dots left")
    expect(console.locator(f"#fa-head-{fa} .phase")).to_have_text("Voting")
    expect(projector.locator(".pj-phase")).to_have_text("Voting")
    api.close()
    guard.assert_clean()
