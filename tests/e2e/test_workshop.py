"""A whole workshop in real browsers: the organizer sets it up, three people
join and write, the facilitator drives the phases from the console, the
projector follows the spotlight, and the organizer exports the outcome.
Every page is checked with axe-core in every state it reaches."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import (
    ARTIFACTS,
    ORGANIZER,
    OSCE,
    PASSWORD,
    assert_all,
    assert_nothing_stored,
    horizontal_overflow,
    image_loaded,
    save_screenshot,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

TITLE = "Lessons learned on organized crime, 2007"
PHASE_LABELS = {
    "draft": "Not started",
    "collect": "Writing cards",
    "cluster": "Clustering",
    "vote": "Voting",
    "synthesize": "Results",
    "closed": "Closed",
}
PEOPLE = [
    # name, affiliation, viewport (the second person is on a phone)
    ("Amira", "ODIHR", (1280, 720)),
    ("Bo", "Field operation: OSCE Mission to Serbia", (390, 844)),
    ("Chen", "External partner: UNODC", (1280, 720)),
]


def set_phase(console: Any, fa_id: int, phase: str) -> None:
    area = console.locator(f"#fa-{fa_id}")
    area.get_by_label("Phase").select_option(phase)
    area.get_by_role("button", name="Set", exact=True).click()
    expect(area.locator(".fa-head .phase")).to_have_text(PHASE_LABELS[phase])


def write_card(page: Any, fa_id: int, title: str, body: str = "", kind: str = "") -> None:
    area = page.locator(f"#fa-{fa_id}")
    form = area.locator("form.card-form")
    if kind:
        form.get_by_label(kind, exact=True).check()
    form.get_by_label("Title").fill(title)
    if body:
        form.get_by_label("What happened").fill(body)
    form.get_by_role("button", name="Add card").click()
    expect(area.locator(".my-cards")).to_contain_text(title)
    expect(form.get_by_label("Title")).to_have_value("")


def card_in(page: Any, fa_id: int, title: str) -> Any:
    return page.locator(f"#fa-board-{fa_id} article.card").filter(
        has=page.get_by_role("heading", name=title)
    )


def test_whole_workshop(server: Any, actors: Any, guard: Any, a11y: Any) -> None:
    base = server.url

    # -- the organizer logs in and creates the workshop --------------------------------
    org = actors("organizer", base)
    org.goto("/")
    expect(org.get_by_role("heading", name="Join a workshop")).to_be_visible()
    a11y.check(org, "home")
    org.goto("/login")
    a11y.check(org, "login")
    org.get_by_label("Name").fill(ORGANIZER)
    org.get_by_label("Password").fill(PASSWORD)
    org.get_by_role("button", name="Log in").click()
    expect(org.get_by_role("heading", name="Your workshops")).to_be_visible()
    a11y.check(org, "organizer home")
    org.get_by_label("Start from").select_option(OSCE)
    org.get_by_label("Title").fill(TITLE)
    org.get_by_label("Venue").fill("Vienna, Hofburg")
    org.get_by_role("button", name="Create workshop").click()
    expect(org).to_have_url(re.compile(r"/organizer/w/[A-Z0-9]+$"))
    expect(org.get_by_role("heading", level=1)).to_have_text(TITLE)
    a11y.check(org, "organizer workshop")
    save_screenshot(org, "organizer.png", full_page=True)
    assert image_loaded(org.get_by_alt_text("QR code of the join link"))
    code = org.locator("dd.code").inner_text().strip()
    join_url = org.locator("dt:has-text('Join link') + dd a").get_attribute("href")
    facilitator_url = org.locator("dt:has-text('Facilitator link') + dd a").get_attribute("href")
    projector_url = org.locator("dt:has-text('Projector link') + dd a").get_attribute("href")
    assert join_url == f"{base}/join/{code}"
    assert facilitator_url and "/facilitate?key=" in facilitator_url
    assert projector_url and "/projector?key=" in projector_url

    # -- three people join, each in their own browser ------------------------------------
    people = []
    for i, (name, affiliation, (w, h)) in enumerate(PEOPLE):
        p = actors(name, base, width=w, height=h)
        p.goto(join_url)
        expect(p.get_by_role("heading", name=TITLE)).to_be_visible()
        if i == 0:
            a11y.check(p, "join")
        p.get_by_label("Your name").fill(name)
        p.get_by_label("Your affiliation").select_option(label=affiliation)
        p.get_by_role("button", name="Join").click()
        expect(p).to_have_url(f"{base}/w/{code}")
        expect(p.locator("[data-conn]")).to_have_text("Live")
        people.append(p)
    amira, bo, chen = people

    # -- the facilitator's console and the projector -------------------------------------
    fac = actors("facilitator", base)
    fac.goto(facilitator_url)
    expect(fac).to_have_url(f"{base}/w/{code}/console")
    expect(fac.locator("[data-conn]")).to_have_text("Live")
    fa1, fa2, fa3 = (
        int(x)
        for x in fac.locator("section.fa[data-fa]").evaluate_all(
            "els => els.map(e => e.dataset.fa)"
        )
    )
    fa1_title = fac.locator(f"#fa-title-{fa1}").inner_text()
    proj = actors("projector", base, width=1920, height=1080)
    proj.goto(projector_url)
    expect(proj.locator("[data-conn]")).to_have_text("Live")
    # Until a spotlight is set, the projector shows the first focus area.
    expect(proj.locator("#projector h1")).to_have_text(fa1_title)
    expect(proj.locator(".pj-big")).to_have_text("Starting soon")
    expect(proj.locator(".pj-join")).to_contain_text(code)
    assert image_loaded(proj.get_by_alt_text("QR code to join"))
    expect(amira.locator(f"#fa-board-{fa1}")).to_contain_text("has not started yet")
    # 3 people; the count includes the facilitator for now (app/domain/workshops.py).
    expect(fac.locator("#ws-status")).to_contain_text(re.compile(r"\b[34] participants"))
    a11y.check(amira, "board (draft)")
    a11y.check(fac, "console (draft)")
    a11y.check(proj, "projector (draft)")

    # -- collect, with private writing: counts only --------------------------------------
    set_phase(fac, fa1, "collect")
    set_phase(fac, fa2, "collect")
    fac.locator(f"#fa-{fa1}").get_by_role("button", name="Spotlight").click()
    expect(proj.locator("#projector h1")).to_have_text(fa1_title)
    expect(proj.locator(".pj-big")).to_have_text("0 cards written")
    for p in people:
        expect(p.locator(f"#card-form-{fa1}")).to_be_visible()
    expect(amira.locator(f"#card-form-{fa3}")).to_be_hidden()
    a11y.check(amira, "board (collect)")
    a11y.check(bo, "board (collect, 390 px)")

    write_card(
        amira,
        fa1,
        "Joint investigation teams with Europol",
        "Prosecutors from two States worked one file together.",
        kind="Method",
    )
    write_card(bo, fa1, "Trial monitoring of trafficking cases", kind="Tool")
    write_card(chen, fa1, "Victim referral mechanism", "Shelters, police and NGOs agreed roles.")
    write_card(amira, fa2, "Border liaison offices", kind="Tool")
    write_card(chen, fa2, "Financial investigation training", kind="Method")

    expect(proj.locator(".pj-big")).to_have_text("3 cards written")
    expect(proj.locator("#projector")).not_to_contain_text("Europol")
    for p, own, other in ((amira, "Joint", "Victim referral"), (bo, "Trial", "Joint")):
        board = p.locator(f"#fa-board-{fa1}")
        expect(board).to_contain_text("3 cards written so far")
        expect(board).not_to_contain_text(other)
        expect(board).not_to_contain_text(own)  # own cards are under "My cards", not the board
    expect(chen.locator(f"#fa-board-{fa2}")).to_contain_text("2 cards written so far")
    # The facilitator moderates while people write, so the console shows the text.
    expect(card_in(fac, fa1, "Victim referral")).to_be_visible()
    a11y.check(amira, "board (collect, my cards)")
    a11y.check(fac, "console (collect)")
    a11y.check(proj, "projector (collect)")
    save_screenshot(proj, "projector-collect.png")

    # -- cluster: the text appears everywhere ---------------------------------------------
    set_phase(fac, fa1, "cluster")
    for page in (*people, fac):
        for title in ("Joint investigation teams", "Trial monitoring", "Victim referral"):
            expect(card_in(page, fa1, title)).to_be_visible()
    expect(proj.locator("#projector")).to_contain_text("Victim referral mechanism")
    expect(amira.locator(f"#fa-board-{fa2}")).not_to_contain_text("Financial investigation")

    area = fac.locator(f"#fa-{fa1}")
    area.get_by_label("New cluster").fill("Working with partners")
    area.get_by_role("button", name="Add", exact=True).click()
    cluster = fac.locator(f"#fa-board-{fa1} section.cluster", has_text="Working with partners")
    expect(cluster).to_be_visible()
    expect(amira.locator(f"#fa-board-{fa1} .cluster h3")).to_have_text("Working with partners")

    # Drag and drop (SortableJS) a card into the cluster.
    card_in(fac, fa1, "Joint investigation teams").drag_to(cluster.locator(".card-list"))
    for page in (fac, amira, bo):
        expect(
            page.locator(f"#fa-board-{fa1} section.cluster", has_text="Working with partners")
        ).to_contain_text("Joint investigation teams")
    expect(proj.locator(".pj-cluster")).to_contain_text("Joint investigation teams")

    # The same move without dragging: the "Move" menu on another card.
    trial = card_in(fac, fa1, "Trial monitoring")
    trial.get_by_label(re.compile("^Move")).select_option(label="Working with partners")
    trial.get_by_role("button", name="Move", exact=True).click()
    expect(
        chen.locator(f"#fa-board-{fa1} section.cluster", has_text="Working with partners")
    ).to_contain_text("Trial monitoring")
    expect(fac.locator(f"#fa-board-{fa1} .loose")).to_contain_text("Victim referral")
    a11y.check(fac, "console (cluster)")
    a11y.check(amira, "board (cluster)")
    a11y.check(proj, "projector (cluster)")
    save_screenshot(fac, "console.png", full_page=True)
    for page, label in ((amira, "board"), (fac, "console")):
        assert horizontal_overflow(page) <= 0, f"the {label} scrolls sideways at 1280 px"
    assert horizontal_overflow(bo) <= 0, "the board scrolls sideways at 390 px"

    # -- vote: blind, dots left update -----------------------------------------------------
    set_phase(fac, fa1, "vote")
    dots = {p: p.locator(f"#my-{fa1}") for p in people}
    for p in people:
        expect(dots[p]).to_contain_text("5 of 5 dots left")
    victim = card_in(amira, fa1, "Victim referral")
    victim.get_by_role("button", name=re.compile("^Add a dot")).click()
    expect(dots[amira]).to_contain_text("4 of 5 dots left")
    victim.get_by_role("button", name=re.compile("^Add a dot")).click()
    expect(dots[amira]).to_contain_text("3 of 5 dots left")
    card_in(amira, fa1, "Joint investigation").get_by_role(
        "button", name=re.compile("^Add a dot")
    ).click()
    expect(dots[amira]).to_contain_text("2 of 5 dots left")
    bo_joint = card_in(bo, fa1, "Joint investigation")
    for left in (4, 3, 2):
        bo_joint.get_by_role("button", name=re.compile("^Add a dot")).click()
        expect(dots[bo]).to_contain_text(f"{left} of 5 dots left")
    bo_joint.get_by_role("button", name=re.compile("^Add a dot")).click()  # over the cap of 3
    expect(dots[bo].locator(".field-error")).to_be_visible()
    expect(dots[bo]).to_contain_text("2 of 5 dots left")
    card_in(chen, fa1, "Victim referral").get_by_role(
        "button", name=re.compile("^Add a dot")
    ).click()
    expect(dots[chen]).to_contain_text("4 of 5 dots left")
    # Each vote answers with the person's own panel, replacing it (not nesting it).
    expect(amira.locator(f"#fa-{fa1} .mine")).to_have_count(1)
    expect(bo.locator(f"#fa-{fa1} .my-dots")).to_have_count(1)

    expect(proj.locator(".pj-turnout")).to_contain_text("3 voted")
    expect(proj.locator(".pj-turnout")).to_contain_text("totals hidden")
    for page in (*people, fac):
        expect(page.locator(f"#fa-board-{fa1}")).to_contain_text("Blind voting")
        expect(page.locator(f"#fa-board-{fa1} .totals")).to_have_count(0)
    expect(proj.locator(".pj-dots")).to_have_count(0)
    a11y.check(amira, "board (vote)")
    a11y.check(bo, "board (vote, 390 px)")
    a11y.check(fac, "console (vote)")
    save_screenshot(amira, "participant.png", full_page=True)
    assert horizontal_overflow(amira) <= 0
    assert horizontal_overflow(bo) <= 0

    # -- reveal: totals appear on every board ------------------------------------------------
    fac.locator(f"#fa-{fa1}").get_by_role("button", name="Reveal totals").click()
    for page in (*people, fac):
        expect(card_in(page, fa1, "Victim referral").locator(".totals")).to_contain_text(
            "3 dots · 2 voters"
        )
        expect(card_in(page, fa1, "Joint investigation").locator(".totals")).to_contain_text(
            "4 dots · 2 voters"
        )
        expect(page.locator(f"#fa-board-{fa1} .cluster-head .totals")).to_contain_text("4 dots")
    expect(proj.locator(".pj-cluster .pj-dots")).to_have_text("4")
    a11y.check(amira, "board (vote, revealed)")
    a11y.check(proj, "projector (vote, revealed)")

    # -- synthesis ---------------------------------------------------------------------------
    synthesis = "Joint teams and trial monitoring only worked with partners in from the start."
    cluster = fac.locator(f"#fa-board-{fa1} section.cluster", has_text="Working with partners")
    cluster.locator("summary", has_text="Edit cluster").click()
    cluster.get_by_label("Synthesis").fill(synthesis)
    cluster.get_by_role("button", name="Save", exact=True).click()
    for page in (*people, fac):
        expect(page.locator(f"#fa-board-{fa1} .synthesis")).to_have_text(synthesis)

    set_phase(fac, fa1, "synthesize")
    for page in (amira, bo):
        expect(page.locator(f"#fa-board-{fa1} .results")).to_contain_text("Working with partners")
    expect(proj.locator(".pj-phase")).to_have_text("Results")
    a11y.check(amira, "board (results)")
    a11y.check(bo, "board (results, 390 px)")
    a11y.check(fac, "console (results)")
    a11y.check(proj, "projector (results)")
    save_screenshot(proj, "projector.png")
    save_screenshot(bo, "participant-phone.png", full_page=True)
    assert horizontal_overflow(bo) <= 0

    # -- nothing of the board is left in the browsers' storage -------------------------------
    for page in (*people, fac, proj):
        assert_nothing_stored(page, ["Joint investigation", "Victim referral", synthesis, "Amira"])

    # -- the organizer: report page and exports ----------------------------------------------
    report = org.request.get(f"/w/{code}/report")
    assert report.ok, f"report page: {report.status}"
    org.goto(f"/w/{code}/report")
    expect(org.locator("main")).to_contain_text("Working with partners")
    expect(org.locator("main")).to_contain_text(synthesis)
    expect(org.locator("main")).not_to_contain_text("Amira")
    a11y.check(org, "report")
    org.set_viewport_size({"width": 1280, "height": 1400})
    save_screenshot(org, "report.png")
    save_screenshot(org, "report-full.png", full_page=True)
    org.set_viewport_size({"width": 1280, "height": 720})

    org.goto(f"/organizer/w/{code}")
    for fmt, label, magic in (("docx", "Word (DOCX)", b"PK"), ("pdf", "PDF", b"%PDF")):
        probe = org.request.get(f"/w/{code}/export/{fmt}")
        assert probe.ok, f"{fmt} export: {probe.status} {probe.text()[:300]}"
        with org.expect_download() as download_info:
            org.get_by_role("link", name=label, exact=True).click()
        download = download_info.value
        assert download.suggested_filename.endswith(f".{fmt}")
        path = ARTIFACTS / f"outcome.{fmt}"
        download.save_as(path)
        assert path.read_bytes().startswith(magic)
        expect(org.locator("[data-export-progress]")).to_contain_text("Downloaded")

    assert_all(guard.assert_clean, a11y.assert_clean)
