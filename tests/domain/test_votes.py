"""Dot voting: budgets and caps hold under concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlmodel import Session, func, select

from app.domain import votes
from app.domain.errors import PhaseClosed, VoteBudgetExceeded
from app.models import Vote
from tests import factories as f


def _voting_workshop(session: Session, n_cards: int = 3) -> tuple[Any, Any, list[Any]]:
    ws = f.workshop(session, private_writing=False)
    author, _ = f.join(session, ws, "Author")
    fa = f.set_phase(session, ws, 0, "collect")
    cards = [f.card(session, ws, author, fa.id, title=f"Card {i}") for i in range(n_cards)]
    f.set_phase(session, ws, 0, "vote")
    return ws, fa, cards


def test_vote_budget_and_cap(session: Session) -> None:
    ws, fa, cards = _voting_workshop(session)
    voter, _ = f.join(session, ws, "Voter")
    for _ in range(3):
        votes.change_vote(session, workshop=ws, participant=voter, card_id=cards[0].id, delta=1)
    with pytest.raises(VoteBudgetExceeded):
        votes.change_vote(session, workshop=ws, participant=voter, card_id=cards[0].id, delta=1)
    votes.change_vote(session, workshop=ws, participant=voter, card_id=cards[1].id, delta=1)
    r = votes.change_vote(session, workshop=ws, participant=voter, card_id=cards[2].id, delta=1)
    assert r.dots_left == 0
    with pytest.raises(VoteBudgetExceeded):
        votes.change_vote(session, workshop=ws, participant=voter, card_id=cards[2].id, delta=1)
    r = votes.change_vote(session, workshop=ws, participant=voter, card_id=cards[0].id, delta=-1)
    assert (r.my_dots, r.dots_left) == (2, 1)
    session.commit()


def test_vote_after_phase_closes_is_refused(session: Session) -> None:
    ws, fa, cards = _voting_workshop(session)
    voter, _ = f.join(session, ws, "Voter")
    f.set_phase(session, ws, 0, "synthesize")
    with pytest.raises(PhaseClosed):
        votes.change_vote(session, workshop=ws, participant=voter, card_id=cards[0].id, delta=1)


def test_concurrent_votes_never_exceed_budget(engine: Any) -> None:
    """200 concurrent +1 requests from one participant with budget 5 store exactly 5."""
    with Session(engine, expire_on_commit=False) as session:
        ws, fa, cards = _voting_workshop(session, n_cards=5)
        voter, _ = f.join(session, ws, "Voter")
        ws_id, voter_id = ws.id, voter.id
        card_ids = [c.id for c in cards]

    def one(i: int) -> str:
        from app.models import Participant, Workshop

        with Session(engine, expire_on_commit=False) as s:
            try:
                w = s.get(Workshop, ws_id)
                p = s.get(Participant, voter_id)
                votes.change_vote(s, workshop=w, participant=p, card_id=card_ids[i % 5], delta=1)
                s.commit()
                return "ok"
            except VoteBudgetExceeded:
                s.rollback()
                return "refused"

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(200)))
    with Session(engine) as s:
        total = s.exec(select(func.sum(Vote.dots)).where(Vote.participant_id == voter_id)).one()
    assert total == 5
    assert results.count("ok") == 5 and results.count("refused") == 195
