"""Who is acting or looking: one typed ``Actor`` built by one request
dependency (``app.web.deps.actor_of``) and passed to the domain, in place of
role strings. The domain decides from it what the caller may see and do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.models import Participant, Role


class ActorRole(StrEnum):
    participant = "participant"
    facilitator = "facilitator"
    projector = "projector"
    organizer = "organizer"


STAFF = frozenset({ActorRole.facilitator, ActorRole.organizer})


@dataclass(frozen=True)
class Actor:
    """``participant_id`` is set for participants and facilitators,
    ``organizer_id`` for organizers; ``sees_private`` is whether this actor
    may read card text still private to its author (facilitators with
    ``facilitator_sees_private``, and the workshop's organizer)."""

    role: ActorRole
    participant_id: int | None = None
    organizer_id: int | None = None
    sees_private: bool = False

    def __post_init__(self) -> None:
        # Accept a plain role string from older callers; store the enum.
        object.__setattr__(self, "role", ActorRole(self.role))

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF

    @classmethod
    def participant(cls, *, participant_id: int | None) -> Actor:
        return cls(ActorRole.participant, participant_id=participant_id)

    @classmethod
    def of(cls, participant: Participant, *, facilitator_sees_private: bool) -> Actor:
        staff = participant.role == Role.facilitator
        return cls(
            ActorRole.facilitator if staff else ActorRole.participant,
            participant_id=participant.id,
            sees_private=staff and facilitator_sees_private,
        )

    @classmethod
    def organizer(cls, *, organizer_id: int | None) -> Actor:
        return cls(ActorRole.organizer, organizer_id=organizer_id, sees_private=True)


PROJECTOR = Actor(ActorRole.projector)
