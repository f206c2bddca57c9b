"""Cards: writing, editing, withdrawing, moderating, and who may see which.

Visibility is decided here and only here. With private writing on, a card's
text is not sent to anyone but its author while its focus area collects
(facilitators see it when the ``facilitator_sees_private`` setting is on, so
they can moderate). The author is never part of what leaves this module."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from app.domain import events
from app.domain.actors import PROJECTOR, Actor
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
    Workshop,
    utcnow,
)

# One typed actor for every card operation and view (see app/domain/actors.py).
Viewer = Actor
__all__ = ["PROJECTOR", "Actor", "CardView", "Viewer", "gate", "to_public"]


def viewer_for(participant: Participant, *, facilitator_sees_private: bool) -> Actor:
    return Actor.of(participant, facilitator_sees_private=facilitator_sees_private)


@dataclass(frozen=True)
class CardView:
    """What of a card one viewer may receive, and nothing else: no author,
    no timestamps, no client id. Built only by ``gate``; every API model,
    fragment, push and export that shows a card is built from one."""

    id: int
    focus_area_id: int
    kind: str
    title: str
    body: str
    context: dict[str, Any]
    status: str
    cluster_id: int | None
    merged_into_id: int | None
    version: int
    mine: bool


CARD_NOT_FOUND = "This card does not exist (any more)."


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


def gate(card: Card, fa: FocusArea, workshop: Workshop, viewer: Actor) -> CardView | None:
    """The one gate for card content: what of ``card`` ``viewer`` may
    receive, or None when they may not see it at all."""
    if not may_see(card, fa, workshop, viewer):
        return None
    return CardView(
        id=card.id or 0,
        focus_area_id=card.focus_area_id,
        kind=card.kind,
        title=card.title,
        body=card.body,
        context=dict(card.context or {}),
        status=card.status,
        cluster_id=card.cluster_id,
        merged_into_id=card.merged_into_id,
        version=card.version,
        mine=_is_mine(card, viewer),
    )


def to_public(view: CardView) -> CardPublic:
    return CardPublic(**asdict(view))


def _is_mine(card: Card, viewer: Actor) -> bool:
    return viewer.participant_id is not None and card.author_id == viewer.participant_id


def seen_card(
    session: Session, *, workshop: Workshop, viewer: Actor, card_id: int
) -> tuple[Card, FocusArea]:
    """The card and its focus area, if ``viewer`` may see it. A card they
    may not see answers exactly like one that does not exist, so no
    operation tells an unrevealed, hidden or withdrawn card from a gap."""
    card = session.get(Card, card_id)
    fa = session.get(FocusArea, card.focus_area_id) if card is not None else None
    if (
        card is None
        or fa is None
        or card.workshop_id != workshop.id
        or not may_see(card, fa, workshop, viewer)
    ):
        raise NotFound(CARD_NOT_FOUND, field="card_id")
    return card, fa


def view_of(session: Session, *, workshop: Workshop, viewer: Actor, card: Card) -> CardView:
    """The gated view of a card the caller just acted on."""
    fa = session.get(FocusArea, card.focus_area_id)
    view = gate(card, fa, workshop, viewer) if fa is not None else None
    if view is None:
        raise NotFound(CARD_NOT_FOUND, field="card_id")
    return view


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
    """A card of the workshop, ungated: for staff operations that check the
    viewer themselves. Anything shown to a caller goes through ``gate``."""
    card = session.get(Card, card_id)
    if card is None or card.workshop_id != workshop.id:
        raise NotFound(CARD_NOT_FOUND, field="card_id")
    return card


def update_card(
    session: Session,
    *,
    workshop: Workshop,
    actor: Actor,
    card_id: int,
    data: CardUpdate,
) -> Card:
    """Authorise first, whatever the change: a card the actor may not see is
    not found; one they may see but neither wrote nor moderate is refused,
    even when the change is empty. An unchanged card keeps its version."""
    card, fa = seen_card(session, workshop=workshop, viewer=actor, card_id=card_id)
    assert workshop.id is not None
    # JSON null means "not given": nothing is erased by it.
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    status = changes.pop("status", None)
    is_author = _is_mine(card, actor)
    if not (is_author or actor.is_staff):
        raise NotAllowed("You can only edit your own cards.")
    if status is not None and not actor.is_staff:
        raise NotAllowed("Only the facilitator can hide or restore cards.")
    if changes and not is_author:
        raise NotAllowed("You can only edit your own cards.")
    changed = False
    if status is not None:
        if status not in (CardStatus.hidden, CardStatus.visible):
            raise Invalid("A card's status can be set to hidden or visible.", field="status")
        if card.status not in (CardStatus.hidden, CardStatus.visible):
            raise Conflict(f"This card is {card.status}; it cannot be moderated.")
        if card.status != status:
            card.status = status
            changed = True
            events.record(
                session,
                workshop_id=workshop.id,
                kind="card.hidden" if status == CardStatus.hidden else "card.restored",
                actor=actor.role,
                card_id=card.id,
                focus_area_id=fa.id,
            )
    if changes:
        if card.status == CardStatus.withdrawn:
            raise Conflict("This card was withdrawn.")
        _check_writable(workshop, fa)
        if data.kind is not None:
            _check_kind(fa, data.kind.value)
            card.kind = data.kind.value
        if data.title is not None:
            title = data.title.strip()
            if not title:
                raise Invalid("A card needs a title.", field="title")
            card.title = title
        if data.body is not None:
            card.body = data.body.strip()
        if data.context is not None:
            card.context = _clean_context(data.context)
        changed = True
        events.record(
            session,
            workshop_id=workshop.id,
            kind="card.updated",
            actor=actor.role,
            card_id=card.id,
            focus_area_id=fa.id,
        )
    if changed:
        card.version += 1
        card.updated_at = utcnow()
        session.add(card)
    return card


def withdraw_card(session: Session, *, workshop: Workshop, actor: Actor, card_id: int) -> Card:
    card, fa = seen_card(session, workshop=workshop, viewer=actor, card_id=card_id)
    if not _is_mine(card, actor):
        raise NotAllowed("You can only withdraw your own cards.")
    assert workshop.id is not None
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
        actor=actor.role,
        card_id=card.id,
        focus_area_id=fa.id,
    )
    return card


def visible_cards(
    session: Session, *, workshop: Workshop, viewer: Actor, focus_area_id: int | None = None
) -> list[CardView]:
    """The gated views of the cards ``viewer`` may read, in content order
    (kind, title, body), never in writing order: the order on a board must not
    tell who wrote first."""
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
        view = gate(card, areas[card.focus_area_id], workshop, viewer)
        if view is not None:
            out.append(view)
    out.sort(key=content_key)
    return out


def content_key(card: CardView | Card) -> tuple[str, str, str, int]:
    """Order by what a card says; the id only breaks exact duplicates."""
    return (card.title.casefold(), card.body.casefold(), card.kind, card.id or 0)


def may_see(card: Card, fa: FocusArea, workshop: Workshop, viewer: Actor) -> bool:
    mine = _is_mine(card, viewer)
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


def results_visible(workshop: Workshop, fa: FocusArea, viewer: Actor) -> bool:
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


def my_cards(session: Session, *, participant: Participant) -> list[CardView]:
    """The participant's own cards (newest first), through the same gate."""
    rows = session.exec(
        select(Card, FocusArea)
        .join(FocusArea, col(FocusArea.id) == Card.focus_area_id)
        .where(Card.author_id == participant.id, Card.status != CardStatus.withdrawn)
        .order_by(col(Card.id).desc())
    ).all()
    workshop = session.get(Workshop, participant.workshop_id)
    if workshop is None:
        return []
    me = Actor.participant(participant_id=participant.id)
    return [v for card, fa in rows if (v := gate(card, fa, workshop, me)) is not None]
