"""The outbox: every change records an ``Event`` in the same transaction,
with ``seq`` taken from ``Workshop.last_seq``. The row lock on the workshop
(PostgreSQL ``FOR UPDATE``; SQLite's IMMEDIATE transaction) makes seq
gap-free and ordered. Payloads carry ids only, never an author or text.

What the commit must announce is left in ``session.info``: "published" holds
(workshop uid, seq) pairs, "deleted" the uids of workshops deleted (see
``workshops.delete_workshop``). Uids, not ids: a message about one workshop
must never be taken for another."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.models import Event, Workshop, utcnow

FORBIDDEN_KEYS = {"author_id", "participant_id", "title", "body", "display_name", "text"}


def record(
    session: Session, *, workshop_id: int, kind: str, actor: str = "system", **payload: Any
) -> Event:
    assert not FORBIDDEN_KEYS & payload.keys(), "event payloads hold ids only"
    seq, uid = session.execute(
        update(Workshop)
        .where(col(Workshop.id) == workshop_id)
        .values(last_seq=Workshop.last_seq + 1)
        .returning(col(Workshop.last_seq), col(Workshop.uid))
    ).one()
    event = Event(
        workshop_id=workshop_id,
        seq=seq,
        kind=kind,
        actor_role=actor,
        payload=payload,
        created_at=utcnow(),
    )
    session.add(event)
    session.info.setdefault("published", set()).add((uid, seq))
    return event


def events_since(session: Session, workshop_id: int, seq: int) -> list[Event]:
    return list(
        session.exec(
            select(Event)
            .where(Event.workshop_id == workshop_id, col(Event.seq) > seq)
            .order_by(col(Event.seq))
        )
    )
