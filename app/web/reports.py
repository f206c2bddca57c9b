"""The report page, exports, results and suggestions: read-only views for
the organizer and the facilitator."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.domain import cards, workshops
from app.domain.errors import Invalid
from app.web.common import html
from app.web.deps import (
    MaybeParticipantDep,
    SessionDep,
    SettingsDep,
    StaffDep,
    WorkshopDep,
    commit,
    viewer_of,
)

router = APIRouter()


def _export(request: Request, session: Any, workshop: Any, fmt: str, actor: str) -> Response:
    from app import exports
    from app.domain import events

    if fmt not in exports.FORMATS:
        raise Invalid(f"Unknown format {fmt!r}. Formats: {', '.join(exports.FORMATS)}.")
    settings = request.app.state.settings
    request.app.state.limiter.hit(
        f"export:{actor}:{workshop.id}", limit=settings.rate_exports_per_minute
    )
    file = exports.export_workshop(session, workshop.id, fmt)
    events.record(session, workshop_id=workshop.id, kind="export.created", actor=actor, format=fmt)
    commit(request, session)
    return Response(
        file.content,
        media_type=file.media_type,
        headers={"Content-Disposition": f'attachment; filename="{file.filename}"'},
    )


@router.get("/w/{code}/export/{fmt}")
def export_page(
    request: Request, fmt: str, workshop: WorkshopDep, session: SessionDep, actor: StaffDep
) -> Response:
    return _export(request, session, workshop, fmt, actor)


@router.get("/api/v1/workshops/{code}/export", tags=["api"])
def export_api(
    request: Request,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
    format: str = "md",
) -> Response:
    return _export(request, session, workshop, format, actor)


@router.get("/w/{code}/report", response_class=HTMLResponse)
def report(
    request: Request, workshop: WorkshopDep, session: SessionDep, actor: StaffDep
) -> Response:
    from app.exports.outcome import build_outcome

    assert workshop.id is not None
    outcome = build_outcome(session, workshop.id)
    return html(request, "pages/report.html", workshop=workshop, outcome=outcome, actor=actor)


@router.get("/api/v1/workshops/{code}/results", tags=["api"])
def results_api(
    workshop: WorkshopDep, session: SessionDep, participant: MaybeParticipantDep, request: Request
) -> Any:
    from app.domain import results
    from app.web.deps import current_organizer

    staff = (participant is not None and participant.role == "facilitator") or (
        current_organizer(request, session) is not None
    )
    if participant is None and not staff:
        raise cards.NotAllowed("Join the workshop first.")
    assert workshop.id is not None
    return results.workshop_results(session, workshop.id, include_totals=staff).to_json()


@router.get("/w/{code}/similar", response_class=HTMLResponse)
def similar(
    request: Request,
    workshop: WorkshopDep,
    session: SessionDep,
    settings: SettingsDep,
    participant: MaybeParticipantDep,
    focus_area_id: int = 0,
    title: str = "",
) -> Response:
    matches = _similar(session, workshop, settings, participant, focus_area_id, title)
    return html(request, "partials/_similar.html", matches=matches)


@router.get("/api/v1/workshops/{code}/similar", tags=["api"])
def similar_api(
    workshop: WorkshopDep,
    session: SessionDep,
    settings: SettingsDep,
    participant: MaybeParticipantDep,
    focus_area_id: int = 0,
    text: str = "",
) -> list[dict[str, Any]]:
    matches = _similar(session, workshop, settings, participant, focus_area_id, text)
    return [{"card_id": c.id, "title": c.title, "score": round(s, 3)} for c, s in matches]


def _similar(
    session: Any, workshop: Any, settings: Any, participant: Any, fa_id: int, text: str
) -> list[Any]:
    if participant is None:
        raise cards.NotAllowed("Join the workshop first.")
    text = text.strip()[:500]
    if len(text) < 4:
        return []
    from app.suggest import engine

    fa = workshops.get_focus_area(session, workshop, fa_id)
    viewer = viewer_of(participant, settings)
    pool = [
        c
        for c in cards.visible_cards(session, workshop=workshop, viewer=viewer, focus_area_id=fa.id)
        if c.status == "visible" and c.author_id != participant.id
    ]
    by_id = {c.id: c for c in pool}
    items = [engine.Item(id=c.id or 0, text=f"{c.title} {c.body}") for c in pool]
    return [(by_id[i], s) for i, s in engine.similar(text, items, limit=3)]
