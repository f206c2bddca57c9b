"""Workshops and their focus areas: creation from a template or from scratch,
editing, locking joins, rotating links, closing (with anonymization),
deleting and purging."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import delete, event, update
from sqlmodel import Session, col, func, select

from app.domain import access, events
from app.domain.errors import Invalid, NotFound
from app.domain.templates import DEFAULT_AFFILIATIONS, get_template
from app.models import (
    CARD_KINDS,
    Card,
    Cluster,
    Event,
    FocusArea,
    FocusAreaIn,
    Participant,
    Phase,
    Rating,
    Role,
    Vote,
    Workshop,
    WorkshopCreate,
    WorkshopSettings,
    utcnow,
)

MAX_FOCUS_AREAS = 20
PHASE_VALUES = frozenset(p.value for p in Phase)
MAX_AFFILIATIONS = 200


def get_by_code(session: Session, code: str) -> Workshop:
    ws = session.exec(select(Workshop).where(Workshop.code == access.normalize_code(code))).first()
    if ws is None:
        raise NotFound("No workshop has this code. Check the code and try again.", field="code")
    return ws


def focus_areas(session: Session, workshop_id: int) -> list[FocusArea]:
    return list(
        session.exec(
            select(FocusArea)
            .where(FocusArea.workshop_id == workshop_id)
            .order_by(col(FocusArea.position), col(FocusArea.id))
        )
    )


def get_focus_area(session: Session, workshop: Workshop, focus_area_id: int) -> FocusArea:
    fa = session.get(FocusArea, focus_area_id)
    if fa is None or fa.workshop_id != workshop.id:
        raise NotFound("This focus area does not exist in this workshop.", field="focus_area_id")
    return fa


def _unique_code(session: Session) -> str:
    while True:
        code = access.new_join_code()
        if session.exec(select(Workshop.id).where(Workshop.code == code)).first() is None:
            return code


def create_workshop(
    session: Session, *, data: WorkshopCreate, organizer_id: int | None
) -> Workshop:
    template = get_template(data.template) if data.template else None
    settings: dict[str, Any] = dict(template.settings) if template else {}
    if data.settings is not None:
        settings.update(data.settings.model_dump(exclude_unset=True))
    checked = WorkshopSettings.model_validate(settings)
    ws = Workshop(
        title=data.title.strip(),
        date=data.date,
        venue=data.venue,
        hosted_by=template.hosted_by if template else "",
        organizer_id=organizer_id,
        code=_unique_code(session),
        affiliations=list(template.affiliations if template else DEFAULT_AFFILIATIONS),
        template=template.name if template else "",
        **checked.model_dump(),
    )
    session.add(ws)
    session.flush()
    assert ws.id is not None
    if data.focus_areas is not None:
        areas = [fa.model_dump() for fa in data.focus_areas]
    elif template:
        areas = template.focus_areas
    else:
        areas = [{"title": "Lessons learned", "prompt": "", "kinds": None}]
    if not areas:
        raise Invalid("A workshop needs at least one focus area.", field="focus_areas")
    for pos, fa in enumerate(areas[:MAX_FOCUS_AREAS]):
        session.add(
            FocusArea(
                workshop_id=ws.id,
                position=pos,
                title=fa["title"].strip(),
                prompt=(fa.get("prompt") or "").strip(),
                kinds=[str(k) for k in (fa.get("kinds") or CARD_KINDS)],
            )
        )
    session.flush()
    events.record(session, workshop_id=ws.id, kind="workshop.created", actor="organizer")
    return ws


def update_workshop(
    session: Session,
    *,
    workshop: Workshop,
    changes: dict[str, Any],
    actor: str = "organizer",
) -> Workshop:
    allowed = {"title", "date", "end_date", "venue", "hosted_by", "executive_summary"}
    allowed |= set(WorkshopSettings.model_fields)
    unknown = set(changes) - allowed
    if unknown:
        raise Invalid(f"Cannot change {', '.join(sorted(unknown))}.")
    if "title" in changes and not str(changes["title"]).strip():
        raise Invalid("The workshop needs a title.", field="title")
    merged = WorkshopSettings.model_validate(
        {**workshop.model_dump(include=set(WorkshopSettings.model_fields)), **changes}
    )
    for key, value in changes.items():
        if key in WorkshopSettings.model_fields:
            value = getattr(merged, key)
        setattr(workshop, key, value)
    session.add(workshop)
    assert workshop.id is not None
    events.record(
        session,
        workshop_id=workshop.id,
        kind="workshop.updated",
        actor=actor,
        fields=sorted(changes),
    )
    return workshop


def set_affiliations(session: Session, *, workshop: Workshop, affiliations: list[str]) -> None:
    cleaned = list(dict.fromkeys(a.strip()[:200] for a in affiliations if a.strip()))
    if not cleaned:
        raise Invalid("Keep at least one affiliation.", field="affiliations")
    if len(cleaned) > MAX_AFFILIATIONS:
        raise Invalid(f"At most {MAX_AFFILIATIONS} affiliations.", field="affiliations")
    workshop.affiliations = cleaned
    session.add(workshop)
    assert workshop.id is not None
    events.record(session, workshop_id=workshop.id, kind="workshop.updated", actor="organizer")


def add_focus_area(session: Session, *, workshop: Workshop, data: FocusAreaIn) -> FocusArea:
    assert workshop.id is not None
    existing = focus_areas(session, workshop.id)
    if len(existing) >= MAX_FOCUS_AREAS:
        raise Invalid(f"At most {MAX_FOCUS_AREAS} focus areas.")
    fa = FocusArea(
        workshop_id=workshop.id,
        position=(max((f.position for f in existing), default=-1) + 1),
        title=data.title.strip(),
        prompt=data.prompt.strip(),
        kinds=[k.value for k in data.kinds] if data.kinds else list(CARD_KINDS),
    )
    session.add(fa)
    session.flush()
    events.record(
        session,
        workshop_id=workshop.id,
        kind="focus_area.created",
        actor="organizer",
        focus_area_id=fa.id,
    )
    return fa


def update_focus_area(
    session: Session, *, workshop: Workshop, focus_area: FocusArea, changes: dict[str, Any]
) -> FocusArea:
    if "title" in changes:
        title = str(changes["title"]).strip()
        if not 1 <= len(title) <= 200:
            raise Invalid("A focus area needs a title of 1-200 characters.", field="title")
        focus_area.title = title
    if "prompt" in changes:
        prompt = str(changes["prompt"]).strip()
        if len(prompt) > 2000:
            raise Invalid("The prompt is limited to 2,000 characters.", field="prompt")
        focus_area.prompt = prompt
    if "kinds" in changes:
        kinds = [str(k) for k in changes["kinds"]]
        if not kinds or not set(kinds) <= set(CARD_KINDS):
            raise Invalid("Choose at least one card kind.", field="kinds")
        focus_area.kinds = [k for k in CARD_KINDS if k in kinds]
    for flag in ("ratings_enabled", "late_cards"):
        if flag in changes:
            setattr(focus_area, flag, bool(changes[flag]))
    session.add(focus_area)
    assert workshop.id is not None
    events.record(
        session,
        workshop_id=workshop.id,
        kind="focus_area.updated",
        actor="organizer",
        focus_area_id=focus_area.id,
    )
    return focus_area


def move_focus_area(
    session: Session, *, workshop: Workshop, focus_area: FocusArea, offset: int
) -> None:
    assert workshop.id is not None
    areas = focus_areas(session, workshop.id)
    i = next(i for i, fa in enumerate(areas) if fa.id == focus_area.id)
    j = max(0, min(len(areas) - 1, i + offset))
    areas.insert(j, areas.pop(i))
    for pos, fa in enumerate(areas):
        fa.position = pos
        session.add(fa)
    events.record(session, workshop_id=workshop.id, kind="workshop.updated", actor="organizer")


def delete_focus_area(session: Session, *, workshop: Workshop, focus_area: FocusArea) -> None:
    assert workshop.id is not None
    has_cards = session.exec(
        select(Card.id).where(Card.focus_area_id == focus_area.id).limit(1)
    ).first()
    if has_cards is not None:
        raise Invalid("This focus area has cards; it cannot be deleted.")
    if len(focus_areas(session, workshop.id)) <= 1:
        raise Invalid("A workshop needs at least one focus area.")
    session.delete(focus_area)
    events.record(session, workshop_id=workshop.id, kind="workshop.updated", actor="organizer")


def lock_joins(session: Session, *, workshop: Workshop, locked: bool, actor: str) -> None:
    workshop.joins_locked = locked
    session.add(workshop)
    assert workshop.id is not None
    events.record(session, workshop_id=workshop.id, kind="workshop.locked", actor=actor)


def rotate(session: Session, *, workshop: Workshop, what: str) -> None:
    """Rotate the facilitator and projector links ("keys") or the join code
    ("code"); old ones stop working at once. New keys also unseat the
    facilitators who came in through the old link: a leaked link is only
    contained if what it gave goes too (the facilitator opens the new one)."""
    assert workshop.id is not None
    if what == "keys":
        workshop.key_rotation += 1
        facilitators = select(Participant).where(
            Participant.workshop_id == workshop.id, Participant.role == Role.facilitator
        )
        for p in session.exec(facilitators):
            p.token_hash = access.hash_token(access.new_token())
            session.add(p)
    elif what == "code":
        workshop.code = _unique_code(session)
    else:
        raise Invalid("Rotate 'keys' or 'code'.")
    session.add(workshop)
    events.record(session, workshop_id=workshop.id, kind="workshop.rotated", actor="organizer")


def close_workshop(
    session: Session, *, workshop: Workshop, actor: str = "organizer", confirmed: bool = True
) -> None:
    """Close every focus area and lock joins, remembering how they were so
    that ``reopen_workshop`` can put them back; with anonymize-on-close,
    erase for good the links between participants and their cards, votes
    and ratings (the outcome's numbers stay exactly the same)."""
    assert workshop.id is not None
    if workshop.closed:
        return
    if not confirmed:
        raise Invalid(
            "Tick the box to confirm: " + closing_consequences(workshop), field="confirm_close"
        )
    areas = focus_areas(session, workshop.id)
    workshop.reopen_state = {
        "phases": {str(fa.id): fa.phase for fa in areas},
        "joins_locked": workshop.joins_locked,
    }
    workshop.closed = True
    workshop.closed_at = utcnow()
    workshop.joins_locked = True
    session.add(workshop)
    session.execute(
        update(FocusArea).where(col(FocusArea.workshop_id) == workshop.id).values(phase="closed")
    )
    if workshop.anonymize_on_close:
        anonymize(session, workshop_id=workshop.id)
    events.record(session, workshop_id=workshop.id, kind="workshop.closed", actor=actor)


def closing_consequences(workshop: Workshop) -> str:
    """What closing does, in the words the organizer confirms."""
    text = "closing ends every focus area and locks joins"
    if workshop.anonymize_on_close:
        text += (
            ", and erases for good who wrote and voted what: participants lose "
            "their own cards and votes, and reopening does not bring that back"
        )
    return text + ". The outcome's numbers stay the same."


def reopen_workshop(session: Session, *, workshop: Workshop) -> None:
    """Undo what closing changed: each focus area's phase and the join lock
    as they were. Anonymization is not undone: it erased for good."""
    assert workshop.id is not None
    if not workshop.closed:
        return
    state = workshop.reopen_state or {}
    before = state.get("phases", {})
    for fa in focus_areas(session, workshop.id):
        phase = before.get(str(fa.id))
        if phase in PHASE_VALUES and phase != fa.phase:
            fa.phase = phase
            session.add(fa)
    workshop.joins_locked = bool(state.get("joins_locked", workshop.joins_locked))
    workshop.closed = False
    workshop.closed_at = None
    workshop.reopen_state = None
    session.add(workshop)
    events.record(session, workshop_id=workshop.id, kind="workshop.reopened", actor="organizer")


def anonymize(session: Session, *, workshop_id: int) -> None:
    """Erase who did what: cards lose their author, votes and ratings their
    participant, and participants the voter key their votes carry; votes
    keep that key (so results still count people, not rows) and the
    affiliation copied when they were cast."""
    fa_ids = select(FocusArea.id).where(FocusArea.workshop_id == workshop_id)
    session.execute(update(Card).where(col(Card.workshop_id) == workshop_id).values(author_id=None))
    session.execute(
        update(Vote).where(col(Vote.focus_area_id).in_(fa_ids)).values(participant_id=None)
    )
    session.execute(
        update(Rating).where(col(Rating.focus_area_id).in_(fa_ids)).values(participant_id=None)
    )
    session.execute(
        update(Participant)
        .where(col(Participant.workshop_id) == workshop_id)
        .values(voter_key=None)
    )


def delete_workshop(session: Session, *, workshop: Workshop) -> None:
    """Delete every row of the workshop, children first (no reliance on
    ON DELETE CASCADE, which SQLite batch migrations can drop). Its uid is
    left in ``session.info["deleted"]``: after the commit, every process must
    hear of it (sockets closed, prepared files dropped). Its id is never
    given again, nor its uid (see ``app.models``)."""
    wid = workshop.id
    session.info.setdefault("deleted", set()).add(workshop.uid)
    published = session.info.get("published", set())
    published -= {p for p in published if p[0] == workshop.uid}  # nothing left to show
    fa_ids = select(FocusArea.id).where(FocusArea.workshop_id == wid)
    card_ids = select(Card.id).where(Card.workshop_id == wid)
    session.execute(delete(Vote).where(col(Vote.card_id).in_(card_ids)))
    session.execute(delete(Rating).where(col(Rating.card_id).in_(card_ids)))
    session.execute(update(Card).where(col(Card.workshop_id) == wid).values(cluster_id=None))
    session.execute(delete(Card).where(col(Card.workshop_id) == wid))
    session.execute(delete(Cluster).where(col(Cluster.workshop_id) == wid))
    session.execute(delete(Participant).where(col(Participant.workshop_id) == wid))
    session.execute(delete(Event).where(col(Event.workshop_id) == wid))
    session.execute(delete(FocusArea).where(col(FocusArea.id).in_(fa_ids)))
    session.execute(delete(Workshop).where(col(Workshop.id) == wid))


@event.listens_for(Session, "after_rollback")
def _deletion_undone(session: Session) -> None:
    """A deletion rolled back is no deletion: nothing to announce."""
    session.info.pop("deleted", None)


def purge_closed(session: Session, *, older_than_days: int) -> list[str]:
    """Delete workshops closed more than ``older_than_days`` days ago."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    old = session.exec(
        select(Workshop).where(Workshop.closed, col(Workshop.closed_at) < cutoff)
    ).all()
    codes = [w.code for w in old]
    for w in old:
        delete_workshop(session, workshop=w)
    return codes


def participant_count(session: Session, workshop_id: int) -> int:
    return session.exec(
        select(func.count())
        .select_from(Participant)
        .where(Participant.workshop_id == workshop_id, Participant.role == "participant")
    ).one()


def set_owner(session: Session, *, workshop: Workshop, organizer_id: int) -> None:
    """Hand the workshop to an organizer: from then on only they manage it."""
    assert workshop.id is not None
    if workshop.organizer_id == organizer_id:
        return
    workshop.organizer_id = organizer_id
    session.add(workshop)
    events.record(
        session,
        workshop_id=workshop.id,
        kind="workshop.owner_changed",
        actor="organizer",  # from the command line: the server's administrator
        organizer_id=organizer_id,
    )


def workshops_of(session: Session, organizer_id: int | None) -> list[Workshop]:
    q = select(Workshop).order_by(col(Workshop.created_at).desc())
    if organizer_id is not None:
        q = q.where(Workshop.organizer_id == organizer_id)
    return list(session.exec(q))


def parse_date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid("Use a date like 2026-10-15.", field="date") from None
