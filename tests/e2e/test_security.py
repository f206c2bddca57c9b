"""Security as a browser sees it: strict CSP with no violation on any page
(and proof that a violation would be caught), private writing that keeps
other people's text off a participant's device (page and websocket frames),
authors' names shown to nobody, credential cookies out of JavaScript's
reach, and nothing of the board left in localStorage or sessionStorage."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import A11y, assert_nothing_stored
from tests.factories import cookie_names

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SECRET_TITLE = "Informant paid from project funds"
SECRET_BODY = "Field office Zeta kept no receipts"
AUTHOR = "Ottoline Quarrington"


def record_frames(page: Any) -> list[str]:
    frames: list[str] = []
    page.on(
        "websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload)))
    )
    return frames


def test_private_text_csp_cookies_and_storage(
    server: Any, api: Any, actors: Any, guard: Any
) -> None:
    organizer = api.login()
    ws = api.create_workshop(organizer, "Security workshop")  # private writing is on
    code, fa = ws["code"], ws["focus_areas"][0]["id"]
    api.phase(code, organizer, fa, "collect")

    # The author joins through the form; the other participant by token.
    author = actors("author", server.url)
    author.goto(ws["join_url"])
    author.get_by_label("Your name").fill(AUTHOR)
    author.get_by_label("Your affiliation").select_option(label="ODIHR")
    with author.expect_response(f"**/w/{code}") as info:
        author.get_by_role("button", name="Join").click()
    response = info.value
    headers = response.all_headers()
    csp = headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers.get("x-frame-options") == "DENY"
    assert headers.get("cache-control") == "no-store"

    other = api.join(code, "Other person", "OSCE Secretariat")
    reader = actors("reader", server.url)
    reader.context.add_cookies(
        [{"name": cookie_names(ws["uid"])[0], "value": other["token"], "url": server.url}]
    )
    reader_frames = record_frames(reader)
    reader.goto(f"/w/{code}")
    console = actors("console", server.url)
    console_frames = record_frames(console)
    console.goto(ws["facilitator_url"])
    projector = actors("projector", server.url, width=1920, height=1080)
    projector_frames = record_frames(projector)
    projector.goto(ws["projector_url"])
    for page in (author, reader, console, projector):
        expect(page.locator("[data-conn]")).to_have_text("Live")

    # Credential cookies set by the server are HttpOnly and SameSite.
    for page in (author, console):
        cookies = {c["name"]: c for c in page.context.cookies()}
        assert cookies, "no cookies"
        for c in cookies.values():
            assert c["httpOnly"], f"{c['name']} is readable by scripts"
            assert c["sameSite"] in ("Lax", "Strict"), c
        assert "lw_p" not in author.evaluate("document.cookie")

    # -- writing, privately ------------------------------------------------------------------
    form = author.locator(f"#card-form-{fa}")
    form.get_by_label("Title").fill(SECRET_TITLE)
    form.get_by_label("What happened").fill(SECRET_BODY)
    form.get_by_role("button", name="Add card").click()
    expect(author.locator(f"#mine-{fa} .my-cards")).to_contain_text(SECRET_TITLE)
    expect(reader.locator(f"#fa-board-{fa}")).to_contain_text("1 card written so far")
    expect(projector.locator(".pj-big")).to_have_text("1 card written")
    expect(console.locator(f"#fa-board-{fa}")).to_contain_text(SECRET_TITLE)  # moderation
    for who, page, frames in (
        ("participant", reader, reader_frames),
        ("projector", projector, projector_frames),
    ):
        seen = page.content() + "".join(frames)
        assert frames, f"the {who} received no push"
        for secret in (SECRET_TITLE, SECRET_BODY, AUTHOR):
            assert secret not in seen, f"the {who}'s browser received {secret!r}"
    assert AUTHOR not in console.content() + "".join(console_frames)

    # -- once writing ends, the text (never the author) reaches everyone --------------------
    api.phase(code, organizer, fa, "cluster")
    expect(reader.locator(f"#fa-board-{fa}")).to_contain_text(SECRET_TITLE)
    expect(projector.locator("#projector")).to_contain_text(SECRET_TITLE)
    for page, frames in (
        (reader, reader_frames),
        (projector, projector_frames),
        (console, console_frames),
    ):
        assert AUTHOR not in page.content() + "".join(frames)

    # -- storage -------------------------------------------------------------------------------
    for page in (author, reader, console, projector):
        assert_nothing_stored(page, [SECRET_TITLE, SECRET_BODY, AUTHOR])
    guard.assert_clean()

    # -- the guards themselves work ------------------------------------------------------------
    # An inline script is refused by the CSP, and the listener reports it.
    reader.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.__injected = true";
                   document.body.appendChild(s); }"""
    )
    assert reader.evaluate("window.__injected === undefined")
    for _ in range(100):  # console events arrive asynchronously
        if any("CSP violation" in p for p in guard.problems):
            break
        reader.wait_for_timeout(20)
    assert any("CSP violation" in p for p in guard.problems), guard.problems
    guard.problems.clear()
    # axe-core reports an unlabelled field.
    probe = A11y()
    reader.evaluate(
        """() => { const i = document.createElement("input");
                   i.id = "axe-probe"; document.querySelector("main").appendChild(i); }"""
    )
    probe.check(reader, "probe")
    assert any("label" in v for v in probe.violations), probe.violations
