"""Offline suggestions: look-alike cards while a participant types, likely
duplicates and proposed clusters for the facilitator. Nothing changes until
the facilitator accepts a proposal, which becomes an ordinary cluster."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from app.domain import cards, clusters, workshops
from app.domain.cards import Viewer
from app.domain.errors import Invalid, NotAllowed
from app.models import Card, FocusArea, Workshop
from app.render import staff_viewer
from app.web.apidoc import ERRORS
from app.web.common import html
from app.web.deps import (
    FormDep,
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


def _items(pool: list[Card]) -> list[Any]:
    from app.suggest import engine

    return [engine.Item(id=c.id or 0, text=f"{c.title}. {c.body}") for c in pool]


def _pool(session: Session, workshop: Workshop, viewer: Viewer, fa: FocusArea) -> list[Card]:
    return [
        c
        for c in cards.visible_cards(session, workshop=workshop, viewer=viewer, focus_area_id=fa.id)
        if c.status == "visible"
    ]


def similar_cards(
    session: Session, workshop: Workshop, viewer: Viewer, fa_id: int, text: str
) -> list[tuple[Card, float]]:
    """Up to three visible cards that look like ``text`` (not the viewer's own)."""
    from app.suggest import engine

    text = text.strip()[:MAX_QUERY]
    if len(text) < 4:
        return []
    fa = workshops.get_focus_area(session, workshop, fa_id)
    pool = [c for c in _pool(session, workshop, viewer, fa) if c.author_id != viewer.participant_id]
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
    viewer = viewer_of(participant, settings)
    matches = similar_cards(session, workshop, viewer, focus_area_id, title)
    return html(request, "partials/_similar.html", matches=matches)


@router.get("/api/v1/workshops/{code}/similar", tags=["api"], responses=ERRORS)
def similar_api(
    workshop: WorkshopDep,
    session: SessionDep,
    settings: SettingsDep,
    participant: MaybeParticipantDep,
    focus_area_id: int = 0,
    text: str = "",
) -> list[dict[str, Any]]:
    if participant is None:
        raise NotAllowed("Join the workshop first.")
    viewer = viewer_of(participant, settings)
    matches = similar_cards(session, workshop, viewer, focus_area_id, text)
    return [{"card_id": c.id, "title": c.title, "score": round(s, 3)} for c, s in matches]


def _proposals(
    session: Session, workshop: Workshop, fa: FocusArea, settings: Any
) -> tuple[list[Any], list[tuple[Card, Card, float]]]:
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
) -> Response:
    fa = workshops.get_focus_area(session, workshop, fa_id)
    groups, pairs = _proposals(session, workshop, fa, settings)
    return html(
        request, "partials/_suggestions.html", workshop=workshop, fa=fa, groups=groups, pairs=pairs
    )


@router.get(
    "/api/v1/workshops/{code}/focus-areas/{fa_id}/suggestions", tags=["api"], responses=ERRORS
)
def suggestions_api(
    fa_id: int, workshop: WorkshopDep, session: SessionDep, settings: SettingsDep, actor: StaffDep
) -> dict[str, Any]:
    fa = workshops.get_focus_area(session, workshop, fa_id)
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
