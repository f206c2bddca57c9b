"""Driving a focus area: its phase, its countdown, the spotlight (which the
projector follows) and revealing vote totals. Facilitators only; the check is
made by the caller's role, passed in as ``actor``."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from app.domain import events
from app.domain.errors import Invalid, NotAllowed, PhaseClosed
from app.models import PHASES, FocusArea, Phase, Workshop, utcnow

MAX_TIMER_MINUTES = 240


def _staff(actor: str) -> None:
    if actor not in ("facilitator", "organizer"):
        raise NotAllowed("Only the facilitator can do this.")


def set_phase(
    session: Session, *, workshop: Workshop, focus_area: FocusArea, phase: str, actor: str
) -> FocusArea:
    _staff(actor)
    if phase not in PHASES:
        raise Invalid(f"Unknown phase {phase!r}. Phases: {', '.join(PHASES)}.", field="phase")
    if workshop.closed:
        raise PhaseClosed("This workshop is closed; reopen it first.")
    previous = focus_area.phase
    if previous == phase:
        return focus_area
    focus_area.phase = phase
    if phase == Phase.synthesize:
        # Results are the point of synthesis: totals are shown from here on.
        focus_area.revealed = True
    elif phase in (Phase.draft, Phase.collect, Phase.cluster):
        focus_area.revealed = False
    session.add(focus_area)
    assert workshop.id is not None
    events.record(
        session,
        workshop_id=workshop.id,
        kind="focus_area.phase",
        actor=actor,
        focus_area_id=focus_area.id,
        phase=phase,
        previous=previous,
    )
    return focus_area


def set_timer(
    session: Session,
    *,
    workshop: Workshop,
    focus_area: FocusArea,
    minutes: float | None,
    actor: str,
) -> FocusArea:
    _staff(actor)
    if minutes is None or minutes <= 0:
        focus_area.timer_ends_at = None
    elif minutes > MAX_TIMER_MINUTES:
        raise Invalid(f"A timer can run at most {MAX_TIMER_MINUTES} minutes.", field="minutes")
    else:
        focus_area.timer_ends_at = utcnow() + timedelta(minutes=minutes)
    session.add(focus_area)
    assert workshop.id is not None
    events.record(
        session,
        workshop_id=workshop.id,
        kind="focus_area.timer",
        actor=actor,
        focus_area_id=focus_area.id,
    )
    return focus_area


def set_spotlight(
    session: Session, *, workshop: Workshop, focus_area: FocusArea | None, actor: str
) -> None:
    _staff(actor)
    workshop.spotlight_focus_area_id = focus_area.id if focus_area else None
    session.add(workshop)
    assert workshop.id is not None
    events.record(session, workshop_id=workshop.id, kind="workshop.spotlight", actor=actor)


def reveal(session: Session, *, workshop: Workshop, focus_area: FocusArea, actor: str) -> None:
    _staff(actor)
    if focus_area.phase not in (Phase.vote, Phase.synthesize, Phase.closed):
        raise PhaseClosed("Totals can be revealed once voting has started.")
    if focus_area.revealed:
        return
    focus_area.revealed = True
    session.add(focus_area)
    assert workshop.id is not None
    events.record(
        session,
        workshop_id=workshop.id,
        kind="focus_area.revealed",
        actor=actor,
        focus_area_id=focus_area.id,
    )


def totals_visible(workshop: Workshop, focus_area: FocusArea) -> bool:
    """Blind voting hides per-card totals until the facilitator reveals."""
    if focus_area.phase in (Phase.draft, Phase.collect, Phase.cluster):
        return False
    return focus_area.revealed or not workshop.blind_voting
