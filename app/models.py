"""The tables and the model families that cross the API.

A ``*Public`` model never carries an author or participant id: the Chatham
House rule is enforced by what these models can hold, not by remembering to
drop a field. Tables use plain ids; JSON columns hold small lists and dicts
(kinds, context facets, affiliation list) that are never queried inside.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from datetime import date as Date
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, ConfigDict, field_validator, model_validator
from sqlalchemy import JSON, Column, ForeignKey, Integer, UniqueConstraint, event, inspect
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import UOWTransaction
from sqlmodel import Field, SQLModel

from app.domain.errors import Invalid

TITLE_MAX = 140
BODY_MAX = 4000
FACET_TEXT_MAX = 1000
NAME_MAX = 80
# Text fields that are stripped must hold something besides spaces; the schema says so.
NONBLANK = r"\S"


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- what every input obeys -------------------------------------------------

NUL_MESSAGE = "cannot contain a NUL character"
# The JSON Schema's word for the same rule (ECMA-262 and Python read \u0000 alike).
NUL_FREE = r"^[^\u0000]*$"
NONBLANK_NUL_FREE = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"


def nul_free(value: Any) -> bool:
    """True unless ``value`` (text, or text inside lists and dicts) holds
    U+0000. PostgreSQL refuses it in text columns, SQLite stores it: we
    refuse it everywhere (JSON columns too), so both databases hold and
    answer the same."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, list | tuple):
        return all(nul_free(v) for v in value)
    if isinstance(value, dict):
        return all(nul_free(k) and nul_free(v) for k, v in value.items())
    return True


def _document_input(schema: dict[str, Any], cls: type) -> None:
    """Say in the JSON Schema what ``Input`` enforces: optional fields take
    null, and no text holds a NUL character."""
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        _nul_free_strings(prop)
        if name not in required and not _nullable(prop):
            outer = ("title", "description", "default")
            nested = {k: prop.pop(k) for k in list(prop) if k not in outer}
            prop["anyOf"] = [nested, {"type": "null"}]


def _nullable(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(_nullable(p) for p in prop.get("anyOf", ()))


def _nul_free_strings(prop: dict[str, Any]) -> None:
    if prop.get("type") == "string" and "enum" not in prop and "format" not in prop:
        prop["pattern"] = NONBLANK_NUL_FREE if prop.get("pattern") == NONBLANK else NUL_FREE
    for sub in (*prop.get("anyOf", ()), *([prop["items"]] if "items" in prop else [])):
        _nul_free_strings(sub)


class Input(SQLModel):
    """The base of every model that takes input, from JSON or from a form.
    Its two rules hold for every field, including ones added later:

    - JSON ``null`` for a field that has a default means "not given": the
      field takes its default and stays unset, so an update applied with
      ``model_dump(exclude_unset=True)`` leaves it as it is (null never
      erases). A required field keeps null as its own value where it takes
      one (``ClusterTarget.cluster_id``: out of any cluster) or refuses it.
    - No text holds U+0000 (see ``nul_free``); the answer is a 422 naming the
      field, on either database. ``_refuse_nul_on_flush`` below is the net
      under it, for text that reaches a row without one of these models.

    The JSON Schema says both (``_document_input``), so API clients and the
    schema tests see the same rules the server applies.
    """

    # SQLModel types its config as its own TypedDict (ConfigDict plus table
    # options); pydantic merges this into it, from_attributes and all.
    model_config = ConfigDict(json_schema_extra=_document_input)  # type: ignore[assignment]

    @model_validator(mode="before")
    @classmethod
    def _null_is_not_given(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            k: v
            for k, v in data.items()
            if v is not None or k not in fields or fields[k].is_required()
        }

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if not nul_free(value):
            raise ValueError(NUL_MESSAGE)
        return value


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


def _table_args(*constraints: Any) -> Any:
    """Every table's ``__table_args__``: ids are never given twice. PostgreSQL
    sequences never go back; SQLite, without AUTOINCREMENT, gives the id of
    the newest row deleted to the next row inserted (a deleted workshop's id
    to the next workshop, and so on down its cards and participants). With it,
    SQLite remembers the largest id ever given (table ``sqlite_sequence``)."""
    return (*constraints, {"sqlite_autoincrement": True})


def new_uid() -> str:
    """A workshop's identity: 128 random bits, never derived from its id. Link
    keys, cookie names, socket groups, broker messages and prepared files are
    keyed by it, so nothing of a deleted workshop can apply to another."""
    return secrets.token_hex(16)


# --- organizers -------------------------------------------------------------


class Organizer(SQLModel, table=True):
    __table_args__ = _table_args()

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=NAME_MAX, unique=True, index=True)
    password_hash: str
    created_at: datetime = Field(default_factory=utcnow)


class AuthSession(SQLModel, table=True):
    """An organizer's login: a browser session cookie or an API bearer token.
    Only the SHA-256 of the token is stored."""

    __table_args__ = _table_args()

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


class WorkshopSettings(Input):
    private_writing: bool = Field(default=False, schema_extra=STRICT)
    vote_budget: JsonInt = Field(default=5, ge=1, le=50)
    vote_cap: JsonInt = Field(default=3, ge=1, le=50)
    blind_voting: bool = Field(default=True, schema_extra=STRICT)
    anonymize_on_close: bool = Field(default=True, schema_extra=STRICT)
    classification: str = Field(default="", max_length=80)
    participant_annex: bool = Field(default=False, schema_extra=STRICT)


class Workshop(WorkshopSettings, table=True):
    __table_args__ = _table_args()

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(default_factory=new_uid, max_length=32, unique=True, index=True)
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
    # What closing changed, so reopening can put it back: each focus area's
    # phase and the join lock before the close. None while open.
    reopen_state: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class FocusArea(SQLModel, table=True):
    __tablename__ = "focus_area"
    __table_args__ = _table_args()

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
    __table_args__ = _table_args()

    id: int | None = Field(default=None, primary_key=True)
    workshop_id: int = _fk("workshop.id")
    display_name: str = Field(max_length=NAME_MAX)
    affiliation: str = Field(default="", max_length=200)
    role: str = Field(default=Role.participant.value, max_length=16)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    # A random key that this person's votes carry, so results count people
    # (not vote rows) after anonymize-on-close erases ``Vote.participant_id``;
    # erased from here on close, so it no longer leads back to the person.
    voter_key: str | None = Field(default=None, max_length=32)
    joined_at: datetime = Field(default_factory=utcnow)


# --- cards, clusters, votes ---------------------------------------------------


Dimension = Literal["politico-military", "economic-environmental", "human"]


class CardContext(Input):
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


class CardBase(Input):
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
    __table_args__ = _table_args(UniqueConstraint("author_id", "client_id", name="uq_card_client"))

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


class CardUpdate(Input):
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
    __table_args__ = _table_args()

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

    __table_args__ = _table_args(UniqueConstraint("participant_id", "card_id", name="uq_vote"))

    id: int | None = Field(default=None, primary_key=True)
    participant_id: int | None = _fk("participant.id", nullable=True, ondelete="SET NULL")
    card_id: int = _fk("card.id")
    focus_area_id: int = _fk("focus_area.id")
    affiliation: str = Field(default="", max_length=200)
    voter_key: str | None = Field(default=None, max_length=32, index=True)
    dots: int = 0


class Rating(SQLModel, table=True):
    __table_args__ = _table_args(UniqueConstraint("participant_id", "card_id", name="uq_rating"))

    id: int | None = Field(default=None, primary_key=True)
    participant_id: int | None = _fk("participant.id", nullable=True, ondelete="SET NULL")
    card_id: int = _fk("card.id")
    focus_area_id: int = _fk("focus_area.id")
    impact: int = Field(ge=1, le=5)
    feasibility: int = Field(ge=1, le=5)


class Event(SQLModel, table=True):
    """The outbox and audit trail. Payloads hold ids, never author or text."""

    __table_args__ = _table_args(UniqueConstraint("workshop_id", "seq", name="uq_event_seq"))

    id: int | None = Field(default=None, primary_key=True)
    workshop_id: int = _fk("workshop.id")
    seq: int
    kind: str = Field(max_length=40)
    actor_role: str = Field(default="system", max_length=16)
    payload: dict[str, Any] = _json(dict)
    created_at: datetime = Field(default_factory=utcnow)


# --- API families -----------------------------------------------------------


class FocusAreaIn(Input):
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


class WorkshopCreate(Input):
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


class ParticipantCreate(Input):
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


# --- the net under the input models -----------------------------------------


@event.listens_for(OrmSession, "before_flush")
def _refuse_nul_on_flush(session: OrmSession, context: UOWTransaction, instances: Any) -> None:
    """Refuse a NUL character in any text a flush would write, whichever way
    it came (a form into a domain function, an archive import, the command
    line): without this, SQLite stores it and PostgreSQL answers a database
    error, so the same request would do two different things. Only values
    this flush writes are looked at, so an old row is never blocked."""
    rows = [(obj, True) for obj in session.new] + [(obj, False) for obj in session.dirty]
    for obj, new in rows:
        state = inspect(obj)
        for attr in state.mapper.column_attrs:
            if new:
                written = [state.dict.get(attr.key)]
            else:
                written = list(state.attrs[attr.key].history.added)
            if not nul_free(written):
                label = attr.key.replace("_", " ").capitalize()
                raise Invalid(f"{label}: {NUL_MESSAGE}.", field=attr.key)
