"""Clustering: moves, merges with vote combination, provenance events."""

from __future__ import annotations

import pytest
from sqlmodel import Session, col, select

from app.domain import clusters, votes
from app.domain.errors import Conflict, NotAllowed
from app.models import Card, Event, Vote
from tests import factories as f


def _setup(session: Session) -> tuple:  # type: ignore[type-arg]
    ws = f.workshop(session, private_writing=False)
    author, _ = f.join(session, ws, "Author")
    fa = f.set_phase(session, ws, 0, "collect")
    a = f.card(session, ws, author, fa.id, title="A")
    b = f.card(session, ws, author, fa.id, title="B")
    return ws, fa, a, b


def test_participant_cannot_cluster(session: Session) -> None:
    ws, fa, a, b = _setup(session)
    with pytest.raises(NotAllowed):
        clusters.create_cluster(session, workshop=ws, focus_area=fa, title="x", actor="participant")


def test_move_and_delete_cluster(session: Session) -> None:
    ws, fa, a, b = _setup(session)
    f.set_phase(session, ws, 0, "cluster")
    cl = clusters.create_cluster(
        session, workshop=ws, focus_area=fa, title="Theme", actor="facilitator", card_ids=[a.id]
    )
    clusters.move_card(session, workshop=ws, card_id=b.id, cluster_id=cl.id, actor="facilitator")
    session.commit()
    assert {c.cluster_id for c in session.exec(select(Card))} == {cl.id}
    clusters.delete_cluster(session, workshop=ws, cluster_id=cl.id, actor="facilitator")
    session.commit()
    assert {c.cluster_id for c in session.exec(select(Card))} == {None}
    with pytest.raises(Conflict):
        clusters.move_card(
            session, workshop=ws, card_id=a.id, cluster_id=cl.id, actor="facilitator"
        )
    kinds = [e.kind for e in session.exec(select(Event).order_by(col(Event.seq)))]
    assert kinds.count("card.moved") == 2 and "cluster.deleted" in kinds


def test_merge_combines_votes_within_the_cap(session: Session) -> None:
    ws, fa, a, b = _setup(session)
    f.set_phase(session, ws, 0, "vote")
    voter, _ = f.join(session, ws, "Voter")
    for card, n in ((a, 2), (b, 3)):
        for _ in range(n):
            votes.change_vote(session, workshop=ws, participant=voter, card_id=card.id, delta=1)
    session.commit()
    clusters.merge_cards(session, workshop=ws, card_id=b.id, into=a.id, actor="facilitator")
    session.commit()
    rows = session.exec(select(Vote).where(Vote.participant_id == voter.id)).all()
    assert [(v.card_id, v.dots) for v in rows if v.dots] == [(a.id, 3)]
    session.refresh(b)
    assert b.status == "merged" and b.merged_into_id == a.id
    with pytest.raises(Conflict):
        clusters.move_card(session, workshop=ws, card_id=b.id, cluster_id=None, actor="facilitator")
