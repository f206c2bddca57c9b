"""Joining a workshop: participants (with the join code) and facilitators
(with the facilitator key). A participant is identified by a random token,
stored only as a hash; the browser keeps it in a cookie."""

from __future__ import annotations

from sqlmodel import Session, select

from app.domain import access, events
from app.domain.errors import Invalid, JoinsLocked, NotAllowed
from app.models import Participant, ParticipantCreate, Role, Workshop


def join(
    session: Session, *, workshop: Workshop, data: ParticipantCreate, secret: str
) -> tuple[Participant, str]:
    assert workshop.id is not None
    role = Role.participant
    if data.facilitator_key is not None:
        if not access.check_key(
            secret,
            data.facilitator_key,
            uid=workshop.uid,
            role="facilitator",
            rotation=workshop.key_rotation,
        ):
            raise NotAllowed("This facilitator link is not valid (any more).")
        role = Role.facilitator
    else:
        if workshop.closed:
            raise JoinsLocked("This workshop is closed.")
        if workshop.joins_locked:
            raise JoinsLocked("The facilitator has closed this workshop to new participants.")
        if workshop.affiliations and data.affiliation not in workshop.affiliations:
            raise Invalid("Please pick your affiliation from the list.", field="affiliation")
    token = access.new_token()
    p = Participant(
        workshop_id=workshop.id,
        display_name=data.display_name,
        affiliation=data.affiliation,
        role=role.value,
        token_hash=access.hash_token(token),
    )
    session.add(p)
    session.flush()
    events.record(session, workshop_id=workshop.id, kind="participant.joined", role=role.value)
    return p, token


def by_token(session: Session, *, workshop: Workshop, token: str | None) -> Participant | None:
    if not token or len(token) > 200:
        return None
    p = session.exec(
        select(Participant).where(Participant.token_hash == access.hash_token(token))
    ).first()
    if p is None or p.workshop_id != workshop.id:
        return None
    return p
