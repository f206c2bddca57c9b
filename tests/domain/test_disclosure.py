"""Disclosure control: no breakdown by affiliation lets anyone compute what a
group of fewer than three people did, by subtraction from totals or voter
counts, or from other clusters (app/domain/disclosure.py states the rule).

The attack this pins (found black-box on main): with 3 ODIHR, 3 Secretariat
and one field officer, "9 dots from 7 voters; ODIHR 3, Secretariat 3" told
everyone the field officer gave 3 dots to that cluster."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from app.domain import affiliations, disclosure
from app.domain.results import focus_area_results
from app.models import FocusArea, Participant, Workshop
from tests.exports import factory as f

OTHER = affiliations.OTHER


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    for engine in f.make_test_engine(tmp_path):
        with Session(engine, expire_on_commit=False) as s:
            yield s


def _people(session: Session, ws: Workshop, group: str, n: int) -> list[Participant]:
    return [f.participant(session, ws, f"{group} {i}", group) for i in range(n)]


def test_lone_field_officer_cannot_be_recovered_by_subtraction(session: Session) -> None:
    ws = f.workshop(session)
    fa = f.focus_area(session, ws, title="Area")
    cl = f.cluster(session, fa, "Joint teams")
    card = f.card(session, fa, "JIT", cluster_id=cl.id)
    for p in _people(session, ws, "ODIHR", 3) + _people(session, ws, "Secretariat", 3):
        f.vote(session, p, card, 1)
    (officer,) = _people(session, ws, "Field operation: Skopje", 1)
    f.vote(session, officer, card, 3)
    session.commit()
    res = focus_area_results(session, fa.id or 0).clusters[0]
    assert (res.dots, res.voters) == (9, 7)
    shown = {s.group: s.dots for s in res.shares}
    # Every dot is in a published label, so "total minus shown" is zero...
    assert sum(shown.values()) == res.dots
    # ...and the lone officer's dots only ever appear pooled with 3+ others.
    assert shown.get(OTHER, 0) != 3 and "Field operation" not in shown
    assert set(shown) == {"Secretariat", OTHER}  # ODIHR folded in: smallest, then by name


def test_no_breakdown_when_everything_would_be_other(session: Session) -> None:
    ws = f.workshop(session)
    fa = f.focus_area(session, ws, title="Area")
    cl = f.cluster(session, fa, "topic")
    card = f.card(session, fa, "card", cluster_id=cl.id)
    for p in _people(session, ws, "OSCE Secretariat", 3):
        f.vote(session, p, card, 2)
    for p in _people(session, ws, "Field operation: Serbia", 2):
        f.vote(session, p, card, 1)
    session.commit()
    res = focus_area_results(session, fa.id or 0)
    # "Secretariat 75%" would give away the two field voters' 25%.
    assert res.clusters[0].shares == [] and res.groups_shown == []


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ({"A": 3, "B": 3}, ["A", "B"]),
        ({"A": 3, "B": 3, "c": 1}, ["B", OTHER]),
        ({"A": 3, "c": 1, "d": 2}, ["A", OTHER]),
        ({"A": 5, "B": 4, "c": 1}, ["A", OTHER]),
        ({"A": 3, "c": 2}, []),
        ({"A": 2, "B": 2}, []),
        ({"A": 9}, ["A"]),
        ({OTHER: 1, "A": 3, "B": 4}, ["B", OTHER]),
    ],
)
def test_rule(sizes: dict[str, int], expected: list[str]) -> None:
    assert disclosure.published(sizes) == expected
    mapping = disclosure.labels(sizes)
    people: dict[str, int] = defaultdict(int)
    for group, n in sizes.items():
        people[mapping[group]] += n
    assert all(people[label] >= disclosure.K for label in disclosure.published(sizes))


# Each voter: (group index, dots on each of three clustered cards).
VOTERS = st.lists(
    st.tuples(st.integers(0, 3), st.lists(st.integers(0, 3), min_size=3, max_size=3)),
    min_size=1,
    max_size=14,
)
GROUPS = ["ODIHR", "Secretariat", "Field operation: Skopje", "External partner"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(voters=VOTERS)
def test_every_breakdown_adds_up_and_names_only_groups_of_three(
    session: Session, voters: list[tuple[int, list[int]]]
) -> None:
    """For any ballots: each cluster's shares add up to its dots, and every
    published label stands for at least three voters of the focus area."""
    ws = f.workshop(session)
    fa: FocusArea = f.focus_area(session, ws, title="Area")
    clusters = [f.cluster(session, fa, f"c{i}", position=i) for i in range(2)]
    cards = [
        f.card(session, fa, "one", cluster_id=clusters[0].id),
        f.card(session, fa, "two", cluster_id=clusters[0].id),
        f.card(session, fa, "three", cluster_id=clusters[1].id),
    ]
    group_of_label: dict[str, set[str]] = defaultdict(set)
    voted: dict[str, int] = defaultdict(int)
    for i, (g, dots) in enumerate(voters):
        p = f.participant(session, ws, f"p{i}", GROUPS[g])
        if any(dots):
            voted[affiliations.group_of(GROUPS[g])] += 1
        for card, n in zip(cards, dots, strict=True):
            if n:
                f.vote(session, p, card, n)
    session.commit()
    res = focus_area_results(session, fa.id or 0)
    mapping = disclosure.labels(voted)
    for label, group in ((mapping[g], g) for g in voted):
        group_of_label[label].add(group)
    for cl in res.clusters:
        if cl.shares:
            assert sum(s.dots for s in cl.shares) == cl.dots
        for s in cl.shares:
            assert sum(voted[g] for g in group_of_label[s.group]) >= disclosure.K
    for label in res.groups_shown:
        assert sum(voted[g] for g in group_of_label[label]) >= disclosure.K
