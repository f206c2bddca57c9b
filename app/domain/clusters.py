"""Clustering: the facilitator groups cards into named clusters, moves and
merges them. Nothing is deleted: a merged card keeps its row (status
``merged``, ``merged_into_id``), a merged or deleted cluster keeps its row,
and every move and merge is an ``Event``, so provenance can be traced."""

from __future__ import annotations

from sqlmodel import Session, col, func, select

from app.domain import cards, events
from app.domain.actors import PROJECTOR, STAFF, Actor, ActorRole
from app.domain.errors import Conflict, Invalid, NotAllowed, PhaseClosed
from app.domain.results import voter_of
from app.models import (
    TITLE_MAX,
    Card,
    CardStatus,
    Cluster,
    FocusArea,
    Phase,
    Rating,
    Vote,
    Workshop,
)

EDITABLE_PHASES = {Phase.collect, Phase.cluster, Phase.vote, Phase.synthesize}


def _check(workshop: Workshop, fa: FocusArea, actor: str) -> None:
    if actor not in ("facilitator", "organizer"):
        raise NotAllowed("Only the facilitator can arrange clusters.")
    if workshop.closed or fa.phase not in EDITABLE_PHASES:
        raise PhaseClosed(f"“{fa.title}” cannot be clustered in phase {fa.phase}.")


def get_cluster(session: Session, *, workshop: Workshop, cluster_id: int) -> Cluster:
    cl = session.get(Cluster, cluster_id)
    if cl is None or cl.workshop_id != workshop.id or cl.status != "active":
        raise Conflict("This cluster does not exist any more; the board has been refreshed.")
    return cl


def _active_card(session: Session, workshop: Workshop, card_id: int, actor: str) -> Card:
    # Through the one gate, as staff: a withdrawn card is "not found", exactly
    # like an id that never existed (found by the adversary test).
    staff = Actor(ActorRole(actor), sees_private=True) if actor in STAFF else PROJECTOR
    card, _fa = cards.seen_card(session, workshop=workshop, viewer=staff, card_id=card_id)
    if card.status not in (CardStatus.visible, CardStatus.hidden):
        raise Conflict(f"This card was {card.status} meanwhile; the board has been refreshed.")
    return card


def clusters_of(session: Session, *, focus_area_id: int) -> list[Cluster]:
    return list(
        session.exec(
            select(Cluster)
            .where(Cluster.focus_area_id == focus_area_id, Cluster.status == "active")
            .order_by(col(Cluster.position), col(Cluster.id))
        )
    )


def create_cluster(
    session: Session,
    *,
    workshop: Workshop,
    focus_area: FocusArea,
    title: str,
    actor: str,
    card_ids: list[int] | None = None,
) -> Cluster:
    _check(workshop, focus_area, actor)
    title = title.strip()[:TITLE_MAX]
    assert workshop.id is not None and focus_area.id is not None
    last = session.exec(
        select(func.max(Cluster.position)).where(Cluster.focus_area_id == focus_area.id)
    ).one()
    cl = Cluster(
        workshop_id=workshop.id,
        focus_area_id=focus_area.id,
        title=title or "Untitled cluster",
        position=(last if last is not None else -1) + 1,
    )
    session.add(cl)
    session.flush()
    events.record(
        session,
        workshop_id=workshop.id,
        kind="cluster.created",
        actor=actor,
        cluster_id=cl.id,
        focus_area_id=focus_area.id,
    )
    for card_id in card_ids or []:
        move_card(session, workshop=workshop, card_id=card_id, cluster_id=cl.id, actor=actor)
    return cl


def update_cluster(
    session: Session,
    *,
    workshop: Workshop,
    cluster_id: int,
    actor: str,
    title: str | None = None,
    synthesis: str | None = None,
    position: int | None = None,
    is_recommendation: bool | None = None,
) -> Cluster:
    cl = get_cluster(session, workshop=workshop, cluster_id=cluster_id)
    fa = session.get(FocusArea, cl.focus_area_id)
    assert fa is not None and workshop.id is not None
    _check(workshop, fa, actor)
    if title is not None:
        if not title.strip():
            raise Invalid("A cluster needs a name.", field="title")
        if len(title) > TITLE_MAX:
            raise Invalid(f"A cluster name has at most {TITLE_MAX} characters.", field="title")
        cl.title = title.strip()
    if synthesis is not None:
        if len(synthesis) > 4000:
            raise Invalid("The synthesis is limited to 4,000 characters.", field="synthesis")
        cl.synthesis = synthesis.strip()
    if is_recommendation is not None:
        cl.is_recommendation = is_recommendation
    if position is not None:
        _reorder(session, cl, position)
    session.add(cl)
    events.record(
        session,
        workshop_id=workshop.id,
        kind="cluster.updated",
        actor=actor,
        cluster_id=cl.id,
        focus_area_id=fa.id,
    )
    return cl


def _reorder(session: Session, cl: Cluster, position: int) -> None:
    siblings = [c for c in clusters_of(session, focus_area_id=cl.focus_area_id) if c.id != cl.id]
    position = max(0, min(position, len(siblings)))
    siblings.insert(position, cl)
    for pos, c in enumerate(siblings):
        c.position = pos
        session.add(c)


def delete_cluster(session: Session, *, workshop: Workshop, cluster_id: int, actor: str) -> None:
    cl = get_cluster(session, workshop=workshop, cluster_id=cluster_id)
    fa = session.get(FocusArea, cl.focus_area_id)
    assert fa is not None and workshop.id is not None
    _check(workshop, fa, actor)
    for card in session.exec(select(Card).where(Card.cluster_id == cl.id)):
        card.cluster_id = None
        session.add(card)
    cl.status = "deleted"
    session.add(cl)
    events.record(
        session,
        workshop_id=workshop.id,
        kind="cluster.deleted",
        actor=actor,
        cluster_id=cl.id,
        focus_area_id=fa.id,
    )


def move_card(
    session: Session, *, workshop: Workshop, card_id: int, cluster_id: int | None, actor: str
) -> Card:
    card = _active_card(session, workshop, card_id, actor)
    fa = session.get(FocusArea, card.focus_area_id)
    assert fa is not None and workshop.id is not None
    _check(workshop, fa, actor)
    if cluster_id is not None:
        cl = get_cluster(session, workshop=workshop, cluster_id=cluster_id)
        if cl.focus_area_id != card.focus_area_id:
            raise Conflict("A card can only join a cluster of its own focus area.")
    previous = card.cluster_id
    if previous == cluster_id:
        return card
    card.cluster_id = cluster_id
    card.version += 1
    session.add(card)
    events.record(
        session,
        workshop_id=workshop.id,
        kind="card.moved",
        actor=actor,
        card_id=card.id,
        focus_area_id=fa.id,
        from_cluster_id=previous,
        to_cluster_id=cluster_id,
    )
    return card


def merge_cards(
    session: Session, *, workshop: Workshop, card_id: int, into: int, actor: str
) -> Card:
    """Merge card B (``card_id``) into card A (``into``). Each participant's
    dots on B are added to their dots on A up to the per-card cap (dots over
    the cap go back to the participant's budget); a rating on B moves to A
    unless the participant rated A already."""
    b = _active_card(session, workshop, card_id, actor)
    a = _active_card(session, workshop, into, actor)
    if card_id == into:
        raise Conflict("A card cannot be merged into itself.")
    if a.focus_area_id != b.focus_area_id:
        raise Conflict("Only cards of the same focus area can be merged.")
    fa = session.get(FocusArea, a.focus_area_id)
    assert fa is not None and workshop.id is not None
    _check(workshop, fa, actor)
    # One person's dots are found by voter key, which survives anonymization.
    a_votes = {voter_of(v): v for v in session.exec(select(Vote).where(Vote.card_id == a.id))}
    for vb in session.exec(select(Vote).where(Vote.card_id == b.id)):
        key = voter_of(vb)
        va = a_votes.get(key) if key is not None else None
        if va is None:
            vb.card_id = a.id  # type: ignore[assignment]
            vb.dots = min(vb.dots, workshop.vote_cap)
            session.add(vb)
        else:
            va.dots = min(workshop.vote_cap, va.dots + vb.dots)
            session.add(va)
            session.delete(vb)
    a_raters = {
        r.participant_id for r in session.exec(select(Rating).where(Rating.card_id == a.id))
    }
    for rb in session.exec(select(Rating).where(Rating.card_id == b.id)):
        if rb.participant_id is not None and rb.participant_id in a_raters:
            session.delete(rb)
        else:
            rb.card_id = a.id  # type: ignore[assignment]
            session.add(rb)
    b.status = CardStatus.merged
    b.merged_into_id = a.id
    b.cluster_id = None
    b.version += 1
    a.version += 1
    session.add_all([a, b])
    events.record(
        session,
        workshop_id=workshop.id,
        kind="card.merged",
        actor=actor,
        card_id=b.id,
        into_card_id=a.id,
        focus_area_id=fa.id,
    )
    return a


def merge_clusters(
    session: Session, *, workshop: Workshop, cluster_id: int, into: int, actor: str
) -> Cluster:
    src = get_cluster(session, workshop=workshop, cluster_id=cluster_id)
    dst = get_cluster(session, workshop=workshop, cluster_id=into)
    if cluster_id == into:
        raise Conflict("A cluster cannot be merged into itself.")
    if src.focus_area_id != dst.focus_area_id:
        raise Conflict("Only clusters of the same focus area can be merged.")
    fa = session.get(FocusArea, dst.focus_area_id)
    assert fa is not None and workshop.id is not None
    _check(workshop, fa, actor)
    for card in session.exec(select(Card).where(Card.cluster_id == src.id)):
        card.cluster_id = dst.id
        session.add(card)
    if src.synthesis and src.synthesis not in dst.synthesis:
        dst.synthesis = "\n\n".join(s for s in (dst.synthesis, src.synthesis) if s)[:4000]
    src.status = "merged"
    src.merged_into_id = dst.id
    session.add_all([src, dst])
    events.record(
        session,
        workshop_id=workshop.id,
        kind="cluster.merged",
        actor=actor,
        cluster_id=src.id,
        into_cluster_id=dst.id,
        focus_area_id=fa.id,
    )
    return dst


def merged_from(session: Session, *, card_ids: list[int]) -> dict[int, list[Card]]:
    """card id -> the cards merged into it (for the "merged from" note).
    Only cards still merged: one its author withdrew afterwards is shown to
    nobody (found by the adversary test)."""
    if not card_ids:
        return {}
    out: dict[int, list[Card]] = {}
    merged = select(Card).where(
        col(Card.merged_into_id).in_(card_ids), Card.status == CardStatus.merged
    )
    for c in session.exec(merged):
        assert c.merged_into_id is not None
        out.setdefault(c.merged_into_id, []).append(c)
    return out
