"""The tables and the model families that cross the API.

A ``*Public`` model never carries an author or participant id: the Chatham
House rule is enforced by what these models can hold, not by remembering to
drop a field. Tables use plain ids; JSON columns hold small lists and dicts
(kinds, context facets, affiliation list) that are never queried inside.
"""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import date as Date
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, field_validator
from sqlalchemy import JSON, Column, ForeignKey, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

TITLE_MAX = 140
BODY_MAX = 4000
FACET_TEXT_MAX = 1000
NAME_MAX = 80
# Text fields that are stripped must hold something besides spaces; the schema says so.
NONBLANK = r"\S"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Phase(StrEnum):
    draft = "draft"
    collect = "collect"
    cluster = "cluster"
    vote = "vote"
    synthesize = "synthesize"
    closed = "closed"


PHASES: list[Phase] = list(Phase)


class CardKind(StrEnum):
    tool = "tool"
    method = "method"
    lesson = "lesson"
    recommendation = "recommendation"


CARD_KINDS: list[str] = [k.value for k in CardKind]


class CardStatus(StrEnum):
    visible = "visible"
    hidden = "hidden"
    withdrawn = "withdrawn"
    merged = "merged"


class Role(StrEnum):
    participant = "participant"
    facilitator = "facilitator"


def _fk(target: str, *, nullable: bool = False, ondelete: str = "CASCADE") -> Any:
    return Field(
        default=None,
        sa_column=Column(
            Integer, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=True
        ),
    )


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


# --- organizers -------------------------------------------------------------


class Organizer(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=NAME_MAX, unique=True, index=True)
    password_hash: str
    created_at: datetime = Field(default_factory=utcnow)


class AuthSession(SQLModel, table=True):
    """An organizer's login: a browser session cookie or an API bearer token.
    Only the SHA-256 of the token is stored."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    organizer_id: int = _fk("organizer.id")
    kind: str = Field(default="cookie", max_length=10)  # cookie | bearer
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)


# --- workshops --------------------------------------------------------------


# JSON input takes numbers and booleans as JSON Schema does: no 0 for false, no
# "5" for 5 (pydantic's lax mode would take both), but 5.0 is the integer 5.
STRICT: dict[str, Any] = {"strict": True}


def _json_integer(v: Any) -> Any:
    if isinstance(v, bool | str | bytes):
        raise ValueError("must be a whole number")
    return v


JsonInt = Annotated[int, BeforeValidator(_json_integer)]


class WorkshopSettings(SQLModel):
    private_writing: bool = Field(default=False, schema_extra=STRICT)
    vote_budget: JsonInt = Field(default=5, ge=1, le=50)
    vote_cap: JsonInt = Field(default=3, ge=1, le=50)
    blind_voting: bool = Field(default=True, schema_extra=STRICT)
    anonymize_on_close: bool = Field(default=True, schema_extra=STRICT)
    classification: str = Field(default="", max_length=80)
    participant_annex: bool = Field(default=False, schema_extra=STRICT)


class Workshop(WorkshopSettings, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    date: Date | None = None
    end_date: Date | None = None
    venue: str = Field(default="", max_length=200)
    hosted_by: str = Field(default="", max_length=200)
    organizer_id: int | None = _fk("organizer.id", nullable=True, ondelete="SET NULL")
    code: str = Field(max_length=16, unique=True, index=True)
    key_rotation: int = 0
    joins_locked: bool = False
    closed: bool = False
    closed_at: datetime | None = None
    spotlight_focus_area_id: int | None = None
    executive_summary: str = Field(default="", max_length=20000)
    affiliations: list[str] = _json(list)
    template: str = Field(default="", max_length=80)
    last_seq: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class FocusArea(SQLModel, table=True):
    __tablename__ = "focus_area"

    id: int | None = Field(default=None, primary_key=True)
    workshop_id: int = _fk("workshop.id")
    position: int = 0
    title: str = Field(max_length=200)
    prompt: str = Field(default="", max_length=2000)
    kinds: list[str] = _json(lambda: list(CARD_KINDS))
    phase: str = Field(default=Phase.draft.value, max_length=16)
    timer_ends_at: datetime | None = None
    revealed: bool = False
    ratings_enabled: bool = False
    late_cards: bool = False


class Participant(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    workshop_id: int = _fk("workshop.id")
    display_name: str = Field(max_length=NAME_MAX)
    affiliation: str = Field(default="", max_length=200)
    role: str = Field(default=Role.participant.value, max_length=16)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    joined_at: datetime = Field(default_factory=utcnow)


# --- cards, clusters, votes ---------------------------------------------------


Dimension = Literal["politico-military", "economic-environmental", "human"]


class CardContext(SQLModel):
    """Optional facets that make a finding reusable across field operations."""

    dimensions: list[Dimension] = Field(default=[], max_length=3)
    where: str = Field(default="", max_length=200)
    partners: list[str] = []
    crime_areas: list[str] = []
    evidence: str = Field(default="", max_length=FACET_TEXT_MAX)
    human_rights: str = Field(default="", max_length=FACET_TEXT_MAX)

    @field_validator("dimensions")
    @classmethod
    def _once_each(cls, v: list[Dimension]) -> list[Dimension]:
        return list(dict.fromkeys(v))

    @field_validator("partners", "crime_areas")
    @classmethod
    def _short_list(cls, v: list[str]) -> list[str]:
        if len(v) > 20 or any(len(x) > 80 for x in v):
            raise ValueError("at most 20 entries of at most 80 characters")
        return list(dict.fromkeys(x.strip() for x in v if x.strip()))


DIMENSIONS = {
    "politico-military": "Politico-military",
    "economic-environmental": "Economic and environmental",
    "human": "Human",
}
assert set(DIMENSIONS) == set(get_args(Dimension))
PARTNERS = ["UNODC", "Europol", "INTERPOL", "Council of Europe", "Other"]
CRIME_AREAS = [
    "Trafficking in human beings",
    "Drugs",
    "Firearms",
    "Money laundering",
    "Corruption",
    "Cybercrime",
    "Border security",
    "Other",
]


class CardBase(SQLModel):
    kind: CardKind
    title: str = Field(min_length=1, max_length=TITLE_MAX, schema_extra={"pattern": NONBLANK})
    body: str = Field(default="", max_length=BODY_MAX)

    @field_validator("title")
    @classmethod
    def _strip_title(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("a card needs a title")
        return v


class Card(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("author_id", "client_id", name="uq_card_client"),)

    id: int | None = Field(default=None, primary_key=True)
    workshop_id: int = _fk("workshop.id")
    focus_area_id: int = _fk("focus_area.id")
    kind: str = Field(max_length=16)
    title: str = Field(max_length=TITLE_MAX)
    body: str = Field(default="", max_length=BODY_MAX)
    context: dict[str, Any] = _json(dict)
    # Never leaves the server: not in any page, frame, API response or export.
    author_id: int | None = _fk("participant.id", nullable=True, ondelete="SET NULL")
    status: str = Field(default=CardStatus.visible.value, max_length=16)
    cluster_id: int | None = _fk("cluster.id", nullable=True, ondelete="SET NULL")
    merged_into_id: int | None = None
    client_id: str | None = Field(default=None, max_length=64)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class CardCreate(CardBase):
    focus_area_id: JsonInt
    context: CardContext = CardContext()
    client_id: str | None = Field(default=None, max_length=64)


class CardUpdate(SQLModel):
    kind: CardKind | None = None
    title: str | None = Field(
        default=None, min_length=1, max_length=TITLE_MAX, schema_extra={"pattern": NONBLANK}
    )
    body: str | None = Field(default=None, max_length=BODY_MAX)
    context: CardContext | None = None
    status: Literal["hidden", "visible"] | None = None  # the facilitator's moderation


class CardPublic(SQLModel):
    id: int
    focus_area_id: int
    kind: str
    title: str
    body: str
    context: dict[str, Any]
    status: str
    cluster_id: int | None
    merged_into_id: int | None
    version: int
    mine: bool = False


class Cluster(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    workshop_id: int = _fk("workshop.id")
    focus_area_id: int = _fk("focus_area.id")
    title: str = Field(default="", max_length=TITLE_MAX)
    synthesis: str = Field(default="", max_length=BODY_MAX)
    position: int = 0
    is_recommendation: bool = False
    status: str = Field(default="active", max_length=16)  # active | merged | deleted
    merged_into_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ClusterPublic(SQLModel):
    id: int
    focus_area_id: int
    title: str
    synthesis: str
    position: int
    is_recommendation: bool
    status: str


class Vote(SQLModel, table=True):
    """A participant's dots on one card. ``participant_id`` is erased when the
    workshop is anonymized; ``affiliation`` is kept so aggregate breakdowns
    (only ever shown for groups of 3+) survive."""

    __table_args__ = (UniqueConstraint("participant_id", "card_id", name="uq_vote"),)

    id: int | None = Field(default=None, primary_key=True)
    participant_id: int | None = _fk("participant.id", nullable=True, ondelete="SET NULL")
    card_id: int = _fk("card.id")
    focus_area_id: int = _fk("focus_area.id")
    affiliation: str = Field(default="", max_length=200)
    dots: int = 0


class Rating(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("participant_id", "card_id", name="uq_rating"),)

    id: int | None = Field(default=None, primary_key=True)
    participant_id: int | None = _fk("participant.id", nullable=True, ondelete="SET NULL")
    card_id: int = _fk("card.id")
    focus_area_id: int = _fk("focus_area.id")
    impact: int = Field(ge=1, le=5)
    feasibility: int = Field(ge=1, le=5)


class Event(SQLModel, table=True):
    """The outbox and audit trail. Payloads hold ids, never author or text."""

    __table_args__ = (UniqueConstraint("workshop_id", "seq", name="uq_event_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    workshop_id: int = _fk("workshop.id")
    seq: int
    kind: str = Field(max_length=40)
    actor_role: str = Field(default="system", max_length=16)
    payload: dict[str, Any] = _json(dict)
    created_at: datetime = Field(default_factory=utcnow)


# --- API families -----------------------------------------------------------


class FocusAreaIn(SQLModel):
    title: str = Field(min_length=1, max_length=200, schema_extra={"pattern": NONBLANK})
    prompt: str = Field(default="", max_length=2000)
    kinds: list[CardKind] | None = None


class FocusAreaPublic(SQLModel):
    id: int
    position: int
    title: str
    prompt: str
    kinds: list[str]
    phase: str
    timer_ends_at: datetime | None
    revealed: bool
    ratings_enabled: bool


def _template_names(schema: dict[str, Any]) -> None:
    from app.domain.templates import all_templates

    schema["enum"] = [*all_templates(), None]


class WorkshopCreate(SQLModel):
    title: str = Field(min_length=1, max_length=200, schema_extra={"pattern": NONBLANK})
    template: str | None = Field(
        default=None, max_length=80, schema_extra={"json_schema_extra": _template_names}
    )
    date: Date | None = None
    venue: str = Field(default="", max_length=200)
    # Left out: the template's focus areas (or one general one without a template).
    focus_areas: list[FocusAreaIn] | None = Field(default=None, min_length=1, max_length=20)
    settings: WorkshopSettings | None = None

    @field_validator("date", mode="before")
    @classmethod
    def _iso_date(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, str | Date):
            raise ValueError("use a date like 2026-10-15")
        return v

    @field_validator("template")
    @classmethod
    def _known_template(cls, v: str | None) -> str | None:
        from app.domain.templates import all_templates

        if v is not None and v not in all_templates():
            raise ValueError(f"unknown template; known: {', '.join(all_templates())}")
        return v


class WorkshopPublic(SQLModel):
    code: str
    title: str
    date: Date | None
    venue: str
    closed: bool
    joins_locked: bool
    affiliations: list[str]
    focus_areas: list[FocusAreaPublic]


class ParticipantCreate(SQLModel):
    display_name: str = Field(min_length=1, max_length=NAME_MAX, schema_extra={"pattern": NONBLANK})
    affiliation: str = Field(default="", max_length=200)
    facilitator_key: str | None = Field(default=None, max_length=200)

    @field_validator("display_name")
    @classmethod
    def _strip_name(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("please give a display name")
        return v
