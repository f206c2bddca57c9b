"""The facilitator console and the projector view, and the staff actions
they send (phase, timer, spotlight, reveal, moderation, clustering). Staff
actions answer 204: every screen, the acting console included, is updated by
the websocket push that follows the commit."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.domain import cards, clusters, participants, phases, workshops
from app.domain.errors import Invalid, NotAllowed
from app.models import CardUpdate, ParticipantCreate
from app.render import board_context, spotlight_area, staff_viewer
from app.web.common import html, links, set_cookie
from app.web.deps import (
    FormDep,
    MaybeParticipantDep,
    SessionDep,
    SettingsDep,
    StaffDep,
    WorkshopDep,
    commit,
    failed_access,
    participant_cookie,
    projector_cookie,
    projector_ok,
    viewer_of,
)

# HTML pages are not part of the JSON API's OpenAPI description.
router = APIRouter(include_in_schema=False)


def done() -> Response:
    return Response(status_code=204)


@router.get("/w/{code}/facilitate")
def facilitate(
    request: Request,
    workshop: WorkshopDep,
    session: SessionDep,
    settings: SettingsDep,
    participant: MaybeParticipantDep,
    key: str = "",
) -> Response:
    """The facilitator link: becomes a facilitator in this browser."""
    if participant is not None and participant.role == "facilitator":
        return RedirectResponse(f"/w/{workshop.code}/console", status_code=303)
    try:
        p, token = participants.join(
            session,
            workshop=workshop,
            data=ParticipantCreate(display_name="Facilitator", facilitator_key=key),
            secret=settings.resolved_secret(),
        )
    except NotAllowed:
        failed_access(request, workshop.code)
        raise
    commit(request, session)
    response = RedirectResponse(f"/w/{workshop.code}/console", status_code=303)
    set_cookie(request, response, participant_cookie(workshop), token, 2 * 86400)
    return response


@router.get("/w/{code}/console", response_class=HTMLResponse)
def console(
    request: Request,
    workshop: WorkshopDep,
    session: SessionDep,
    settings: SettingsDep,
    participant: MaybeParticipantDep,
) -> Response:
    if participant is None or participant.role != "facilitator":
        raise NotAllowed("Open the facilitator link from the organizer's page.")
    ctx = board_context(session, workshop, staff_viewer(settings.facilitator_sees_private))
    return html(request, "pages/console.html", audience="facilitator", **ctx)


@router.get("/w/{code}/projector", response_class=HTMLResponse)
def projector(
    request: Request, workshop: WorkshopDep, session: SessionDep, settings: SettingsDep
) -> Response:
    if not projector_ok(request, workshop, settings):
        failed_access(request, workshop.code)
        raise NotAllowed("This projector link is not valid (any more).")
    ctx = board_context(session, workshop, cards.PROJECTOR)
    response = html(
        request,
        "pages/projector.html",
        area=spotlight_area(ctx),
        join_url=links(settings, workshop)["join_url"],
        **ctx,
    )
    key = request.query_params.get("key")
    if key:
        set_cookie(request, response, projector_cookie(workshop), key, 2 * 86400)
    return response


def _int(value: object, field: str) -> int | None:
    text = str(value or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise Invalid(f"{field} must be a number.", field=field) from None


@router.put("/w/{code}/fa/{fa_id}/phase")
def set_phase(
    request: Request,
    fa_id: int,
    form: FormDep,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> Response:
    fa = workshops.get_focus_area(session, workshop, fa_id)
    phases.set_phase(
        session, workshop=workshop, focus_area=fa, phase=str(form.get("phase", "")), actor=actor
    )
    commit(request, session)
    return done()


@router.post("/w/{code}/fa/{fa_id}/timer")
def set_timer(
    request: Request,
    fa_id: int,
    form: FormDep,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> Response:
    fa = workshops.get_focus_area(session, workshop, fa_id)
    try:
        minutes = float(str(form.get("minutes", "0")) or 0)
    except ValueError:
        raise Invalid("Minutes must be a number.", field="minutes") from None
    phases.set_timer(session, workshop=workshop, focus_area=fa, minutes=minutes, actor=actor)
    commit(request, session)
    return done()


@router.post("/w/{code}/fa/{fa_id}/spotlight")
def spotlight(
    request: Request, fa_id: int, workshop: WorkshopDep, session: SessionDep, actor: StaffDep
) -> Response:
    fa = workshops.get_focus_area(session, workshop, fa_id)
    phases.set_spotlight(session, workshop=workshop, focus_area=fa, actor=actor)
    commit(request, session)
    return done()


@router.post("/w/{code}/fa/{fa_id}/reveal")
def reveal(
    request: Request, fa_id: int, workshop: WorkshopDep, session: SessionDep, actor: StaffDep
) -> Response:
    fa = workshops.get_focus_area(session, workshop, fa_id)
    phases.reveal(session, workshop=workshop, focus_area=fa, actor=actor)
    commit(request, session)
    return done()


@router.post("/w/{code}/lock")
def lock(
    request: Request, form: FormDep, workshop: WorkshopDep, session: SessionDep, actor: StaffDep
) -> Response:
    workshops.lock_joins(session, workshop=workshop, locked=form.get("locked") == "1", actor=actor)
    commit(request, session)
    return _refresh(request)


@router.post("/w/{code}/private-writing")
def private_writing(
    request: Request, form: FormDep, workshop: WorkshopDep, session: SessionDep, actor: StaffDep
) -> Response:
    workshops.update_workshop(
        session,
        workshop=workshop,
        changes={"private_writing": form.get("on") == "1"},
        actor=actor,
    )
    commit(request, session)
    return _refresh(request)


def _refresh(request: Request) -> Response:
    # The toggle buttons themselves live outside the pushed fragments.
    return Response(status_code=204, headers={"HX-Refresh": "true"})


@router.post("/w/{code}/cards/{card_id}/moderate")
def moderate(
    request: Request,
    card_id: int,
    form: FormDep,
    workshop: WorkshopDep,
    session: SessionDep,
    participant: MaybeParticipantDep,
) -> Response:
    if participant is None or participant.role != "facilitator":
        raise NotAllowed("Only the facilitator can hide or restore cards.")
    cards.update_card(
        session,
        workshop=workshop,
        actor=viewer_of(participant, request.app.state.settings),
        card_id=card_id,
        data=CardUpdate.model_validate({"status": str(form.get("status", ""))}),
    )
    commit(request, session)
    return done()


@router.post("/w/{code}/fa/{fa_id}/clusters")
def new_cluster(
    request: Request,
    fa_id: int,
    form: FormDep,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> Response:
    fa = workshops.get_focus_area(session, workshop, fa_id)
    card_ids = [int(str(x)) for x in form.getlist("card_ids") if str(x).isdigit()]
    clusters.create_cluster(
        session,
        workshop=workshop,
        focus_area=fa,
        title=str(form.get("title", "")),
        actor=actor,
        card_ids=card_ids,
    )
    commit(request, session)
    return done()


@router.post("/w/{code}/clusters/{cluster_id}")
def edit_cluster(
    request: Request,
    cluster_id: int,
    form: FormDep,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> Response:
    clusters.update_cluster(
        session,
        workshop=workshop,
        cluster_id=cluster_id,
        actor=actor,
        title=str(form["title"]) if "title" in form else None,
        synthesis=str(form["synthesis"]) if "synthesis" in form else None,
        is_recommendation=form.get("is_recommendation") == "1" if "title" in form else None,
    )
    commit(request, session)
    return done()


@router.post("/w/{code}/clusters/{cluster_id}/position")
def move_cluster(
    request: Request,
    cluster_id: int,
    form: FormDep,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> Response:
    cl = clusters.get_cluster(session, workshop=workshop, cluster_id=cluster_id)
    offset = _int(form.get("offset"), "offset") or 0
    position = _int(form.get("position"), "position")
    clusters.update_cluster(
        session,
        workshop=workshop,
        cluster_id=cluster_id,
        actor=actor,
        position=position if position is not None else max(0, cl.position + offset),
    )
    commit(request, session)
    return done()


@router.post("/w/{code}/clusters/{cluster_id}/delete")
def delete_cluster(
    request: Request, cluster_id: int, workshop: WorkshopDep, session: SessionDep, actor: StaffDep
) -> Response:
    clusters.delete_cluster(session, workshop=workshop, cluster_id=cluster_id, actor=actor)
    commit(request, session)
    return done()


@router.post("/w/{code}/clusters/{cluster_id}/merge")
def merge_cluster(
    request: Request,
    cluster_id: int,
    form: FormDep,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> Response:
    into = _int(form.get("into"), "into")
    if into is None:
        raise Invalid("Choose the cluster to merge into.", field="into")
    clusters.merge_clusters(
        session, workshop=workshop, cluster_id=cluster_id, into=into, actor=actor
    )
    commit(request, session)
    return done()


@router.post("/w/{code}/cards/{card_id}/move")
def move_card(
    request: Request,
    card_id: int,
    form: FormDep,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> Response:
    target = str(form.get("cluster_id", "")).strip()
    if target == "new":
        card = cards.get_card(session, workshop=workshop, card_id=card_id)
        fa = workshops.get_focus_area(session, workshop, card.focus_area_id)
        clusters.create_cluster(
            session,
            workshop=workshop,
            focus_area=fa,
            title=card.title,
            actor=actor,
            card_ids=[card_id],
        )
    else:
        clusters.move_card(
            session,
            workshop=workshop,
            card_id=card_id,
            cluster_id=_int(target, "cluster_id"),
            actor=actor,
        )
    commit(request, session)
    return done()


@router.post("/w/{code}/cards/{card_id}/merge")
def merge_card(
    request: Request,
    card_id: int,
    form: FormDep,
    workshop: WorkshopDep,
    session: SessionDep,
    actor: StaffDep,
) -> Response:
    into = _int(form.get("into"), "into")
    if into is None:
        raise Invalid("Choose the card to merge into.", field="into")
    clusters.merge_cards(session, workshop=workshop, card_id=card_id, into=into, actor=actor)
    commit(request, session)
    return done()
