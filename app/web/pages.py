"""Participant pages: home, join, the board, and the participant's own
actions (write, edit, withdraw, vote, rate). Handlers parse, call one domain
function, commit, and render the participant's personal fragment."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.domain import access, cards, participants, votes, workshops
from app.domain.errors import DomainError, Invalid
from app.models import (
    CardContext,
    CardCreate,
    CardUpdate,
    FocusArea,
    Participant,
    ParticipantCreate,
    Workshop,
)
from app.render import board_context
from app.web.common import html, set_cookie
from app.web.deps import (
    FormDep,
    MaybeParticipantDep,
    ParticipantDep,
    SessionDep,
    SettingsDep,
    WorkshopDep,
    commit,
    failed_access,
    participant_cookie,
    viewer_of,
)

# HTML pages are not part of the JSON API's OpenAPI description.
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    return html(request, "pages/home.html")


@router.get("/join", response_class=HTMLResponse)
def join_by_code(request: Request, session: SessionDep, code: str = "") -> Response:
    try:
        if not access.normalize_code(code):
            raise Invalid("Please type the workshop code.")
        ws = workshops.get_by_code(session, code)
    except DomainError as exc:
        failed_access(request)
        return html(request, "pages/home.html", status=exc.status, code=code, error=exc.message)
    return RedirectResponse(f"/join/{ws.code}", status_code=303)


@router.get("/join/{code}", response_class=HTMLResponse)
def join_form(
    request: Request, workshop: WorkshopDep, participant: MaybeParticipantDep
) -> Response:
    if participant is not None:
        return RedirectResponse(f"/w/{workshop.code}", status_code=303)
    return html(request, "pages/join.html", workshop=workshop, form={})


@router.post("/join/{code}", response_class=HTMLResponse)
def join_submit(request: Request, form: FormDep, session: SessionDep) -> Response:
    settings = request.app.state.settings
    ip = request.client.host if request.client else "?"
    request.app.state.limiter.hit(f"join:{ip}", limit=settings.rate_joins_per_ip_per_minute)
    workshop = workshops.get_by_code(session, request.path_params["code"])
    try:
        data = ParticipantCreate(
            display_name=str(form.get("display_name", "")),
            affiliation=str(form.get("affiliation", "")),
        )
        participant, token = participants.join(
            session, workshop=workshop, data=data, secret=settings.resolved_secret()
        )
    except (ValidationError, DomainError) as exc:
        status = exc.status if isinstance(exc, DomainError) else 422
        return html(
            request,
            "pages/join.html",
            status=status,
            workshop=workshop,
            form=form,
            errors=_messages(exc),
        )
    commit(request, session)
    response = RedirectResponse(f"/w/{workshop.code}", status_code=303)
    set_cookie(
        request,
        response,
        participant_cookie(workshop),
        token,
        settings.participant_cookie_days * 86400,
    )
    return response


def _messages(exc: Exception) -> list[str]:
    if isinstance(exc, ValidationError):
        return [_field_message(e) for e in exc.errors()]
    if isinstance(exc, DomainError):
        return [exc.message]
    return [str(exc)]


def _field_message(err: Any) -> str:
    loc = ".".join(str(x) for x in err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "string_pattern_mismatch":
        msg = "please write more than spaces"
    names = {"display_name": "Name", "title": "Title", "body": "Text"}
    return f"{names.get(loc, loc.replace('_', ' ').capitalize())}: {msg}" if loc else msg


@router.get("/w/{code}", response_class=HTMLResponse)
def board(
    request: Request,
    workshop: WorkshopDep,
    participant: MaybeParticipantDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    if participant is None:
        return RedirectResponse(f"/join/{workshop.code}", status_code=303)
    if participant.role == "facilitator":
        return RedirectResponse(f"/w/{workshop.code}/console", status_code=303)
    ctx = board_context(session, workshop, viewer_of(participant, settings))
    mine = cards.my_cards(session, participant=participant)
    ctx["mine_by_area"] = {
        a.fa.id: [c for c in mine if c.focus_area_id == a.fa.id] for a in ctx["areas"]
    }
    ctx["votes_by_area"] = {}
    ctx["dots_left_by_area"] = {}
    for a in ctx["areas"]:
        my_votes, left = _my_votes(session, workshop, participant, a.fa)
        ctx["votes_by_area"][a.fa.id] = my_votes
        ctx["dots_left_by_area"][a.fa.id] = left
    ctx["audience"] = "board"
    return html(request, "pages/board.html", participant=participant, **ctx)


def _my_votes(
    session: Any, workshop: Workshop, participant: Participant, fa: FocusArea
) -> tuple[list[tuple[str, int]], int]:
    assert participant.id is not None and fa.id is not None
    mine = votes.my_votes(session, participant_id=participant.id, focus_area_id=fa.id)
    titles = {}
    for card_id in mine:
        card = session.get(cards.Card, card_id)
        titles[card_id] = card.title if card else "?"
    spent = sum(mine.values())
    return [(titles[c], n) for c, n in mine.items()], workshop.vote_budget - spent


def mine_fragment(
    request: Request,
    session: Any,
    workshop: Workshop,
    participant: Participant,
    fa: FocusArea,
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
    mine = [c for c in cards.my_cards(session, participant=participant) if c.focus_area_id == fa.id]
    my_votes, left = _my_votes(session, workshop, participant, fa)
    return html(
        request,
        "partials/_mine.html",
        status=status,
        workshop=workshop,
        fa=fa,
        mine=mine,
        my_votes=my_votes,
        dots_left=left,
        writable=cards.can_write(fa),
        **extra,
    )


def _form_list(form: Any, name: str) -> list[str]:
    return [str(v) for v in form.getlist(name)]


def _context_from_form(form: Any) -> dict[str, Any]:
    return {
        "dimensions": _form_list(form, "dimensions"),
        "where": str(form.get("where", "")),
        "partners": _form_list(form, "partners"),
        "crime_areas": _form_list(form, "crime_areas"),
        "evidence": str(form.get("evidence", "")),
        "human_rights": str(form.get("human_rights", "")),
    }


@router.post("/w/{code}/cards", response_class=HTMLResponse)
def create_card(
    request: Request,
    form: FormDep,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
) -> Response:
    settings = request.app.state.settings
    ctx = _context_from_form(form)
    request.app.state.limiter.hit(
        f"cards:{participant.id}",
        limit=settings.rate_cards_per_minute,
        message="You are writing cards very fast; wait a moment.",
    )
    try:
        fa_id = int(str(form.get("focus_area_id", "0")) or 0)
    except ValueError:
        fa_id = 0
    fa = workshops.get_focus_area(session, workshop, fa_id)
    data = CardCreate(
        focus_area_id=fa_id,
        kind=str(form.get("kind", "")),  # type: ignore[arg-type]
        title=str(form.get("title", "")),
        body=str(form.get("body", "")),
        context=CardContext.model_validate(ctx),
        client_id=str(form.get("client_id", "")) or None,
    )
    card, created = cards.create_card(
        session, workshop=workshop, participant=participant, data=data
    )
    commit(request, session)
    notice = "Card added." if created else "This card was already saved."
    return mine_fragment(request, session, workshop, participant, fa, notice=notice)


@router.get("/w/{code}/mine/{fa_id}", response_class=HTMLResponse)
def mine(
    request: Request,
    fa_id: int,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
) -> Response:
    fa = workshops.get_focus_area(session, workshop, fa_id)
    return mine_fragment(request, session, workshop, participant, fa)


@router.get("/w/{code}/cards/{card_id}/edit", response_class=HTMLResponse)
def edit_card_form(
    request: Request,
    card_id: int,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
) -> Response:
    actor = viewer_of(participant, request.app.state.settings)
    card, fa = cards.seen_card(session, workshop=workshop, viewer=actor, card_id=card_id)
    view = cards.gate(card, fa, workshop, actor)
    if view is None or not view.mine:
        raise cards.NotAllowed("You can only edit your own cards.")
    return html(request, "partials/_card_edit.html", workshop=workshop, card=view, fa=fa)


@router.post("/w/{code}/cards/{card_id}", response_class=HTMLResponse)
def edit_card(
    request: Request,
    card_id: int,
    form: FormDep,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
) -> Response:
    data = CardUpdate.model_validate(
        {k: str(form[k]) for k in ("kind", "title", "body") if k in form}
    )
    actor = viewer_of(participant, request.app.state.settings)
    card = cards.update_card(session, workshop=workshop, actor=actor, card_id=card_id, data=data)
    commit(request, session)
    fa = session.get(FocusArea, card.focus_area_id)
    assert fa is not None
    return mine_fragment(request, session, workshop, participant, fa, notice="Card saved.")


@router.post("/w/{code}/cards/{card_id}/withdraw", response_class=HTMLResponse)
def withdraw_card(
    request: Request,
    card_id: int,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
) -> Response:
    actor = viewer_of(participant, request.app.state.settings)
    card = cards.withdraw_card(session, workshop=workshop, actor=actor, card_id=card_id)
    commit(request, session)
    fa = session.get(FocusArea, card.focus_area_id)
    assert fa is not None
    return mine_fragment(request, session, workshop, participant, fa, notice="Card withdrawn.")


def _vote(
    request: Request,
    card_id: int,
    workshop: Workshop,
    participant: Participant,
    session: Any,
    delta: int,
) -> Response:
    settings = request.app.state.settings
    request.app.state.limiter.hit(f"votes:{participant.id}", limit=settings.rate_votes_per_minute)
    actor = viewer_of(participant, settings)
    _, fa = cards.seen_card(session, workshop=workshop, viewer=actor, card_id=card_id)
    try:
        votes.change_vote(
            session, workshop=workshop, participant=participant, card_id=card_id, delta=delta
        )
    except DomainError as exc:
        session.rollback()
        return mine_fragment(request, session, workshop, participant, fa, vote_error=exc.message)
    commit(request, session)
    return mine_fragment(request, session, workshop, participant, fa)


@router.post("/w/{code}/cards/{card_id}/votes", response_class=HTMLResponse)
def add_dot(
    request: Request,
    card_id: int,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
) -> Response:
    return _vote(request, card_id, workshop, participant, session, +1)


@router.post("/w/{code}/cards/{card_id}/votes/remove", response_class=HTMLResponse)
def remove_dot(
    request: Request,
    card_id: int,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
) -> Response:
    return _vote(request, card_id, workshop, participant, session, -1)


@router.put("/w/{code}/cards/{card_id}/rating", response_class=HTMLResponse)
def rate_card(
    request: Request,
    card_id: int,
    form: FormDep,
    workshop: WorkshopDep,
    participant: ParticipantDep,
    session: SessionDep,
) -> Response:
    try:
        impact, feas = int(str(form.get("impact"))), int(str(form.get("feasibility")))
    except ValueError:
        raise Invalid("Ratings are numbers from 1 to 5.") from None
    rating = votes.rate(
        session,
        workshop=workshop,
        participant=participant,
        card_id=card_id,
        impact=impact,
        feasibility=feas,
    )
    commit(request, session)
    fa = workshops.get_focus_area(session, workshop, rating.focus_area_id)
    return mine_fragment(request, session, workshop, participant, fa, notice="Rating saved.")
