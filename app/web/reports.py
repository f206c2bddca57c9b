"""The report page, exports, results and suggestions: read-only views for
the organizer and the facilitator.

The PDF and DOCX are rendered through ``app.state.exports`` (see
app/exports/prepared.py: once per change of what they show); the fresh renders
of one workshop are limited per minute, downloads and the report page's
preparing ahead together. Rendering reads in a read-only transaction, so that
on SQLite no writer waits behind a render."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from app.domain import cards, workshops
from app.domain.errors import Invalid
from app.exports import FORMATS
from app.exports.prepared import Admit
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


def render_limit(app: FastAPI) -> Admit:
    """``admit`` for the app's prepared exports: a fresh PDF or DOCX render
    spends one of the workshop's renders per minute."""
    settings, limiter = app.state.settings, app.state.limiter

    def admit(workshop_id: int, fmt: str) -> None:
        limiter.hit(
            f"render:{workshop_id}",
            limit=settings.rate_renders_per_minute,
            message=f"This workshop's {fmt.upper()} was made afresh too often in the last "
            "minute; try again in {retry} s (while nothing changes, it is served at once).",
        )

    return admit


@asynccontextmanager
async def _limits(app: FastAPI) -> AsyncIterator[None]:
    app.state.exports.admit = render_limit(app)
    yield


router = APIRouter(lifespan=_limits)


def _reading(session: Session) -> None:
    """Begin the next transaction read-only (on SQLite a WAL snapshot, not the
    write lock that a render would otherwise hold for its whole length)."""
    if not session.in_transaction():
        session.connection(execution_options={"readonly": True})


def _export(request: Request, session: Any, workshop: Any, fmt: str, actor: str) -> Response:
    from app.domain import events

    if fmt not in FORMATS:
        raise Invalid(f"Unknown format {fmt!r}. Formats: {', '.join(FORMATS)}.")
    settings = request.app.state.settings
    request.app.state.limiter.hit(
        f"export:{actor}:{workshop.id}", limit=settings.rate_exports_per_minute
    )
    _reading(session)
    file = request.app.state.exports.export(session, workshop.id, fmt)
    session.commit()  # ends the read; the audit event is a short write of its own
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
    _reading(session)
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
        viewer = cards.Actor.organizer(organizer_id=org.id if org else None)
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
