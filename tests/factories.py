"""Factories: build workshops, participants and cards through the domain
functions (so tests exercise the same rules as the app), and API helpers."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from app.domain import access, cards, organizers, participants, phases, workshops
from app.models import (
    CardContext,
    CardCreate,
    CardKind,
    Participant,
    ParticipantCreate,
    Workshop,
    WorkshopCreate,
)
from app.web.deps import participant_cookie, projector_cookie

PASSWORD = "correct horse battery"


def organizer(session: Session, name: str = "Org") -> Any:
    org = organizers.add_organizer(session, name=name, password=PASSWORD)
    session.commit()
    return org


def workshop(
    session: Session, *, template: str | None = "osce-organized-crime-2007", **settings: Any
) -> Workshop:
    data = WorkshopCreate(title="Lessons learned on organized crime", template=template)
    ws = workshops.create_workshop(session, data=data, organizer_id=None)
    for key, value in settings.items():
        setattr(ws, key, value)
    session.add(ws)
    session.commit()
    return ws


def join(
    session: Session,
    ws: Workshop,
    name: str = "Ana",
    affiliation: str | None = None,
    *,
    facilitator: bool = False,
    secret: str = "",
) -> tuple[Participant, str]:
    assert ws.id is not None
    key = (
        access.derive_key(secret, uid=ws.uid, role="facilitator", rotation=ws.key_rotation)
        if facilitator
        else None
    )
    p, token = participants.join(
        session,
        workshop=ws,
        data=ParticipantCreate(
            display_name=name,
            affiliation=affiliation if affiliation is not None else ws.affiliations[0],
            facilitator_key=key,
        ),
        secret=secret,
    )
    session.commit()
    return p, token


def set_phase(session: Session, ws: Workshop, fa_index: int, phase: str) -> Any:
    assert ws.id is not None
    fa = workshops.focus_areas(session, ws.id)[fa_index]
    phases.set_phase(session, workshop=ws, focus_area=fa, phase=phase, actor="facilitator")
    session.commit()
    return fa


def card(
    session: Session,
    ws: Workshop,
    author: Participant,
    fa_id: int,
    title: str = "Joint investigation teams",
    kind: str = "tool",
    **extra: Any,
) -> Any:
    c, _ = cards.create_card(
        session,
        workshop=ws,
        participant=author,
        data=CardCreate(
            focus_area_id=fa_id,
            kind=CardKind(kind),
            title=title,
            body=extra.get("body", ""),
            context=CardContext.model_validate(extra.get("context", {})),
        ),
    )
    session.commit()
    return c


def cookie_names(uid: str) -> tuple[str, str]:
    """The participant's and the projector's cookie for the workshop with this
    uid (``WorkshopCreated.uid``), as the app names them."""
    ws = Workshop(uid=uid, title="", code="")
    return participant_cookie(ws), projector_cookie(ws)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
