"""Cards: writing, editing, withdrawing, moderating, and who may see which.

Visibility is decided here and only here. With private writing on, a card's
text is not sent to anyone but its author while its focus area collects
(facilitators see it when the ``facilitator_sees_private`` setting is on, so
they can moderate). The author is never part of what leaves this module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from app.domain import events
from app.domain.errors import Conflict, Invalid, NotAllowed, NotFound, PhaseClosed
from app.models import (
    Card,
    CardContext,
    CardCreate,
    CardPublic,
    CardStatus,
    CardUpdate,
    FocusArea,
    Participant,
    Phase,
    Role,
    Workshop,
    utcnow,
)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: ``role`` is participant, facilitator, projector or
    organizer; ``participant_id`` is set for participants and facilitators."""

    role: str
    participant_id: int | None = None
    sees_private: bool = False

    @property
    def is_staff(self) -> bool:
        return self.role in ("facilitator", "organizer")


PROJECTOR = Viewer(role="projector")


def viewer_for(participant: Participant, *, facilitator_sees_private: bool) -> Viewer:
    staff = participant.role == Role.facilitator
    return Viewer(
        role=participant.role,
        participant_id=participant.id,
        sees_private=staff and facilitator_sees_private,
    )


def text_hidden(workshop: Workshop, fa: FocusArea) -> bool:
    """True while card text is private: private writing on and the focus
    area still collecting."""
    return workshop.private_writing and fa.phase in (Phase.draft, Phase.collect)


def can_write(fa: FocusArea) -> bool:
    return fa.phase == Phase.collect or (fa.phase == Phase.cluster and fa.late_cards)


def _check_writable(workshop: Workshop, fa: FocusArea) -> None:
    if workshop.closed:
        raise PhaseClosed("This workshop is closed.")
    if not can_write(fa):
        raise PhaseClosed(
            f"“{fa.title}” is not collecting cards now (phase: {fa.phase}). "
            "Keep your text; the facilitator may open it again."
        )


def _check_kind(fa: FocusArea, kind: str) -> None:
    if kind not in fa.kinds:
        allowed = ", ".join(fa.kinds)
        raise Invalid(f"“{fa.title}” takes these kinds of card: {allowed}.", field="kind")


def to_public(card: Card, viewer: Viewer) -> CardPublic:
    return CardPublic(
        id=card.id or 0,
        focus_area_id=card.focus_area_id,
        kind=card.kind,
        title=card.title,
        body=card.body,
        context=card.context,
        status=card.status,
        cluster_id=card.cluster_id,
        merged_into_id=card.merged_into_id,
        version=card.version,
        mine=viewer.participant_id is not None and card.author_id == viewer.participant_id,
    )


def create_card(
    session: Session, *, workshop: Workshop, participant: Participant, data: CardCreate
) -> tuple[Card, bool]:
    """Returns (card, created). The same ``client_id`` from the same
    participant returns the first card instead of a second one."""
    assert workshop.id is not None and participant.id is not None
    if data.client_id:
        existing = session.exec(
            select(Card).where(Card.author_id == participant.id, Card.client_id == data.client_id)
        ).first()
        if existing is not None:
            return existing, False
    fa = session.get(FocusArea, data.focus_area_id)
    if fa is None or fa.workshop_id != workshop.id:
        raise NotFound("This focus area does not exist in this workshop.", field="focus_area_id")
    _check_writable(workshop, fa)
    _check_kind(fa, data.kind.value)
    card = Card(
        workshop_id=workshop.id,
        focus_area_id=data.focus_area_id,
        kind=data.kind.value,
        title=data.title,
        body=data.body.strip(),
        context=_clean_context(data.context),
        author_id=participant.id,
        client_id=data.client_id or None,
    )
    session.add(card)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # A concurrent retry with the same client_id won the race.
        existing = session.exec(
            select(Card).where(Card.author_id == participant.id, Card.client_id == data.client_id)
        ).one()
        return existing, False
    events.record(
        session,
        workshop_id=workshop.id,
        kind="card.created",
        actor="participant",
        card_id=card.id,
        focus_area_id=fa.id,
    )
    return card, True


def _clean_context(ctx: CardContext) -> dict[str, Any]:
    return {k: v for k, v in ctx.model_dump().items() if v not in ("", [], None)}


def get_card(session: Session, *, workshop: Workshop, card_id: int) -> Card:
    card = session.get(Card, card_id)
    if card is None or card.workshop_id != workshop.id:
        raise NotFound("This card does not exist (any more).")
    return card


def update_card(
    session: Session,
    *,
    workshop: Workshop,
    participant: Participant,
    card_id: int,
    data: CardUpdate,
) -> Card:
    card = get_card(session, workshop=workshop, card_id=card_id)
    changes = data.model_dump(exclude_unset=True)
    status = changes.pop("status", None)
    is_author = card.author_id is not None and card.author_id == participant.id
    is_staff = participant.role == Role.facilitator
    fa = session.get(FocusArea, card.focus_area_id)
    assert fa is not None and workshop.id is not None
    if status is not None:
        if not is_staff:
            raise NotAllowed("Only the facilitator can hide or restore cards.")
        if status not in (CardStatus.hidden, CardStatus.visible):
            raise Invalid("A card's status can be set to hidden or visible.", field="status")
        if card.status not in (CardStatus.hidden, CardStatus.visible):
            raise Conflict(f"This card is {card.status}; it cannot be moderated.")
        if card.status != status:
            card.status = status
            events.record(
                session,
                workshop_id=workshop.id,
                kind="card.hidden" if status == CardStatus.hidden else "card.restored",
                actor="facilitator",
                card_id=card.id,
                focus_area_id=fa.id,
            )
    if changes:
        if not is_author:
            raise NotAllowed("You can only edit your own cards.")
        if card.status == CardStatus.withdrawn:
            raise Conflict("This card was withdrawn.")
        _check_writable(workshop, fa)
        if "kind" in changes and changes["kind"] is not None:
            _check_kind(fa, data.kind.value if data.kind else "")
            card.kind = data.kind.value if data.kind else card.kind
        if data.title is not None:
            title = data.title.strip()
            if not title:
                raise Invalid("A card needs a title.", field="title")
            card.title = title
        if data.body is not None:
            card.body = data.body.strip()
        if data.context is not None:
            card.context = _clean_context(data.context)
        events.record(
            session,
            workshop_id=workshop.id,
            kind="card.updated",
            actor="participant",
            card_id=card.id,
            focus_area_id=fa.id,
        )
    card.version += 1
    card.updated_at = utcnow()
    session.add(card)
    return card


def withdraw_card(
    session: Session, *, workshop: Workshop, participant: Participant, card_id: int
) -> Card:
    card = get_card(session, workshop=workshop, card_id=card_id)
    if card.author_id is None or card.author_id != participant.id:
        raise NotAllowed("You can only withdraw your own cards.")
    fa = session.get(FocusArea, card.focus_area_id)
    assert fa is not None and workshop.id is not None
    _check_writable(workshop, fa)
    if card.status == CardStatus.withdrawn:
        return card
    card.status = CardStatus.withdrawn
    card.cluster_id = None
    card.version += 1
    session.add(card)
    events.record(
        session,
        workshop_id=workshop.id,
        kind="card.withdrawn",
        actor="participant",
        card_id=card.id,
        focus_area_id=fa.id,
    )
    return card


def visible_cards(
    session: Session, *, workshop: Workshop, viewer: Viewer, focus_area_id: int | None = None
) -> list[Card]:
    """The cards ``viewer`` may read, in writing order."""
    assert workshop.id is not None
    areas = {
        fa.id: fa
        for fa in session.exec(select(FocusArea).where(FocusArea.workshop_id == workshop.id))
    }
    q = select(Card).where(Card.workshop_id == workshop.id).order_by(col(Card.id))
    if focus_area_id is not None:
        q = q.where(Card.focus_area_id == focus_area_id)
    out = []
    for card in session.exec(q):
        fa = areas[card.focus_area_id]
        if may_see(card, fa, workshop, viewer):
            out.append(card)
    return out


def may_see(card: Card, fa: FocusArea, workshop: Workshop, viewer: Viewer) -> bool:
    mine = viewer.participant_id is not None and card.author_id == viewer.participant_id
    if card.status == CardStatus.withdrawn:
        return False
    if mine:
        return True
    if card.status == CardStatus.hidden:
        return viewer.is_staff
    if fa.phase == Phase.draft and not viewer.is_staff:
        return False
    if text_hidden(workshop, fa):
        return viewer.sees_private or viewer.role == "organizer"
    return True


def results_visible(workshop: Workshop, fa: FocusArea, viewer: Viewer) -> bool:
    """Whether ``viewer`` may read a focus area's results (they carry card
    text): never while its text is private, unless staff allowed to see it."""
    if text_hidden(workshop, fa):
        return viewer.is_staff and viewer.sees_private
    return viewer.is_staff or fa.phase != Phase.draft


def count_cards(session: Session, *, workshop_id: int) -> dict[int, int]:
    """Visible cards per focus area (a count reveals no text)."""
    rows = session.exec(
        select(Card.focus_area_id, func.count())
        .where(Card.workshop_id == workshop_id, Card.status == CardStatus.visible)
        .group_by(col(Card.focus_area_id))
    ).all()
    return {fa_id: n for fa_id, n in rows}


def writers_per_area(session: Session, *, workshop_id: int) -> dict[int, int]:
    """How many distinct people wrote in each focus area (for the console)."""
    rows = session.exec(
        select(Card.focus_area_id, func.count(func.distinct(Card.author_id)))
        .where(Card.workshop_id == workshop_id, col(Card.status).in_(["visible", "hidden"]))
        .group_by(col(Card.focus_area_id))
    ).all()
    return {fa_id: n for fa_id, n in rows}


def my_cards(session: Session, *, participant: Participant) -> list[Card]:
    return list(
        session.exec(
            select(Card)
            .where(Card.author_id == participant.id, Card.status != CardStatus.withdrawn)
            .order_by(col(Card.id).desc())
        )
    )
