"""The report page, exports, results and suggestions: read-only views for
the organizer and the facilitator."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.domain import cards, workshops
from app.domain.errors import Invalid
from app.exports import FORMATS
from app.web.apidoc import ERRORS
from app.web.common import html
from app.web.deps import (
    MaybeParticipantDep,
    SessionDep,
    StaffDep,
    WorkshopDep,
    commit,
    viewer_of,
)

router = APIRouter()


def _export(request: Request, session: Any, workshop: Any, fmt: str, actor: str) -> Response:
    from app.domain import events

    if fmt not in FORMATS:
        raise Invalid(f"Unknown format {fmt!r}. Formats: {', '.join(FORMATS)}.")
    settings = request.app.state.settings
    request.app.state.limiter.hit(
        f"export:{actor}:{workshop.id}", limit=settings.rate_exports_per_minute
    )
    file = request.app.state.exports.export(session, workshop.id, fmt)
    events.record(session, workshop_id=workshop.id, kind="export.created", actor=actor, format=fmt)
    commit(request, session)
    return Response(
        file.content,
        media_type=file.media_type,
        headers={"Content-Disposition": f'attachment; filename="{file.filename}"'},
    )


@router.get("/w/{code}/export/{fmt}", include_in_schema=False)
def export_page(
    request: Request, fmt: str, workshop: WorkshopDep, session: SessionDep, actor: StaffDep
) -> Response:
    return _export(request, session, workshop, fmt, actor)


EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {
        "description": "The outcome document, as an attachment",
        "content": {f.media_type: {} for f in FORMATS.values()},
    },
}


@router.get(
    "/api/v1/workshops/{code}/export",
    tags=["api"],
    response_class=Response,
    responses=EXPORT_RESPONSES,
)
def export_api(
    request: Request,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
    format: str = Query("md", json_schema_extra={"enum": list(FORMATS)}),
) -> Response:
    return _export(request, session, workshop, format, actor)


@router.get("/w/{code}/report", response_class=HTMLResponse, include_in_schema=False)
def report(
    request: Request, workshop: WorkshopDep, session: SessionDep, actor: StaffDep
) -> Response:
    from app.exports.outcome import build_outcome

    assert workshop.id is not None
    outcome = build_outcome(session, workshop.id)
    if workshop.closed:  # the downloads are the next step: have them ready
        request.app.state.exports.prepare(workshop.id)
    return html(request, "pages/report.html", workshop=workshop, outcome=outcome, actor=actor)


@router.get("/api/v1/workshops/{code}/results", tags=["api"], responses=ERRORS)
def results_api(
    workshop: WorkshopDep, session: SessionDep, participant: MaybeParticipantDep, request: Request
) -> Any:
    """Ranked results; per-card totals only where the caller may see them
    (staff always; participants once revealed or when voting is not blind)."""
    from app.domain import phases, results
    from app.web.deps import current_organizer

    org = current_organizer(request, session)
    owner = org is not None and workshop.organizer_id in (None, org.id)
    staff = (participant is not None and participant.role == "facilitator") or owner
    if participant is None and not staff:
        raise cards.NotAllowed("Join the workshop first, or log in as its organizer.")
    assert workshop.id is not None
    if owner:
        viewer = cards.Viewer(role="organizer", sees_private=True)
    else:
        assert participant is not None
        viewer = viewer_of(participant, request.app.state.settings)
    areas = [
        results.focus_area_results(
            session, fa.id or 0, include_totals=staff or phases.totals_visible(workshop, fa)
        ).to_json()
        for fa in workshops.focus_areas(session, workshop.id)
        if cards.results_visible(workshop, fa, viewer)
    ]
    return {"workshop_id": workshop.id, "focus_areas": areas}
