"""Request dependencies: the database session, who is calling (organizer,
participant, facilitator, projector), and ``commit`` which commits and then
publishes the events the transaction recorded (never before the commit)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

import anyio.from_thread
from fastapi import Depends, Request
from sqlmodel import Session
from starlette.datastructures import FormData
from starlette.requests import HTTPConnection

from app.config import Settings
from app.domain import access, organizers, participants, workshops
from app.domain.cards import Viewer, viewer_for
from app.domain.errors import NotAllowed, NotAuthenticated, NotFound
from app.models import Organizer, Participant, Role, Workshop

SESSION_COOKIE = "lw_session"


def participant_cookie(workshop: Workshop) -> str:
    """Named after the workshop's uid, never its id: no other workshop ever has
    it, so a browser never offers one workshop's cookie to another."""
    return f"lw_p_{workshop.uid}"


def projector_cookie(workshop: Workshop) -> str:
    return f"lw_pj_{workshop.uid}"


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request. Async on purpose: its set-up and close run in
    the event loop, never waiting for a worker thread while the session holds
    a connection (or SQLite's write lock). Lookup dependencies release their
    transaction before the handler's thread runs (see ``_release``); without
    both, a burst of requests deadlocked the thread pool (measured: 200
    concurrent joins, none served)."""
    session = Session(request.app.state.engine, expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()


def _read_only(session: Session) -> None:
    """Begin a lookup's transaction as a read-only one: on SQLite a plain BEGIN
    (a WAL snapshot) instead of BEGIN IMMEDIATE, so that looking up the
    workshop or the caller never queues for the database's single write lock
    (before, every request took it once per lookup, reads included). A
    transaction already open is left as it is."""
    if not session.in_transaction():
        session.connection(execution_options={"readonly": True})


def _release(session: Session) -> None:
    """End a lookup's read transaction so no lock or pooled connection is
    held while the request waits for its next worker thread. Loaded objects
    stay usable (expire_on_commit=False)."""
    if session.in_transaction():
        session.commit()


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def commit(request: Request, session: Session) -> None:
    """Commit, then tell the broker which (workshop uid, seq) changed and
    which workshops were deleted (every process closes their sockets and
    drops their prepared files)."""
    published = session.info.pop("published", set())
    deleted = session.info.pop("deleted", set())
    session.commit()
    realtime = getattr(request.app.state, "realtime", None)
    if realtime is None:
        return
    for uid in deleted:
        anyio.from_thread.run(realtime.gone, uid)
    latest: dict[str, int] = {}
    for uid, seq in published:
        if uid not in deleted:
            latest[uid] = max(seq, latest.get(uid, 0))
    for uid, seq in latest.items():
        anyio.from_thread.run(realtime.publish, uid, seq)


# RFC 6750 2.1: the scheme in any case, spaces, one b64token; spaces or tabs
# may trail. Character classes are spelled out (no str.strip(), no \s), so a
# non-breaking space or any other non-ASCII character is never part of one.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9._~+/-]+=*)[ \t]*")


def bearer(conn: HTTPConnection) -> str | None:
    """The bearer token of a request or websocket handshake, or None. The
    one definition: the CSRF exemption (``security.csrf_protect``), the HTTP
    caller lookups below and the websocket handshake all ask this, so a
    request is spared the CSRF check exactly when its caller is read from
    the token alone and never from a cookie. An ``Authorization`` header that
    is no bearer token counts as no header: the cookie speaks, and CSRF is
    checked."""
    match = _BEARER.fullmatch(conn.headers.get("authorization", ""))
    return match.group(1) if match else None


def current_organizer(request: Request, session: SessionDep) -> Organizer | None:
    settings: Settings = request.app.state.settings
    token = bearer(request) or request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    org = organizers.resolve_session(
        session,
        token=token,
        idle=timedelta(minutes=settings.session_idle_minutes),
        absolute=timedelta(hours=settings.session_absolute_hours),
    )
    session.commit()
    return org


def require_organizer(
    org: Annotated[Organizer | None, Depends(current_organizer)],
) -> Organizer:
    if org is None:
        raise NotAuthenticated("Please log in as an organizer.")
    return org


MaybeOrganizerDep = Annotated[Organizer | None, Depends(current_organizer)]
OrganizerDep = Annotated[Organizer, Depends(require_organizer)]


def failed_access(request: Request, code: str | None = None) -> None:
    """Count one failed way in: an unknown workshop code, or (with ``code``) a
    wrong facilitator or projector key for that workshop. Limited per address;
    for the whole deployment, against guessing spread over many addresses (a
    right code is never counted, so a room that types it well still gets in);
    and per workshop, against keys tried on one code. Raises ``RateLimited``."""
    settings = request.app.state.settings
    limiter = request.app.state.limiter
    ip = request.client.host if request.client else "?"
    limiter.hit(f"badjoin:{ip}", limit=settings.rate_failed_joins_per_ip_per_minute)
    limiter.hit("badjoin-all:", limit=settings.rate_failed_joins_per_minute)
    if code is not None:
        limiter.hit(f"badkey:{code}", limit=settings.rate_failed_keys_per_code_per_minute)


def get_workshop(request: Request, code: str, session: SessionDep) -> Workshop:
    _read_only(session)
    try:
        return workshops.get_by_code(session, code)
    except NotFound:
        # Guessing codes through any route counts like a failed join (GET /join).
        failed_access(request)
        raise
    finally:
        _release(session)


WorkshopDep = Annotated[Workshop, Depends(get_workshop)]


def owned_workshop(workshop: WorkshopDep, organizer: OrganizerDep) -> Workshop:
    if workshop.organizer_id not in (None, organizer.id):
        raise NotAllowed("This workshop belongs to another organizer.")
    return workshop


OwnedWorkshopDep = Annotated[Workshop, Depends(owned_workshop)]


def current_participant(
    request: Request, workshop: WorkshopDep, session: SessionDep
) -> Participant | None:
    token = bearer(request) or request.cookies.get(participant_cookie(workshop))
    _read_only(session)
    try:
        return participants.by_token(session, workshop=workshop, token=token)
    finally:
        _release(session)


MaybeParticipantDep = Annotated[Participant | None, Depends(current_participant)]


def require_participant(participant: MaybeParticipantDep) -> Participant:
    if participant is None:
        raise NotAuthenticated("Please join the workshop first.")
    return participant


ParticipantDep = Annotated[Participant, Depends(require_participant)]


def require_facilitator(participant: ParticipantDep) -> Participant:
    if participant.role != Role.facilitator:
        raise NotAllowed("Only the facilitator can do this.")
    return participant


FacilitatorDep = Annotated[Participant, Depends(require_facilitator)]


def staff_actor(
    request: Request, workshop: WorkshopDep, session: SessionDep, organizer: MaybeOrganizerDep
) -> str:
    """Facilitator or the workshop's organizer: returns the actor role."""
    p = current_participant(request, workshop, session)
    if p is not None and p.role == Role.facilitator:
        return "facilitator"
    if organizer is not None and workshop.organizer_id in (None, organizer.id):
        return "organizer"
    if p is None and organizer is None:
        raise NotAuthenticated("Please open the facilitator link or log in.")
    raise NotAllowed("Only the facilitator or the organizer can do this.")


StaffDep = Annotated[str, Depends(staff_actor)]


def viewer_of(participant: Participant, settings: Settings) -> Viewer:
    return viewer_for(participant, facilitator_sees_private=settings.facilitator_sees_private)


def projector_ok(request: Request, workshop: Workshop, settings: Settings) -> bool:
    key = request.query_params.get("key") or request.cookies.get(projector_cookie(workshop))
    return access.check_key(
        settings.resolved_secret(),
        key,
        uid=workshop.uid,
        role="projector",
        rotation=workshop.key_rotation,
    )


async def get_form(request: Request) -> FormData:
    """The parsed form, read in the event loop so sync handlers can use it."""
    return await request.form()


FormDep = Annotated[FormData, Depends(get_form)]
