"""The capture test: a scripted workshop on a real server (see live.py), and
everything every role received searched for what the Chatham House rule keeps
secret. A name may appear only in that person's own responses; an affiliation
held by fewer than three people only in the list a joiner picks from; tokens
only in the response that issued them; link keys only to the organizer (and
the projector its own); participant ids never next to a card or a vote. With
private writing on, nobody but its author and the staff receives a card's
text while the focus area collects."""

from __future__ import annotations

import json
import re

import pytest

from .live import FORMATS, Item, Recording

pytestmark = pytest.mark.timeout(300)

# Responses that are the affiliation list itself (what a joiner picks from, and
# the organizer's editor): an affiliation there is tied to nobody.
LIST_LABELS = (
    "GET /join/CODE",
    "GET /api/v1/workshops/CODE",
    "GET /organizer/w/CODE",
    "POST /organizer/w/CODE/affiliations",
    "POST /organizer/w/CODE/fa/",
)
# A participant's database id next to anything. (The JSON archive's "voter"
# numbers are pseudonyms: see test_archive_pseudonyms_do_not_follow_join_order.)
ID_PATTERN = re.compile(
    r"(participant|author|user|person|writer)[_\- ]?(id)?[\"'\s]*[:=][\"'\s]*(\d+)",
    re.IGNORECASE,
)


def _squash(text: str) -> str:
    """PDF text extraction breaks lines anywhere: compare without whitespace."""
    return re.sub(r"\s+", "", text)


def _contains(item: Item, needle: str) -> bool:
    if needle in item.text:
        return True
    return item.kind == "export" and _squash(needle) in _squash(item.text)


def _where(items: list[Item]) -> str:
    return "\n".join(f"  {i.viewer} {i.kind} {i.label} [{i.step}]" for i in items[:10])


def _without_affiliation_list(item: Item) -> str:
    if item.label == "export json":
        data = json.loads(item.text)
        data.get("workshop", {}).pop("affiliations", None)
        return json.dumps(data, ensure_ascii=False)
    return item.text


def test_the_run_went_through_and_the_server_stayed_up(live_run: Recording) -> None:
    errors = [i for i in live_run.items if i.status >= 500]
    assert not errors, _where(errors)
    assert live_run.server_alive
    frames = [i for i in live_run.items if i.kind == "ws"]
    viewers = {i.viewer for i in frames}
    assert {"facilitator", "projector"} <= viewers and len(viewers) == 22, sorted(viewers)
    # The detectors work: each person's name reaches their own board greeting.
    for p in live_run.people:
        own = [i for i in live_run.items if i.viewer == p.viewer and i.label == "GET /w/CODE"]
        assert any(p.name in i.text for i in own), p.name


def test_names_reach_nobody_but_their_owner(live_run: Recording) -> None:
    leaks = []
    for p in live_run.people:
        words = [p.name, *p.name.split()]
        for item in live_run.items:
            if item.viewer != p.viewer and any(_contains(item, w) for w in words):
                leaks.append(item)
    assert not leaks, f"a participant's name reached someone else:\n{_where(leaks)}"


def test_small_affiliations_are_tied_to_nothing(live_run: Recording) -> None:
    leaks = []
    for aff in live_run.unique_affiliations():
        town = aff.rsplit(" ", 1)[-1]
        for item in live_run.items:
            if item.label.startswith(LIST_LABELS):
                continue
            text = _without_affiliation_list(item)
            if town in text or (item.kind == "export" and _squash(town) in _squash(text)):
                leaks.append(item)
    assert not leaks, f"an affiliation of fewer than 3 people was shown:\n{_where(leaks)}"


def test_tokens_appear_only_in_the_response_that_issued_them(live_run: Recording) -> None:
    leaks = []
    for what, value in live_run.secrets.items():
        if what in ("facilitator key", "projector key"):
            continue
        holders = [i for i in live_run.items if value in i.text]
        issued = [i for i in holders if i.label.endswith(("/participants", "/login"))]
        if len(issued) != 1 or len(holders) != 1:
            leaks.extend(holders)
    assert not leaks, f"a token was sent more than once, or elsewhere:\n{_where(leaks)}"


def test_link_keys_reach_only_the_organizer_and_their_own_screen(live_run: Recording) -> None:
    allowed = {
        "facilitator key": {"organizer", "facilitator"},
        "projector key": {"organizer", "facilitator", "projector"},
    }
    leaks = []
    for what, viewers in allowed.items():
        key = live_run.secrets[what]
        leaks += [
            i
            for i in live_run.items
            if key in i.text and (i.viewer not in viewers or i.kind in ("ws", "export"))
        ]
    assert not leaks, f"a link key was sent where it does not belong:\n{_where(leaks)}"


def test_participant_ids_are_never_sent_to_anyone_else(live_run: Recording) -> None:
    own_id = {p.viewer: p.pid for p in live_run.people}
    own_id["facilitator"] = live_run.facilitator_pid
    leaks = []
    for item in live_run.items:
        for m in ID_PATTERN.finditer(item.text):
            if int(m.group(3)) != own_id.get(item.viewer):
                leaks.append(f"{item.viewer} {item.kind} {item.label}: {m.group(0)!r}")
        if re.search(r"\bauthor(_id)?\b\"?\s*[:=]", item.text, re.IGNORECASE):
            leaks.append(f"{item.viewer} {item.kind} {item.label}: an author field")
    assert not leaks, "\n".join(leaks[:20])


RESULTS = "GET /api/v1/workshops/CODE/results"


def _private_leaks(live_run: Recording, labels: tuple[str, ...] | None) -> list[Item]:
    """Items received during collect, by someone other than the author or the
    staff, that hold a card's text; ``labels`` limits the search to those."""
    collect = live_run.items[: live_run.collect_end]
    staff = {"facilitator", "organizer"}
    leaks = []
    for p in live_run.people:
        assert p.texts, "the scenario wrote no cards"
        for item in collect:
            if item.viewer in staff or item.viewer == p.viewer:
                continue
            if labels is not None and item.label not in labels:
                continue
            if labels is None and item.label == RESULTS:
                continue  # test_results_respect_private_writing
            if any(t in item.text for t in p.texts):
                leaks.append(item)
    return leaks


def test_private_writing_keeps_card_text_on_the_authors_device(live_run: Recording) -> None:
    collect = live_run.items[: live_run.collect_end]
    assert any(i.step == "collect" for i in collect)
    leaks = _private_leaks(live_run, None)
    assert not leaks, f"card text reached another device while private:\n{_where(leaks)}"
    # The authors did get their own text back, and the staff saw it to moderate.
    mine = [i for i in collect if i.viewer == "p03" and "Kestrel measure 03" in i.text]
    assert mine
    assert any("Kestrel measure 03" in i.text for i in collect if i.viewer == "facilitator")
    # Once clustering starts, the text is for everyone.
    later = live_run.items[live_run.collect_end :]
    assert any("Kestrel measure 03" in i.text for i in later if i.viewer == "p04")


def test_results_respect_private_writing(live_run: Recording) -> None:
    leaks = _private_leaks(live_run, (RESULTS,))
    assert not leaks, f"card text reached another device while private:\n{_where(leaks)}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_exports_name_nobody(live_run: Recording, fmt: str) -> None:
    status, content = live_run.exports[fmt]
    assert status == 200, f"export {fmt} answered {status}"
    text = live_run.export_text[fmt]
    item = Item("organizer", "export", f"export {fmt}", "export", text, 200)
    assert any(_contains(item, t) for t in ("Theme 0", "Kestrel measure 05")), "an empty export?"
    found = [
        w
        for p in live_run.people
        for w in [p.name, *p.name.split(), str(p.token)]
        if _contains(item, w)
    ]
    assert not found, f"{fmt}: {found[:5]}"
    stripped = _without_affiliation_list(item)
    towns = [a.rsplit(" ", 1)[-1] for a in live_run.unique_affiliations()]
    assert not [t for t in towns if _squash(t) in _squash(stripped)], fmt
    assert not ID_PATTERN.search(text), f"{fmt}: {ID_PATTERN.search(text)}"


def test_archive_pseudonyms_do_not_follow_join_order(live_run: Recording) -> None:
    status, content = live_run.exports["json"]
    assert status == 200, f"export json answered {status}"
    data = json.loads(content)
    title = {c["ref"]: c["title"] for c in data["cards"]}
    group = {p["ref"]: p["group"] for p in data["participants"]}
    ballots: dict[int, list[str]] = {}
    for v in data["votes"]:
        if v["voter"] is not None:
            ballots.setdefault(v["voter"], []).extend([title[v["card"]]] * v["dots"])
    # Who is behind each number (the test knows who voted what; an attacker does not).
    ref_of = {}
    for p in live_run.people:
        matches = [r for r, b in ballots.items() if sorted(b) == sorted(live_run.voted[p.viewer])]
        if len(matches) == 1:
            ref_of[p.index] = matches[0]
    assert len(ref_of) >= 10, "could not tell the voters apart"
    # What an attacker does know: who joined when. People joined in index order.
    by_group: dict[str, list[int]] = {}
    for index in sorted(ref_of):
        by_group.setdefault(group[ref_of[index]], []).append(ref_of[index])
    assert not all(refs == sorted(refs) for refs in by_group.values() if len(refs) > 2), (
        "within each group, voter numbers rise with join order"
    )
