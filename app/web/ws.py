"""The websocket endpoint. The handshake checks the Origin header against
the allow-list and the caller's credentials before accepting, and caps the
open sockets per participant and per workshop's projector key (4429); the
hub then serves the socket (one audience per socket)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket
from sqlmodel import Session

from app.db import read_engine
from app.domain import participants, workshops
from app.domain.errors import DomainError
from app.web.deps import bearer, participant_cookie, projector_ok

router = APIRouter()


def _audience(ws: WebSocket, session: Session, code: str) -> tuple[str, str, str] | None:
    """(the workshop's uid, the audience, the credential's tag), or None. The
    hub groups sockets by uid: no other workshop ever has it."""
    settings = ws.app.state.settings
    try:
        workshop = workshops.get_by_code(session, code)
    except DomainError:
        return None
    token = bearer(ws) or ws.cookies.get(participant_cookie(workshop))
    p = participants.by_token(session, workshop=workshop, token=token)
    if p is not None:
        audience = "facilitator" if p.role == "facilitator" else "board"
        return workshop.uid, audience, f"p:{p.id}"
    if projector_ok(ws, workshop, settings):  # type: ignore[arg-type]
        # One key for all the workshop's screens, capped per workshop: ws_counts is
        # shared by every workshop the process serves.
        return workshop.uid, "projector", f"projector:{workshop.uid}"
    return None


@router.websocket("/ws/workshops/{code}")
async def workshop_socket(ws: WebSocket, code: str) -> None:
    app = ws.app
    origin = ws.headers.get("origin")
    host = ws.headers.get("host", "")
    same = {f"http://{host}", f"https://{host}"}
    if origin is not None and origin.rstrip("/") not in app.state.origins | same:
        await ws.close(code=4403)
        return
    import anyio.to_thread

    def lookup() -> tuple[str, str, str] | None:
        # Read-only: on SQLite the write engine would BEGIN IMMEDIATE, so every
        # handshake would queue for the database's single write lock.
        with Session(read_engine(app.state.engine)) as session:
            return _audience(ws, session, code)

    found = await anyio.to_thread.run_sync(lookup)
    if found is None:
        await ws.close(code=4401)
        return
    uid, audience, key = found
    settings = app.state.settings
    cap = settings.ws_max_projectors if audience == "projector" else settings.ws_max_per_participant
    counts = app.state.ws_counts
    # Taken before the accept (an await): handshakes that race cannot all pass the cap.
    counts[key] = counts.get(key, 0) + 1
    try:
        if counts[key] > cap:
            await ws.close(code=4429)
            return
        await ws.accept()
        await app.state.realtime.hub.attach(ws, uid, audience, None, key=key)
    finally:
        counts[key] -= 1
        if counts[key] <= 0:
            counts.pop(key, None)
