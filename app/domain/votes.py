"""Dot voting and ratings. Exact under races: the voter's participant row is
locked first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's write
transactions begin IMMEDIATE and so are serialized), then the budget and the
per-card cap are checked against the stored dots and the vote row updated."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import String, cast, update
from sqlmodel import Session, col, func, select

from app.domain import cards, events
from app.domain.actors import Actor
from app.domain.errors import (
    Conflict,
    Invalid,
    NotAllowed,
    PhaseClosed,
    VoteBudgetExceeded,
)
from app.models import (
    Card,
    CardStatus,
    FocusArea,
    Participant,
    Phase,
    Rating,
    Vote,
    Workshop,
)


@dataclass(frozen=True)
class MyDots:
    card_id: int
    my_dots: int
    dots_left: int


def _lock_participant(session: Session, participant: Participant) -> str:
    """Lock the voter's row and return their voter key, drawn on first use
    (read under the lock, so two first votes at once agree on one key)."""
    key = session.exec(
        select(Participant.voter_key).where(Participant.id == participant.id).with_for_update()
    ).one()
    if key is None:
        key = secrets.token_hex(16)
        session.exec(  # type: ignore[call-overload]
            update(Participant).where(col(Participant.id) == participant.id).values(voter_key=key)
        )
    participant.voter_key = key
    return key


def _votable_card(
    session: Session, workshop: Workshop, participant: Participant, card_id: int
) -> tuple[Card, FocusArea]:
    # Through the gate first: a card the voter may not see is not found.
    card, fa = cards.seen_card(
        session,
        workshop=workshop,
        viewer=Actor.participant(participant_id=participant.id),
        card_id=card_id,
    )
    if card.status != CardStatus.visible:
        raise Conflict("This card was withdrawn or hidden; it cannot be voted on.", field="card_id")
    if workshop.closed or fa.phase != Phase.vote:
        raise PhaseClosed(f"Voting is not open in “{fa.title}”.")
    return card, fa


def dots_spent(session: Session, *, participant_id: int, focus_area_id: int) -> int:
    return session.exec(
        select(func.coalesce(func.sum(Vote.dots), 0)).where(
            Vote.participant_id == participant_id, Vote.focus_area_id == focus_area_id
        )
    ).one()


def my_votes(session: Session, *, participant_id: int, focus_area_id: int) -> dict[int, int]:
    rows = session.exec(
        select(Vote.card_id, Vote.dots).where(
            Vote.participant_id == participant_id,
            Vote.focus_area_id == focus_area_id,
            col(Vote.dots) > 0,
        )
    ).all()
    return {card_id: dots for card_id, dots in rows}


def change_vote(
    session: Session, *, workshop: Workshop, participant: Participant, card_id: int, delta: int
) -> MyDots:
    """Add (delta=+1) or remove (delta=-1) one dot."""
    if participant.role != "participant":
        raise NotAllowed("Facilitators do not vote.")
    assert delta in (1, -1) and participant.id is not None and workshop.id is not None
    voter_key = _lock_participant(session, participant)
    card, fa = _votable_card(session, workshop, participant, card_id)
    assert fa.id is not None and card.id is not None
    vote = session.exec(
        select(Vote).where(Vote.participant_id == participant.id, Vote.card_id == card.id)
    ).first()
    spent = dots_spent(session, participant_id=participant.id, focus_area_id=fa.id)
    current = vote.dots if vote else 0
    if delta > 0:
        if spent >= workshop.vote_budget:
            raise VoteBudgetExceeded(
                f"You have used all {workshop.vote_budget} dots in “{fa.title}”. "
                "Remove a dot elsewhere first."
            )
        if current >= workshop.vote_cap:
            raise VoteBudgetExceeded(f"At most {workshop.vote_cap} dots on one card.")
    elif current == 0:
        return MyDots(card.id, 0, workshop.vote_budget - spent)
    if vote is None:
        vote = Vote(
            participant_id=participant.id,
            card_id=card.id,
            focus_area_id=fa.id,
            affiliation=participant.affiliation,
            voter_key=voter_key,
        )
    vote.dots = current + delta
    session.add(vote)
    events.record(
        session,
        workshop_id=workshop.id,
        kind="vote.changed",
        actor="participant",
        card_id=card.id,
        focus_area_id=fa.id,
    )
    return MyDots(card.id, vote.dots, workshop.vote_budget - spent - delta)


def rate(
    session: Session,
    *,
    workshop: Workshop,
    participant: Participant,
    card_id: int,
    impact: int,
    feasibility: int,
) -> Rating:
    if participant.role != "participant":
        raise NotAllowed("Facilitators do not rate.")
    for name, value in (("impact", impact), ("feasibility", feasibility)):
        if not 1 <= value <= 5:
            raise Invalid(f"{name.capitalize()} is rated from 1 to 5.", field=name)
    _lock_participant(session, participant)
    card, fa = _votable_card(session, workshop, participant, card_id)
    if not fa.ratings_enabled:
        raise Conflict(f"Ratings are not used in “{fa.title}”.")
    assert workshop.id is not None and card.id is not None and fa.id is not None
    rating = session.exec(
        select(Rating).where(Rating.participant_id == participant.id, Rating.card_id == card.id)
    ).first()
    if rating is None:
        rating = Rating(
            participant_id=participant.id,
            card_id=card.id,
            focus_area_id=fa.id,
            impact=impact,
            feasibility=feasibility,
        )
    rating.impact, rating.feasibility = impact, feasibility
    session.add(rating)
    events.record(
        session,
        workshop_id=workshop.id,
        kind="rating.changed",
        actor="participant",
        card_id=card.id,
        focus_area_id=fa.id,
    )
    return rating


def turnout(session: Session, *, focus_area_id: int) -> tuple[int, int]:
    """(voters, dots spent) in a focus area: shown even under blind voting.
    People are counted by voter key, which anonymize-on-close keeps."""
    voter = func.coalesce(Vote.voter_key, cast(Vote.participant_id, String))
    voters, dots = session.exec(
        select(func.count(func.distinct(voter)), func.coalesce(func.sum(Vote.dots), 0)).where(
            Vote.focus_area_id == focus_area_id, col(Vote.dots) > 0
        )
    ).one()
    return voters, dots


def card_totals(session: Session, *, focus_area_id: int) -> dict[int, tuple[int, int]]:
    """card id -> (dots, voters)."""
    rows = session.exec(
        select(Vote.card_id, func.sum(Vote.dots), func.count())
        .where(Vote.focus_area_id == focus_area_id, col(Vote.dots) > 0)
        .group_by(col(Vote.card_id))
    ).all()
    return {card_id: (dots, voters) for card_id, dots, voters in rows}
