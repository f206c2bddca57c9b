"""Organizer pages: first-run set-up, log in and out, the workshop list, and
one workshop's page (links, QR code, settings, focus areas, affiliations,
rotation, close, delete, audit log)."""

from __future__ import annotations

import hmac
import io
from typing import Any

import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select

from app.domain import organizers, workshops
from app.domain.errors import DomainError, Invalid, NotAuthenticated
from app.domain.templates import all_templates
from app.models import Event, FocusAreaIn, Organizer, WorkshopCreate
from app.web.common import html, links, set_cookie
from app.web.deps import (
    SESSION_COOKIE,
    FormDep,
    MaybeOrganizerDep,
    OwnedWorkshopDep,
    SessionDep,
    SettingsDep,
    WorkshopDep,
    commit,
)
from app.web.pages import _messages

# HTML pages are not part of the JSON API's OpenAPI description.
router = APIRouter(include_in_schema=False)

SETTINGS_FLAGS = ("private_writing", "blind_voting", "anonymize_on_close", "participant_annex")


def _login_response(request: Request, session: Any, organizer: Any) -> Response:
    token = organizers.start_session(session, organizer=organizer)
    session.commit()
    response = RedirectResponse("/organizer", status_code=303)
    settings = request.app.state.settings
    set_cookie(request, response, SESSION_COOKIE, token, settings.session_absolute_hours * 3600)
    return response


@router.get("/setup", response_class=HTMLResponse)
def setup_form(request: Request, session: SessionDep, token: str = "") -> Response:
    if organizers.any_organizer(session):
        return RedirectResponse("/login", status_code=303)
    if not _setup_ok(request, token):
        raise Invalid(
            "This set-up link is not valid. Use the link printed when the server started."
        )
    return html(request, "pages/setup.html", token=token)


def _setup_ok(request: Request, token: str) -> bool:
    expected = getattr(request.app.state, "setup_token", None)
    return bool(expected and token and token.isascii() and hmac.compare_digest(expected, token))


@router.post("/setup", response_class=HTMLResponse)
def setup_submit(request: Request, form: FormDep, session: SessionDep) -> Response:
    token = str(form.get("token", ""))
    if organizers.any_organizer(session) or not _setup_ok(request, token):
        raise Invalid("This set-up link has been used already. Log in instead.")
    try:
        org = organizers.add_organizer(
            session, name=str(form.get("name", "")), password=str(form.get("password", ""))
        )
    except DomainError as exc:
        return html(
            request,
            "pages/setup.html",
            status=exc.status,
            token=token,
            name=form.get("name"),
            errors=[exc.message],
        )
    request.app.state.setup_token = None
    return _login_response(request, session, org)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return html(request, "pages/login.html")


@router.post("/login", response_class=HTMLResponse)
def login_submit(request: Request, form: FormDep, session: SessionDep) -> Response:
    name = str(form.get("name", ""))
    try:
        org = check_login(request, session, name=name, password=str(form.get("password", "")))
    except NotAuthenticated as exc:
        return html(request, "pages/login.html", status=401, name=name, errors=[exc.message])
    return _login_response(request, session, org)


def check_login(request: Request, session: Any, *, name: str, password: str) -> Organizer:
    """Check an organizer's password within the login limits (the form and
    the API both log in here). Only failures count, per (address, name) and
    per address: a storm of wrong passwords from one address meets 429, and
    nobody can lock an organizer out by typing their name somewhere else,
    since a right password from an address under its limits always gets in.

    Against guessing spread over many addresses, two things: each guess
    costs an Argon2id hash (64 MiB, 3 passes; see domain/organizers.py), and
    failures from all addresses together have a deployment-wide limit set
    high (``rate_failed_logins_per_minute``, 300 = ten addresses' worth at the
    default). Reaching it makes every login wait out the minute, the right
    ones too: otherwise it would not stop a guess that is right. Sessions
    already open are not touched, and it takes many addresses to get there."""
    settings = request.app.state.settings
    limiter = request.app.state.limiter
    ip = request.client.host if request.client else "?"
    per_name = settings.rate_logins_per_minute
    limits = [
        (f"login-fail:{ip}|{name.strip().lower()}", per_name),
        (f"login-fail-ip:{ip}", per_name * 3),
        ("login-fail-all:", settings.rate_failed_logins_per_minute),
    ]
    for key, limit in limits:  # checked before the password, so a guess over them is not tried
        limiter.check(key, limit=limit)
    try:
        return organizers.authenticate(session, name=name, password=password)
    except NotAuthenticated:
        for key, limit in limits:
            limiter.hit(key, limit=limit)
        raise


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        organizers.end_session(session, token=token)
        session.commit()
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/organizer", response_class=HTMLResponse)
def organizer_home(request: Request, session: SessionDep, organizer: MaybeOrganizerDep) -> Response:
    if organizer is None:
        return RedirectResponse("/login", status_code=303)
    return _home(request, session, organizer)


def _home(
    request: Request, session: Any, organizer: Any, status: int = 200, **extra: Any
) -> Response:
    return html(
        request,
        "pages/organizer_home.html",
        status=status,
        organizer=organizer,
        workshops=workshops.workshops_of(session, organizer.id),
        templates=list(all_templates().values()),
        form=extra.pop("form", {}),
        **extra,
    )


@router.post("/organizer/workshops", response_class=HTMLResponse)
def create_workshop(
    request: Request, form: FormDep, session: SessionDep, organizer: MaybeOrganizerDep
) -> Response:
    if organizer is None:
        return RedirectResponse("/login", status_code=303)
    try:
        data = WorkshopCreate(
            title=str(form.get("title", "")),
            template=str(form.get("template", "")) or None,
            date=workshops.parse_date(str(form.get("date", ""))),
            venue=str(form.get("venue", "")),
        )
        ws = workshops.create_workshop(session, data=data, organizer_id=organizer.id)
    except (ValidationError, DomainError) as exc:
        session.rollback()
        status = exc.status if isinstance(exc, DomainError) else 422
        return _home(
            request, session, organizer, status=status, form=dict(form), errors=_messages(exc)
        )
    commit(request, session)
    return RedirectResponse(f"/organizer/w/{ws.code}", status_code=303)


def _workshop_page(
    request: Request, session: Any, workshop: Any, status: int = 200, **extra: Any
) -> Response:
    settings = request.app.state.settings
    audit = session.exec(
        select(Event)
        .where(
            Event.workshop_id == workshop.id,
            col(Event.actor_role).in_(["organizer", "facilitator"]),
        )
        .order_by(col(Event.seq).desc())
        .limit(50)
    ).all()
    return html(
        request,
        "pages/organizer_workshop.html",
        status=status,
        workshop=workshop,
        links=links(settings, workshop),
        areas=workshops.focus_areas(session, workshop.id),
        audit=audit,
        closing_consequences=workshops.closing_consequences(workshop),
        **extra,
    )


@router.get("/organizer/w/{code}", response_class=HTMLResponse)
def workshop_page(request: Request, workshop: OwnedWorkshopDep, session: SessionDep) -> Response:
    return _workshop_page(request, session, workshop, notice=request.query_params.get("notice"))


def _after(request: Request, session: Any, workshop: Any, action: Any, notice: str) -> Response:
    """Run ``action``; on a rule broken, show the page again with the error."""
    try:
        action()
    except (ValidationError, DomainError) as exc:
        session.rollback()
        session.refresh(workshop)
        status = exc.status if isinstance(exc, DomainError) else 422
        return _workshop_page(request, session, workshop, status=status, errors=_messages(exc))
    commit(request, session)
    return RedirectResponse(f"/organizer/w/{workshop.code}?notice={notice}", status_code=303)


@router.post("/organizer/w/{code}/settings", response_class=HTMLResponse)
def save_settings(
    request: Request, form: FormDep, workshop: OwnedWorkshopDep, session: SessionDep
) -> Response:
    def action() -> None:
        changes: dict[str, Any] = {
            k: str(form.get(k, ""))
            for k in ("title", "venue", "hosted_by", "classification", "executive_summary")
        }
        changes["date"] = workshops.parse_date(str(form.get("date", "")))
        for k in ("vote_budget", "vote_cap"):
            changes[k] = _number(form.get(k), k)
        for flag in SETTINGS_FLAGS:
            changes[flag] = form.get(flag) == "1"
        workshops.update_workshop(session, workshop=workshop, changes=changes)

    return _after(request, session, workshop, action, "Settings saved.")


def _number(value: Any, field: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise Invalid(
            f"{field.replace('_', ' ').capitalize()} must be a whole number.", field=field
        ) from None


@router.post("/organizer/w/{code}/fa", response_class=HTMLResponse)
def add_focus_area(
    request: Request, form: FormDep, workshop: OwnedWorkshopDep, session: SessionDep
) -> Response:
    def action() -> None:
        data = FocusAreaIn(title=str(form.get("title", "")), prompt=str(form.get("prompt", "")))
        workshops.add_focus_area(session, workshop=workshop, data=data)

    return _after(request, session, workshop, action, "Focus area added.")


@router.post("/organizer/w/{code}/fa/{fa_id}", response_class=HTMLResponse)
def edit_focus_area(
    request: Request, fa_id: int, form: FormDep, workshop: OwnedWorkshopDep, session: SessionDep
) -> Response:
    fa = workshops.get_focus_area(session, workshop, fa_id)
    what = str(form.get("action", "save"))

    def action() -> None:
        if what in ("up", "down"):
            workshops.move_focus_area(
                session, workshop=workshop, focus_area=fa, offset=-1 if what == "up" else 1
            )
        elif what == "delete":
            workshops.delete_focus_area(session, workshop=workshop, focus_area=fa)
        else:
            workshops.update_focus_area(
                session,
                workshop=workshop,
                focus_area=fa,
                changes={
                    "title": form.get("title", ""),
                    "prompt": form.get("prompt", ""),
                    "kinds": form.getlist("kinds"),
                    "ratings_enabled": form.get("ratings_enabled") == "1",
                    "late_cards": form.get("late_cards") == "1",
                },
            )

    return _after(request, session, workshop, action, "Focus area saved.")


@router.post("/organizer/w/{code}/affiliations", response_class=HTMLResponse)
def save_affiliations(
    request: Request, form: FormDep, workshop: OwnedWorkshopDep, session: SessionDep
) -> Response:
    lines = str(form.get("affiliations", "")).splitlines()
    return _after(
        request,
        session,
        workshop,
        lambda: workshops.set_affiliations(session, workshop=workshop, affiliations=lines),
        "Affiliations saved.",
    )


@router.post("/organizer/w/{code}/rotate", response_class=HTMLResponse)
def rotate(
    request: Request, form: FormDep, workshop: OwnedWorkshopDep, session: SessionDep
) -> Response:
    what = str(form.get("what", ""))
    response = _after(
        request,
        session,
        workshop,
        lambda: workshops.rotate(session, workshop=workshop, what=what),
        "New links made; the old ones no longer work.",
    )
    realtime = getattr(request.app.state, "realtime", None)
    if realtime is not None and what == "keys" and response.status_code == 303:
        import anyio.from_thread

        # Every process closes the workshop's sockets (through the broker).
        anyio.from_thread.run(realtime.revoke, workshop.uid)
    return response


@router.post("/organizer/w/{code}/close", response_class=HTMLResponse)
def close(
    request: Request, form: FormDep, workshop: OwnedWorkshopDep, session: SessionDep
) -> Response:
    # Closing with anonymize-on-close erases for good: the organizer says so
    # first, on the server, so no stray click or script closes a workshop.
    confirmed = form.get("confirm_close") == "yes"
    response = _after(
        request,
        session,
        workshop,
        lambda: workshops.close_workshop(session, workshop=workshop, confirmed=confirmed),
        "Workshop closed.",
    )
    if workshop.closed:  # the downloads are the next step: have them ready
        assert workshop.id is not None
        request.app.state.exports.prepare(workshop.id)
    return response


@router.post("/organizer/w/{code}/reopen", response_class=HTMLResponse)
def reopen(request: Request, workshop: OwnedWorkshopDep, session: SessionDep) -> Response:
    return _after(
        request,
        session,
        workshop,
        lambda: workshops.reopen_workshop(session, workshop=workshop),
        "Workshop reopened: each focus area is back in its phase and joins as they were."
        + (" Who wrote and voted what stays erased." if workshop.anonymize_on_close else ""),
    )


@router.post("/organizer/w/{code}/delete", response_class=HTMLResponse)
def delete(
    request: Request, form: FormDep, workshop: OwnedWorkshopDep, session: SessionDep
) -> Response:
    if str(form.get("confirm", "")).strip().upper() != workshop.code:
        return _workshop_page(
            request,
            session,
            workshop,
            status=422,
            errors=["Type the join code exactly to confirm the deletion."],
        )
    workshop_id = workshop.id
    workshops.delete_workshop(session, workshop=workshop)
    # Then every process hears of it: sockets closed, prepared files dropped.
    commit(request, session)
    request.app.state.exports.forget(workshop_id)
    request.app.state.checkpoint()
    return RedirectResponse("/organizer", status_code=303)


@router.get("/w/{code}/qr.svg")
def qr(workshop: WorkshopDep, settings: SettingsDep) -> Response:
    url = links(settings, workshop)["join_url"]
    # A standalone SVG file needs its xmlns (svg_inline() leaves it out and
    # browsers show a broken image); a viewBox without a fixed size lets the
    # page scale it (projector, organizer page).
    out = io.BytesIO()
    segno.make(url, error="m").save(
        out, kind="svg", scale=4, dark="#111", light="#fff", xmldecl=False, omitsize=True
    )
    return Response(
        out.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "no-store"}
    )
