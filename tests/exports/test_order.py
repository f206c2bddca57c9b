"""No order, no timing (DESIGN.md section 4): every export lists rows in an
order that depends on content only, never on ids or on when something was
written or cast; pseudonyms are drawn afresh per export; event numbers are
renumbered; no time finer than the day.

The attacks: someone who watched the room knows who joined, wrote and voted
when. If an export lists ballots (or numbers cards) in that order, they can
put a name on every pseudonym and read that person's whole ballot.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import pytest
from pypdf import PdfReader
from sqlmodel import Session

from app.exports import FORMATS, ExportFile, export_workshop
from app.exports.archive import export_archive
from app.models import Workshop
from tests.exports import factory
from tests.exports.readers import docx_paragraphs, pdf_text, xlsx_values

SEC = "OSCE Secretariat"
PEOPLE = [
    ("Alda Quellworth", SEC),
    ("Bram Ostrowicz", SEC),
    ("Cleo Varganova", SEC),
    ("Dario Pennington", "Field operation: OSCE Mission to Serbia"),
    ("Esme Tullamore", "Field operation: OSCE Mission to Skopje"),
    ("Fynn Oakenshaw", "Field operation: OSCE Mission in Kosovo"),
]
# (focus area, cluster or None, kind, title, body). Several ties on purpose:
# cards with no dots, cards with equal dots in one cluster.
CARDS = [
    (0, "Border posts", "lesson", "Joint patrols", "Shared shifts at the crossing."),
    (0, "Border posts", "lesson", "Common radio", "One channel for both sides."),
    (0, "Border posts", "tool", "Shift planner", ""),
    (0, "Data sharing", "method", "Liaison officers", "Seconded for six months."),
    (0, "Data sharing", "lesson", "Secure mailbox", "Encrypted, audited."),
    (0, None, "recommendation", "Fund the hotline", ""),
    (0, None, "recommendation", "Annual review", "Every spring."),
    (0, None, "lesson", "Translate the manual", ""),
    (1, None, "tool", "Risk matrix", "A one-page grid."),
    (1, None, "method", "Peer visits", ""),
    (1, None, "lesson", "Start small", ""),
]
CLUSTERS = [(0, "Border posts", 0), (0, "Data sharing", 1)]
# Everyone's ballot is different, so the test (and an attacker) can tell
# them apart; dots per card at most 3, at most 5 per focus area.
BALLOTS: dict[int, list[tuple[str, int]]] = {
    0: [("Joint patrols", 3), ("Liaison officers", 2), ("Risk matrix", 1)],
    1: [("Common radio", 3), ("Fund the hotline", 2), ("Peer visits", 2)],
    2: [("Joint patrols", 1), ("Secure mailbox", 3), ("Risk matrix", 3)],
    3: [("Shift planner", 2), ("Annual review", 3), ("Start small", 1)],
    4: [("Joint patrols", 2), ("Common radio", 2), ("Fund the hotline", 1)],
    5: [("Liaison officers", 1), ("Secure mailbox", 1), ("Peer visits", 3), ("Risk matrix", 2)],
}
RATINGS = {
    0: [("Joint patrols", 5, 4), ("Liaison officers", 3, 3)],
    1: [("Common radio", 4, 2)],
    2: [("Joint patrols", 2, 5), ("Secure mailbox", 4, 4)],
    3: [("Shift planner", 1, 5)],
    4: [("Common radio", 3, 3), ("Liaison officers", 5, 1)],
    5: [("Secure mailbox", 2, 2)],
}


def _build(session: Session, *, reverse: bool, same_group: bool = False) -> Workshop:
    """The same workshop, written and voted on in two different orders:
    ``reverse`` creates the clusters and cards and casts the votes and
    ratings the other way round (people join in the same order)."""

    def order(items: list[Any]) -> list[Any]:
        return list(reversed(items)) if reverse else list(items)

    ws = factory.workshop(session, title="Border co-operation")
    people = [
        factory.participant(session, ws, name, SEC if same_group else affiliation)
        for name, affiliation in PEOPLE
    ]
    areas = [
        factory.focus_area(session, ws, title="Borders", position=0, ratings_enabled=True),
        factory.focus_area(session, ws, title="Methods", position=1),
    ]
    clusters = {
        title: factory.cluster(session, areas[fa], title, synthesis=f"On {title}.", position=pos)
        for fa, title, pos in order(CLUSTERS)
    }
    cards = {
        title: factory.card(
            session,
            areas[fa],
            title,
            kind,
            body=body,
            cluster_id=clusters[cl].id if cl else None,
        )
        for fa, cl, kind, title, body in order(CARDS)
    }
    for fa in areas:
        for phase in ("collect", "cluster", "vote", "closed"):
            factory.event(session, ws, "focus_area.phase", focus_area_id=fa.id, phase=phase)
    moved = cards["Secure mailbox"]
    factory.event(
        session,
        ws,
        "card.moved",
        card_id=moved.id,
        from_cluster_id=clusters["Border posts"].id,
        to_cluster_id=clusters["Data sharing"].id,
    )
    for i in order(list(BALLOTS)):
        for title, dots in BALLOTS[i]:
            factory.vote(session, people[i], cards[title], dots)
        session.flush()  # one person's ballot after another: ids in casting order
    for i in order(list(RATINGS)):
        for title, impact, feasibility in RATINGS[i]:
            factory.rate(session, people[i], cards[title], impact, feasibility)
        session.flush()
    session.commit()
    return ws


def _ballots(archive: dict[str, Any]) -> dict[int, list[tuple[str, int]]]:
    """Pseudonym -> (card title, dots) of every vote under it."""
    title = {c["ref"]: c["title"] for c in archive["cards"]}
    out: dict[int, list[tuple[str, int]]] = {}
    for v in archive["votes"]:
        out.setdefault(v["voter"], []).append((title[v["card"]], v["dots"]))
    return {ref: sorted(b) for ref, b in out.items()}


def _who(archive: dict[str, Any]) -> dict[int, int]:
    """Person (index in PEOPLE) -> pseudonym, from the ballots: what the test
    knows and an attacker should not be able to work out."""
    truth = {tuple(sorted(b)): i for i, b in BALLOTS.items()}
    return {truth[tuple(b)]: ref for ref, b in _ballots(archive).items()}


def _without_voters(archive: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in vote.items() if k != "voter"} for vote in archive["votes"]]


def test_archive_rows_follow_content_not_writing_or_casting_order(session: Session) -> None:
    first, second = _build(session, reverse=False), _build(session, reverse=True)
    assert first.id is not None and second.id is not None
    a, b = export_archive(session, first.id), export_archive(session, second.id)
    # Cards and clusters: the same references whichever was written first.
    assert a["cards"] == b["cards"]
    assert a["clusters"] == b["clusters"]
    assert a["ratings"] == b["ratings"]
    assert a["events"] == b["events"]
    # Ballots: the same rows in the same order, up to the fresh pseudonyms.
    assert _without_voters(a) == _without_voters(b)
    assert sorted(_ballots(a).values()) == sorted(_ballots(b).values())


def test_first_voters_in_the_archive_are_not_the_first_to_vote(session: Session) -> None:
    # The attack that named 6 of 6: everyone is in one group (so the group
    # says nothing), they voted one after another, and the attacker knows the
    # order. They read the pseudonyms in order of first appearance.
    ws = _build(session, reverse=False, same_group=True)
    assert ws.id is not None
    named = []
    for _ in range(4):
        archive = export_archive(session, ws.id)
        seen = list(dict.fromkeys(v["voter"] for v in archive["votes"]))
        guess = dict(zip(sorted(BALLOTS), seen, strict=True))  # i-th to vote -> i-th seen
        named.append(sum(guess[i] == ref for i, ref in _who(archive).items()))
    assert named != [len(BALLOTS)] * 4, "every export lists ballots in casting order"


def test_pseudonyms_are_drawn_afresh_per_export(session: Session) -> None:
    ws = _build(session, reverse=False, same_group=True)
    assert ws.id is not None
    seen = {tuple(sorted(_who(export_archive(session, ws.id)).items())) for _ in range(6)}
    assert len(seen) > 1, "the same person got the same pseudonym in six exports"


def test_archive_card_refs_do_not_follow_ids(session: Session) -> None:
    ws = _build(session, reverse=True)  # the last card in content order is written first
    assert ws.id is not None
    archive = export_archive(session, ws.id)
    refs = [c["ref"] for c in archive["cards"]]
    assert refs == list(range(1, len(refs) + 1))
    keys = [(c["focus_area"], c["kind"], c["title"]) for c in archive["cards"]]
    assert keys != [(c["focus_area"], c["kind"], c["title"]) for c in reversed(archive["cards"])]
    assert [c["ref"] for c in archive["clusters"]] == [1, 2]
    assert [c["title"] for c in archive["clusters"]] == ["Border posts", "Data sharing"]


def _text(fmt: str, file: ExportFile) -> Any:
    if fmt == "json":
        return _without_voters(json.loads(file.content))
    if fmt == "xlsx":
        return xlsx_values(file.content)
    if fmt == "docx":
        return docx_paragraphs(file.content)
    if fmt == "pdf":
        return pdf_text(file.content)
    return file.content


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_documents_follow_content_not_writing_order(session: Session, fmt: str) -> None:
    first, second = _build(session, reverse=False), _build(session, reverse=True)
    assert first.id is not None and second.id is not None
    a = export_workshop(session, first.id, fmt)
    b = export_workshop(session, second.id, fmt)
    assert _text(fmt, a) == _text(fmt, b)


def test_event_seqs_are_renumbered_without_gaps(session: Session) -> None:
    ws = factory.workshop(session)
    fa = factory.focus_area(session, ws)
    a = factory.cluster(session, fa, "A")
    b = factory.cluster(session, fa, "B")
    card = factory.card(session, fa, "Moved card", cluster_id=b.id)
    # Exports, edits and votes between the events the archive keeps.
    for kind, payload in [
        ("focus_area.phase", {"focus_area_id": fa.id, "phase": "collect"}),
        ("export.created", {"format": "pdf"}),
        ("card.created", {"card_id": card.id}),
        ("card.created", {"card_id": card.id}),
        ("cluster.created", {"cluster_id": a.id, "focus_area_id": fa.id}),
        ("vote.cast", {"card_id": card.id}),
        ("export.created", {"format": "docx"}),
        ("card.moved", {"card_id": card.id, "from_cluster_id": a.id, "to_cluster_id": b.id}),
        ("export.created", {"format": "json"}),
        ("focus_area.phase", {"focus_area_id": fa.id, "phase": "closed"}),
    ]:
        factory.event(session, ws, kind, **payload)
    session.commit()
    assert ws.id is not None
    events = export_archive(session, ws.id)["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["kind"] for e in events] == [
        "focus_area.phase",
        "cluster.created",
        "card.moved",
        "focus_area.phase",
    ]
    assert "export.created" not in {e["kind"] for e in events}


def test_first_placements_of_cards_are_not_in_the_archive(session: Session) -> None:
    # Putting a card into its first cluster replays the order cards came in;
    # provenance only reports moves between clusters.
    ws = factory.workshop(session)
    fa = factory.focus_area(session, ws)
    a, b = factory.cluster(session, fa, "A"), factory.cluster(session, fa, "B")
    cards = [factory.card(session, fa, f"Card {i}", cluster_id=a.id) for i in range(3)]
    for c in cards:
        factory.event(
            session, ws, "card.moved", card_id=c.id, from_cluster_id=None, to_cluster_id=a.id
        )
    factory.event(
        session, ws, "card.moved", card_id=cards[1].id, from_cluster_id=a.id, to_cluster_id=b.id
    )
    session.commit()
    assert ws.id is not None
    events = export_archive(session, ws.id)["events"]
    assert [(e["kind"], e["seq"]) for e in events] == [("card.moved", 1)]
    assert events[0]["payload"]["from_cluster_id"] is not None


# --- time --------------------------------------------------------------------

_CLOCK = re.compile(r"\d{1,2}:\d{2}")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T(\d{2}:\d{2}:\d{2})")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_no_export_carries_a_time_finer_than_the_day(
    rendered: dict[str, ExportFile], fmt: str
) -> None:
    content = rendered[fmt].content
    if fmt in ("docx", "xlsx"):
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            for info in z.infolist():
                # A zip member's own modification time is metadata too.
                assert info.date_time[3:] == (0, 0, 0), (info.filename, info.date_time)
                text = z.read(info).decode("utf-8", "replace")
                assert set(_ISO.findall(text)) <= {"00:00:00"}, info.filename
    elif fmt == "pdf":
        info = PdfReader(io.BytesIO(content)).metadata or {}
        for key in ("/CreationDate", "/ModDate"):
            if key in info:
                assert re.fullmatch(r"D:\d{8}(000000)?(Z|[+-]00'?00'?)?", str(info[key])), key
        assert not _CLOCK.search(pdf_text(content))
    else:
        assert not _CLOCK.search(content.decode("utf-8-sig"))
        if fmt == "json":
            assert {e["day"] for e in json.loads(content)["events"]} == {"2007-10-15"}
