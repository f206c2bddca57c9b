"""Ranking, ties, turnout and affiliation shares in app.domain.results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from app.domain.results import focus_area_results, workshop_results
from app.models import FocusArea, Participant, Workshop
from tests.exports import factory as f


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    for engine in f.make_test_engine(tmp_path):
        with Session(engine, expire_on_commit=False) as s:
            yield s


@pytest.fixture
def area(session: Session) -> FocusArea:
    return f.focus_area(session, f.workshop(session), title="Area", ratings_enabled=True)


def _people(session: Session, ws_id: int, group: str, n: int) -> list[Participant]:
    ws = session.get(Workshop, ws_id)
    assert ws is not None
    return [f.participant(session, ws, f"{group} person {i}", group) for i in range(n)]


def test_clusters_rank_by_dots_then_voters_then_position(session: Session, area: FocusArea) -> None:
    a = f.cluster(session, area, "A", position=0)
    b = f.cluster(session, area, "B", position=1)
    c = f.cluster(session, area, "C", position=2)
    d = f.cluster(session, area, "D", position=3)
    cards = {
        cl.title: f.card(session, area, f"card {cl.title}", cluster_id=cl.id) for cl in (a, b, c, d)
    }
    p = _people(session, area.workshop_id, "Secretariat", 4)
    f.vote(session, p[0], cards["A"], 3)  # 3 dots, 1 voter
    f.vote(session, p[0], cards["B"], 1)
    f.vote(session, p[1], cards["B"], 1)
    f.vote(session, p[2], cards["B"], 1)  # 3 dots, 3 voters
    f.vote(session, p[1], cards["D"], 2)
    f.vote(session, p[3], cards["D"], 1)  # 3 dots, 2 voters
    f.vote(session, p[3], cards["C"], 0)  # a zero row counts for nothing
    session.commit()
    res = focus_area_results(session, area.id or 0)
    assert [(c.title, c.dots, c.voters) for c in res.clusters] == [
        ("B", 3, 3),
        ("D", 3, 2),
        ("A", 3, 1),
        ("C", 0, 0),
    ]
    assert [c.rank for c in res.clusters] == [1, 2, 3, 4]
    assert (res.turnout.voters, res.turnout.dots_spent) == (4, 9)


def test_equal_clusters_keep_the_facilitators_order(session: Session, area: FocusArea) -> None:
    second = f.cluster(session, area, "second", position=1)
    first = f.cluster(session, area, "first", position=0)
    f.card(session, area, "x", cluster_id=second.id)
    f.card(session, area, "y", cluster_id=first.id)
    session.commit()
    assert [c.title for c in focus_area_results(session, area.id or 0).clusters] == [
        "first",
        "second",
    ]


def test_only_visible_cards_and_active_clusters_count(session: Session, area: FocusArea) -> None:
    cl = f.cluster(session, area, "kept")
    gone = f.cluster(session, area, "deleted", status="deleted")
    visible = f.card(session, area, "visible", cluster_id=cl.id)
    hidden = f.card(session, area, "hidden", cluster_id=cl.id, status="hidden")
    orphan = f.card(session, area, "orphan", cluster_id=gone.id)
    p = _people(session, area.workshop_id, "ODIHR", 1)[0]
    f.vote(session, p, visible, 1)
    f.vote(session, p, hidden, 2)
    session.commit()
    res = focus_area_results(session, area.id or 0)
    assert [c.title for c in res.clusters] == ["kept"]
    assert res.clusters[0].dots == 1
    assert [c.title for c in res.clusters[0].cards] == ["visible"]
    assert [c.title for c in res.unclustered] == ["orphan"]
    assert orphan.id == res.unclustered[0].id


def test_unclustered_cards_rank_by_dots(session: Session, area: FocusArea) -> None:
    low = f.card(session, area, "low")
    high = f.card(session, area, "high")
    p = _people(session, area.workshop_id, "ODIHR", 1)[0]
    f.vote(session, p, high, 2)
    f.vote(session, p, low, 1)
    session.commit()
    assert [c.title for c in focus_area_results(session, area.id or 0).unclustered] == [
        "high",
        "low",
    ]


def test_shares_shown_only_for_groups_of_three(session: Session, area: FocusArea) -> None:
    cl = f.cluster(session, area, "topic")
    card = f.card(session, area, "card", cluster_id=cl.id)
    for p in _people(session, area.workshop_id, "OSCE Secretariat", 3):
        f.vote(session, p, card, 2)
    for p in _people(session, area.workshop_id, "Field operation: Serbia", 2):
        f.vote(session, p, card, 1)
    session.commit()
    res = focus_area_results(session, area.id or 0)
    shares = {s.group: s.share for s in res.clusters[0].shares}
    # Two field-operation voters are too few to show, even folded as "Other";
    # and "Secretariat 75%" alone would give their 25% away by subtraction,
    # so no breakdown is shown at all (tests/domain/test_disclosure.py).
    assert shares == {}
    assert res.groups_shown == []
    assert not res.clusters[0].shared_across_structures


def test_shared_across_structures_needs_every_group(session: Session, area: FocusArea) -> None:
    broad = f.cluster(session, area, "broad", position=0)
    narrow = f.cluster(session, area, "narrow", position=1)
    b = f.card(session, area, "b", cluster_id=broad.id)
    n = f.card(session, area, "n", cluster_id=narrow.id)
    for p in _people(session, area.workshop_id, "Secretariat", 3):
        f.vote(session, p, b, 1)
        f.vote(session, p, n, 3)
    for p in _people(session, area.workshop_id, "Field operation: Skopje", 3):
        f.vote(session, p, b, 2)
    session.commit()
    res = {c.title: c for c in focus_area_results(session, area.id or 0).clusters}
    assert res["broad"].shared_across_structures
    assert {s.group for s in res["broad"].shares} == {"Field operation", "Secretariat"}
    assert not res["narrow"].shared_across_structures
    assert [s.share for s in res["narrow"].shares] == [0.0, 1.0]


def test_anonymized_votes_fall_back_to_rows(session: Session, area: FocusArea) -> None:
    cl = f.cluster(session, area, "c")
    one = f.card(session, area, "one", cluster_id=cl.id)
    two = f.card(session, area, "two", cluster_id=cl.id)
    for _ in range(3):
        f.vote(session, None, one, 1, affiliation="ODIHR")
    f.vote(session, None, two, 1, affiliation="ODIHR")
    session.commit()
    res = focus_area_results(session, area.id or 0)
    assert res.clusters[0].voters == 4  # rows, since people can no longer be told apart
    assert res.turnout.voters == 3  # at least three people: three rows on one card
    assert [s.group for s in res.clusters[0].shares] == ["ODIHR"]


def test_rating_means_over_all_ratings_of_the_cards(session: Session, area: FocusArea) -> None:
    cl = f.cluster(session, area, "c")
    a = f.card(session, area, "a", cluster_id=cl.id)
    b = f.card(session, area, "b", cluster_id=cl.id)
    people = _people(session, area.workshop_id, "X", 3)
    f.rate(session, people[0], a, 5, 1)
    f.rate(session, people[1], a, 5, 1)
    f.rate(session, people[2], b, 2, 4)
    session.commit()
    top = focus_area_results(session, area.id or 0).clusters[0]
    assert (top.ratings, top.impact, top.feasibility) == (3, 4.0, 2.0)


def test_without_totals_numbers_are_hidden(session: Session, area: FocusArea) -> None:
    cl = f.cluster(session, area, "c")
    card = f.card(session, area, "a", cluster_id=cl.id)
    f.vote(session, _people(session, area.workshop_id, "X", 1)[0], card, 2)
    session.commit()
    res = focus_area_results(session, area.id or 0, include_totals=False)
    assert res.clusters[0].dots is None and res.clusters[0].cards[0].dots is None
    assert res.clusters[0].shares == []
    assert res.turnout.dots_spent == 2


def test_json_has_no_author_or_participant(session: Session) -> None:
    ws = f.sample_workshop(session)
    data = workshop_results(session, ws.id or 0).to_json()
    raw = json.dumps(data, ensure_ascii=False)
    assert "author" not in raw and "participant" not in raw
    assert not any(name in raw for name in f.NAMES)
    assert len(data["focus_areas"]) == 2


def test_queries_stay_few_for_many_cards(session: Session, area: FocusArea) -> None:
    from sqlalchemy import event

    cl = f.cluster(session, area, "c")
    people = _people(session, area.workshop_id, "X", 5)
    for i in range(200):
        card = f.card(session, area, f"card {i}", cluster_id=cl.id if i % 2 else None)
        f.vote(session, people[i % 5], card, 1)
    session.commit()
    statements: list[str] = []
    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    focus_area_results(session, area.id or 0)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) <= 6
