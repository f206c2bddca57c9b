"""Keyboard only: the facilitator clusters with the "Move" menus and the
"New cluster" form, changes the phase and reveals totals; a participant
spends dots. Nothing is clicked: only Tab, arrows, Enter, Space and the
console's shortcut keys, as someone who cannot use a mouse would."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import assert_all, tab_to
from tests.factories import cookie_names

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TITLES = ["Mobile border teams", "Witness protection protocol", "Asset recovery desk"]


def card(page: Any, fa_id: int, title: str) -> Any:
    return page.locator(f"#fa-board-{fa_id} article.card").filter(
        has=page.get_by_role("heading", name=title)
    )


def cluster(page: Any, fa_id: int, title: str) -> Any:
    return page.locator(f"#fa-board-{fa_id} section.cluster").filter(
        has=page.get_by_role("heading", name=title, exact=True)
    )


def test_cluster_and_vote_with_the_keyboard_alone(
    server: Any, api: Any, actors: Any, guard: Any, a11y: Any
) -> None:
    organizer = api.login()
    ws = api.create_workshop(organizer, "Keyboard workshop")
    code, fa = ws["code"], ws["focus_areas"][0]["id"]
    api.phase(code, organizer, fa, "collect")
    writer = api.join(code, "Writer")
    for title in TITLES:
        api.card(code, writer["token"], fa, title)
    api.phase(code, organizer, fa, "cluster")

    voter = api.join(code, "Voter", "OSCE Secretariat")
    board = actors("voter", server.url)
    board.context.add_cookies(
        [{"name": cookie_names(ws["uid"])[0], "value": voter["token"], "url": server.url}]
    )
    board.goto(f"/w/{code}")
    expect(board.locator("[data-conn]")).to_have_text("Live")
    fac = actors("facilitator", server.url)
    fac.goto(ws["facilitator_url"])
    expect(fac.locator("[data-conn]")).to_have_text("Live")
    kb = fac.keyboard

    # "+ New cluster" in a card's Move menu makes a cluster named after the card.
    first_move = card(fac, fa, TITLES[0]).get_by_label(f"Move “{TITLES[0]}” to")
    tab_to(fac, first_move)
    kb.press("End")
    for page in (fac, board):
        expect(cluster(page, fa, TITLES[0])).to_contain_text(TITLES[0])
    # The push re-rendered the board; the focus is back on the same menu.
    expect(first_move).to_be_focused()

    # The Move menu and button move another card into it.
    tab_to(fac, card(fac, fa, TITLES[1]).get_by_label(f"Move “{TITLES[1]}” to"))
    kb.press("ArrowDown")
    kb.press("Tab")
    kb.press("Enter")
    for page in (fac, board):
        expect(cluster(page, fa, TITLES[0])).to_contain_text(TITLES[1])

    # The "New cluster" form, then Space on a Move button.
    tab_to(fac, fac.locator(f"#fa-{fa}").get_by_label("New cluster"))
    kb.type("Financial investigations")
    kb.press("Enter")
    expect(cluster(fac, fa, "Financial investigations")).to_be_visible()
    expect(fac.locator(f"#fa-{fa}").get_by_label("New cluster")).to_have_value("")
    move = card(fac, fa, TITLES[2]).get_by_label(f"Move “{TITLES[2]}” to")
    tab_to(fac, move)
    kb.press("End")  # "+ New cluster" is last: go one up, to the newest cluster
    kb.press("ArrowUp")
    kb.press("Tab")
    kb.press(" ")
    for page in (fac, board):
        expect(cluster(page, fa, "Financial investigations")).to_contain_text(TITLES[2])
    a11y.check(fac, "console (keyboard clustering)")

    # Phase select and Set button, by keyboard.
    tab_to(fac, fac.locator(f"#fa-{fa}").get_by_label("Phase"))
    kb.press("ArrowDown")  # cluster -> vote
    kb.press("Tab")
    kb.press("Enter")
    expect(board.locator(f"#my-{fa}")).to_contain_text("5 of 5 dots left")

    # The participant spends dots with Enter and Space.
    add = card(board, fa, TITLES[1]).get_by_role("button", name=f"Add a dot to “{TITLES[1]}”")
    tab_to(board, add)
    board.keyboard.press("Enter")
    expect(board.locator(f"#my-{fa}")).to_contain_text("4 of 5 dots left")
    expect(board.locator(f"#fa-head-{fa}")).to_contain_text("1 voted")
    # That push re-rendered the cards; the focus stays on the same button.
    expect(add).to_be_focused()
    board.keyboard.press(" ")
    expect(board.locator(f"#my-{fa}")).to_contain_text("3 of 5 dots left")
    remove = card(board, fa, TITLES[1]).get_by_role(
        "button", name=f"Remove a dot from “{TITLES[1]}”"
    )
    tab_to(board, remove)
    board.keyboard.press("Enter")
    expect(board.locator(f"#my-{fa}")).to_contain_text("4 of 5 dots left")
    expect(board.locator(f"#fa-board-{fa} .totals")).to_have_count(0)
    a11y.check(board, "board (keyboard voting)")

    # Console shortcuts: "1" picks the first focus area, "r" reveals its totals.
    kb.press("1")
    kb.press("r")
    expect(card(board, fa, TITLES[1]).locator(".totals")).to_contain_text("1 dot")
    assert_all(guard.assert_clean, a11y.assert_clean)


def test_phase_menu_and_shortcuts_follow_a_phase_set_elsewhere(
    server: Any, api: Any, actors: Any, guard: Any
) -> None:
    organizer = api.login()
    ws = api.create_workshop(organizer, "Two consoles")
    code, fa = ws["code"], ws["focus_areas"][0]["id"]
    api.phase(code, organizer, fa, "collect")
    writer = api.join(code, "Writer")
    fac = actors("facilitator", server.url)
    fac.goto(ws["facilitator_url"])
    expect(fac.locator("[data-conn]")).to_have_text("Live")
    menu = fac.locator(f"#phase-{fa}")
    expect(menu).to_have_value("collect")
    menu.evaluate("el => { el.untouched = true; }")

    # A push that leaves the phase alone leaves the menu alone (an open menu stays open).
    api.card(code, writer["token"], fa, TITLES[0])
    expect(card(fac, fa, TITLES[0])).to_be_visible()
    assert menu.evaluate("el => el.untouched === true")

    # Someone else sets the phase: the menu follows, and "n" counts from there.
    api.phase(code, organizer, fa, "cluster")
    expect(fac.locator(f"#fa-head-{fa} .phase")).to_have_text("Clustering")
    expect(menu).to_have_value("cluster")
    fac.keyboard.press("1")
    fac.keyboard.press("n")
    expect(fac.locator(f"#fa-head-{fa} .phase")).to_have_text("Voting")
    expect(menu).to_have_value("vote")
    assert api.call("GET", f"/workshops/{code}")["focus_areas"][0]["phase"] == "vote"
    guard.assert_clean()
