"""Offline suggestions: look-alike cards while a participant types, likely
duplicates and proposed clusters for the facilitator. Nothing changes until
the facilitator accepts a proposal, which becomes an ordinary cluster.

Both cost real work (a sentence embedding per new text; clustering every loose
card of a focus area), so both are limited per person and per workshop. Over
the limit the API answers 429; the hint in the card form, which asks as the
participant types, goes quiet instead (an empty fragment: the form is not the
place for an error about a hint)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from app.domain import cards, clusters, workshops
from app.domain.cards import CardView, Viewer
from app.domain.errors import Invalid, NotAllowed, RateLimited
from app.models import Card, FocusArea, Organizer, Participant, Workshop
from app.render import staff_viewer
from app.web.apidoc import ERRORS
from app.web.common import html
from app.web.deps import (
    FormDep,
    MaybeOrganizerDep,
    MaybeParticipantDep,
    SessionDep,
    SettingsDep,
    StaffDep,
    WorkshopDep,
    commit,
    viewer_of,
)

router = APIRouter()
MAX_QUERY = 500
MIN_QUERY = 4  # shorter texts are answered with nothing, at no cost


def _query(text: str) -> str:
    return text.strip()[:MAX_QUERY]


def _limit_similar(request: Request, workshop: Workshop, participant: Participant) -> None:
    """Spend one look-up of the participant's and of the workshop's budget."""
    settings, limiter = request.app.state.settings, request.app.state.limiter
    limiter.hit(
        f"similar:{participant.id}",
        limit=settings.rate_similar_per_minute,
        message="Too many look-ups of similar cards; try again in {retry} s.",
    )
    limiter.hit(
        f"similar-ws:{workshop.id}",
        limit=settings.rate_similar_per_workshop_per_minute,
        message="This workshop looks up similar cards too often; try again in {retry} s.",
    )


def _limit_suggestions(
    request: Request,
    workshop: Workshop,
    actor: str,
    participant: Participant | None,
    organizer: Organizer | None,
) -> None:
    """Spend one request of the staff member's and of the workshop's budget."""
    settings, limiter = request.app.state.settings, request.app.state.limiter
    # The person staff_actor recognised: the facilitator first, as it does.
    if actor == "facilitator" and participant is not None:
        who = f"p{participant.id}"
    else:
        assert organizer is not None
        who = f"o{organizer.id}"
    limiter.hit(
        f"suggest:{workshop.id}:{who}",
        limit=settings.rate_suggestions_per_minute,
        message="Suggestions were asked for too often; try again in {retry} s.",
    )
    limiter.hit(
        f"suggest-ws:{workshop.id}",
        limit=settings.rate_suggestions_per_workshop_per_minute,
        message="Suggestions were asked for too often in this workshop; try again in {retry} s.",
    )


def _items(pool: list[CardView]) -> list[Any]:
    from app.suggest import engine

    return [engine.Item(id=c.id or 0, text=f"{c.title}. {c.body}") for c in pool]


def _pool(session: Session, workshop: Workshop, viewer: Viewer, fa: FocusArea) -> list[CardView]:
    return [
        c
        for c in cards.visible_cards(session, workshop=workshop, viewer=viewer, focus_area_id=fa.id)
        if c.status == "visible"
    ]


def similar_cards(
    session: Session, workshop: Workshop, viewer: Viewer, fa_id: int, text: str
) -> list[tuple[CardView, float]]:
    """Up to three visible cards that look like ``text`` (not the viewer's own)."""
    from app.suggest import engine

    text = _query(text)
    if len(text) < MIN_QUERY:
        return []
    fa = workshops.get_focus_area(session, workshop, fa_id)
    pool = [c for c in _pool(session, workshop, viewer, fa) if not c.mine]
    by_id = {c.id: c for c in pool}
    return [(by_id[i], s) for i, s in engine.similar(text, _items(pool), limit=3)]


@router.get("/w/{code}/similar", response_class=HTMLResponse, include_in_schema=False)
def similar(
    request: Request,
    workshop: WorkshopDep,
    session: SessionDep,
    settings: SettingsDep,
    participant: MaybeParticipantDep,
    focus_area_id: int = 0,
    title: str = "",
) -> Response:
    if participant is None:
        raise NotAllowed("Join the workshop first.")
    if len(_query(title)) >= MIN_QUERY:
        try:
            _limit_similar(request, workshop, participant)
        except RateLimited:
            return html(request, "partials/_similar.html", matches=[])
    viewer = viewer_of(participant, settings)
    matches = similar_cards(session, workshop, viewer, focus_area_id, title)
    return html(request, "partials/_similar.html", matches=matches)


@router.get("/api/v1/workshops/{code}/similar", tags=["api"], responses=ERRORS)
def similar_api(
    request: Request,
    workshop: WorkshopDep,
    session: SessionDep,
    settings: SettingsDep,
    participant: MaybeParticipantDep,
    focus_area_id: int = 0,
    text: str = "",
) -> list[dict[str, Any]]:
    if participant is None:
        raise NotAllowed("Join the workshop first.")
    if len(_query(text)) >= MIN_QUERY:
        _limit_similar(request, workshop, participant)
    viewer = viewer_of(participant, settings)
    matches = similar_cards(session, workshop, viewer, focus_area_id, text)
    return [{"card_id": c.id, "title": c.title, "score": round(s, 3)} for c, s in matches]


def _proposals(
    session: Session, workshop: Workshop, fa: FocusArea, settings: Any
) -> tuple[list[Any], list[tuple[CardView, CardView, float]]]:
    from app.suggest import engine

    pool = [c for c in _pool(session, workshop, staff_viewer(True), fa) if c.cluster_id is None]
    by_id = {c.id: c for c in pool}
    items = _items(pool)
    groups = engine.suggest_clusters(items)
    pairs = [(by_id[a], by_id[b], s) for a, b, s in engine.duplicate_pairs(items, limit=8)]
    return [(g, [by_id[i] for i in g.card_ids]) for g in groups], pairs


@router.get(
    "/w/{code}/fa/{fa_id}/suggestions", response_class=HTMLResponse, include_in_schema=False
)
def suggestions(
    request: Request,
    fa_id: int,
    workshop: WorkshopDep,
    session: SessionDep,
    settings: SettingsDep,
    actor: StaffDep,
    participant: MaybeParticipantDep,
    organizer: MaybeOrganizerDep,
) -> Response:
    fa = workshops.get_focus_area(session, workshop, fa_id)
    _limit_suggestions(request, workshop, actor, participant, organizer)
    groups, pairs = _proposals(session, workshop, fa, settings)
    return html(
        request, "partials/_suggestions.html", workshop=workshop, fa=fa, groups=groups, pairs=pairs
    )


@router.get(
    "/api/v1/workshops/{code}/focus-areas/{fa_id}/suggestions", tags=["api"], responses=ERRORS
)
def suggestions_api(
    request: Request,
    fa_id: int,
    workshop: WorkshopDep,
    session: SessionDep,
    settings: SettingsDep,
    actor: StaffDep,
    participant: MaybeParticipantDep,
    organizer: MaybeOrganizerDep,
) -> dict[str, Any]:
    fa = workshops.get_focus_area(session, workshop, fa_id)
    _limit_suggestions(request, workshop, actor, participant, organizer)
    groups, pairs = _proposals(session, workshop, fa, settings)
    return {
        "suggestions": [{"title": g.title, "card_ids": g.card_ids} for g, _ in groups],
        "duplicates": [{"card_ids": [a.id, b.id], "score": round(s, 3)} for a, b, s in pairs],
    }


@router.post("/w/{code}/fa/{fa_id}/suggestions/accept", include_in_schema=False)
def accept(
    request: Request,
    fa_id: int,
    form: FormDep,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> Response:
    """Accept one or more proposed groups: fields ``title`` and ``cards``
    (comma-separated card ids) repeat once per group."""
    fa = workshops.get_focus_area(session, workshop, fa_id)
    titles = [str(t) for t in form.getlist("title")]
    groups = [str(c) for c in form.getlist("cards")]
    if not titles or len(titles) != len(groups):
        raise Invalid("Nothing to accept.")
    for title, ids in zip(titles, groups, strict=True):
        card_ids = [int(x) for x in ids.split(",") if x.strip().isdigit()]
        still_loose = [i for i in card_ids if (c := session.get(Card, i)) and c.cluster_id is None]
        if still_loose:
            clusters.create_cluster(
                session,
                workshop=workshop,
                focus_area=fa,
                title=title,
                actor=actor,
                card_ids=still_loose,
            )
    commit(request, session)
    return Response(status_code=204, headers={"HX-Trigger": "suggestions-done"})
