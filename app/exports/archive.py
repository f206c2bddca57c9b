"""The JSON archive of a whole workshop (``schema_version`` 1) and its
import as a new, closed workshop. The archive keeps what the outcome needs to
be rebuilt exactly, under the Chatham House rule: no names, no authors, no
actors, no time finer than the day. Participants become numbered pseudonyms
that carry only their affiliation *group*, and groups too small to be shown
(the disclosure rule of app/domain/disclosure.py) become "Other"; votes carry
voter pseudonyms of their own so voter counts and affiliation shares
survive, anonymized or not; ratings are
aggregated per card. Only visible and merged cards (the ones a document
shows) and the event kinds that provenance uses are kept, with ids replaced by
references local to the file.

No order, no timing: every list is in an order that depends on content only.
Card and cluster references are numbered in content order (rows with the same
content in a fresh random order), votes are listed by card, group, dots and
pseudonym, and pseudonyms are drawn afresh on every export, so the file says
nothing about who joined, wrote or voted when. The events kept are renumbered
1..n in their order, without the gaps other activity left.

An archive to import is input like any other: ``validate_archive`` checks
all of it (size, nesting, the bounded schema below, every reference) before
``import_archive`` writes anything, in one transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import func
from sqlmodel import Session, col, select

from app.domain import affiliations, disclosure
from app.domain.cards import _clean_context
from app.domain.results import Ballot, distinct_voters, voter_of
from app.domain.workshops import MAX_AFFILIATIONS, MAX_FOCUS_AREAS
from app.models import (
    BODY_MAX,
    CARD_KINDS,
    NUL_MESSAGE,
    TITLE_MAX,
    Card,
    CardContext,
    CardStatus,
    Cluster,
    Event,
    FocusArea,
    JsonInt,
    Participant,
    Phase,
    Rating,
    Vote,
    Workshop,
    WorkshopSettings,
    utcnow,
)

SCHEMA_VERSION = 1
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
R = TypeVar("R", Card, Cluster)
# Payload keys that name rows, and the table each one names.
EVENT_REFS = {
    "focus_area.phase": {"focus_area_id": "focus_areas"},
    "card.moved": {"card_id": "cards", "from_cluster_id": "clusters", "to_cluster_id": "clusters"},
    "card.merged": {"card_id": "cards", "into_card_id": "cards"},
    "cluster.created": {"cluster_id": "clusters", "focus_area_id": "focus_areas"},
    "cluster.merged": {"cluster_id": "clusters", "into_cluster_id": "clusters"},
    "cluster.deleted": {"cluster_id": "clusters"},
}
EVENT_TEXT = {"focus_area.phase": ("phase", "previous")}


# The bounds of an archive, on every list, count, sum, position and text. The
# app's own limits where it has one (MAX_FOCUS_AREAS, MAX_AFFILIATIONS, the
# text lengths of the models); elsewhere several times the largest workshop
# the app is built and measured for (bench/: 2,000 cards, 1,000 people).
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 8  # objects and lists inside each other; an export nests 5 deep
MAX_PARTICIPANTS = 2_000
MAX_CARDS = 10_000
MAX_CLUSTERS = 10_000
MAX_VOTES = 200_000
MAX_RATINGS = 200_000  # rating rows: the counts of all cards added up
MAX_EVENTS = 200_000
MAX_SCORE = 5  # a rating's impact and feasibility are 1..5 (app/domain/votes.py)
KIND = "^(" + "|".join(CARD_KINDS) + ")$"
EVENT_KIND = "^(" + "|".join(re.escape(k) for k in EVENT_REFS) + ")$"
PHASE_NAMES = ("", *(p.value for p in Phase))
LABEL = 200  # an affiliation group, as Participant.affiliation and Vote.affiliation hold it


class ArchiveRecord(BaseModel):
    """A record of the archive: a key it does not define is an error, not
    something to drop quietly (the file would not be what it says)."""

    model_config = ConfigDict(extra="forbid")


class ArchiveWorkshop(ArchiveRecord):
    title: str = Field(min_length=1, max_length=200)
    date: dt.date | None = None
    end_date: dt.date | None = None
    venue: str = Field(default="", max_length=200)
    hosted_by: str = Field(default="", max_length=200)
    executive_summary: str = Field(default="", max_length=20000)
    affiliations: list[Annotated[str, Field(max_length=LABEL)]] = Field(
        default=[], max_length=MAX_AFFILIATIONS
    )
    template: str = Field(default="", max_length=80)
    settings: WorkshopSettings = WorkshopSettings()

    @field_validator("settings", mode="before")
    @classmethod
    def _known_settings(cls, v: Any) -> Any:
        if isinstance(v, dict):
            unknown = sorted(set(v) - set(WorkshopSettings.model_fields), key=str)
            if unknown:
                raise ValueError(f"unknown setting {_shown(unknown[0])}")
        return v


class ArchiveParticipant(ArchiveRecord):
    ref: JsonInt = Field(ge=1, le=MAX_PARTICIPANTS)
    group: str = Field(default="", max_length=LABEL)
    role: str = Field(default="participant", pattern="^(participant|facilitator)$")


class ArchiveFocusArea(ArchiveRecord):
    ref: JsonInt = Field(ge=1, le=MAX_FOCUS_AREAS)
    position: JsonInt = Field(default=0, ge=0, lt=MAX_FOCUS_AREAS)
    title: str = Field(min_length=1, max_length=200)
    prompt: str = Field(default="", max_length=2000)
    kinds: list[Annotated[str, Field(pattern=KIND)]] = Field(
        default=list(CARD_KINDS), min_length=1, max_length=len(CARD_KINDS)
    )
    ratings_enabled: bool = Field(default=False, strict=True)


class ArchiveCluster(ArchiveRecord):
    ref: JsonInt = Field(ge=1, le=MAX_CLUSTERS)
    focus_area: JsonInt = Field(ge=1, le=MAX_FOCUS_AREAS)
    title: str = Field(default="", max_length=TITLE_MAX)
    synthesis: str = Field(default="", max_length=BODY_MAX)
    position: JsonInt = Field(default=0, ge=0, le=MAX_CLUSTERS)
    is_recommendation: bool = Field(default=False, strict=True)
    status: str = Field(default="active", pattern="^(active|merged|deleted)$")
    merged_into: JsonInt | None = Field(default=None, ge=1, le=MAX_CLUSTERS)


class ArchiveCard(ArchiveRecord):
    ref: JsonInt = Field(ge=1, le=MAX_CARDS)
    focus_area: JsonInt = Field(ge=1, le=MAX_FOCUS_AREAS)
    kind: str = Field(pattern=KIND)
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    body: str = Field(default="", max_length=BODY_MAX)
    # Checked on import with the API's own CardContext, unknown keys refused
    # (``_context``); left a plain dict here so that exporting never depends
    # on how an older row's context was written.
    context: dict[str, Any] = {}
    status: str = Field(default="visible", pattern="^(visible|merged)$")
    cluster: JsonInt | None = Field(default=None, ge=1, le=MAX_CLUSTERS)
    merged_into: JsonInt | None = Field(default=None, ge=1, le=MAX_CARDS)


class ArchiveVote(ArchiveRecord):
    card: JsonInt = Field(ge=1, le=MAX_CARDS)
    # A voter pseudonym, drawn afresh per export from the votes' voter keys:
    # its own numbering, not a participant ref, so it survives anonymization
    # and ties no ballot to the participants list.
    voter: JsonInt | None = Field(default=None, ge=1, le=MAX_VOTES)
    group: str = Field(default="", max_length=LABEL)
    dots: JsonInt = Field(ge=1, le=50)


class ArchiveRating(ArchiveRecord):
    """A card's ratings, aggregated: ``count`` scores of 1..5 each, so the
    sums lie in count..5*count (checked on import, with count <= people)."""

    card: JsonInt = Field(ge=1, le=MAX_CARDS)
    count: JsonInt = Field(ge=1, le=MAX_PARTICIPANTS)
    impact_sum: JsonInt = Field(ge=1, le=MAX_SCORE * MAX_PARTICIPANTS)
    feasibility_sum: JsonInt = Field(ge=1, le=MAX_SCORE * MAX_PARTICIPANTS)


class ArchiveEvent(ArchiveRecord):
    seq: JsonInt = Field(ge=1, le=MAX_EVENTS)
    kind: str = Field(pattern=EVENT_KIND)
    day: dt.date
    # Refs (checked on import against EVENT_REFS) and EVENT_TEXT values.
    payload: dict[str, JsonInt | Annotated[str, Field(max_length=16)] | None] = Field(
        default={}, max_length=3
    )


class Archive(ArchiveRecord):
    schema_version: JsonInt
    workshop: ArchiveWorkshop
    participants: list[ArchiveParticipant] = Field(default=[], max_length=MAX_PARTICIPANTS)
    focus_areas: list[ArchiveFocusArea] = Field(default=[], max_length=MAX_FOCUS_AREAS)
    clusters: list[ArchiveCluster] = Field(default=[], max_length=MAX_CLUSTERS)
    cards: list[ArchiveCard] = Field(default=[], max_length=MAX_CARDS)
    votes: list[ArchiveVote] = Field(default=[], max_length=MAX_VOTES)
    ratings: list[ArchiveRating] = Field(default=[], max_length=MAX_CARDS)
    events: list[ArchiveEvent] = Field(default=[], max_length=MAX_EVENTS)


def export_archive(session: Session, workshop_id: int) -> dict[str, Any]:
    """The archive of a workshop. Every list is in an order that depends on
    content only, never on ids or on when a row was written: references are
    numbered in that order, pseudonyms are drawn afresh for every export, and
    the events kept are renumbered 1..n (section 4, "No order, no timing")."""
    ws = session.get(Workshop, workshop_id)
    if ws is None:
        raise LookupError(f"workshop {workshop_id} not found")
    # Focus areas in the documents' order; positions become 0..n-1, so that an
    # import restores exactly that order.
    areas = session.exec(
        select(FocusArea)
        .where(FocusArea.workshop_id == workshop_id)
        .order_by(col(FocusArea.position), col(FocusArea.id))
    ).all()
    clusters = session.exec(select(Cluster).where(Cluster.workshop_id == workshop_id)).all()
    cards = session.exec(
        select(Card).where(
            Card.workshop_id == workshop_id,
            col(Card.status).in_([CardStatus.visible.value, CardStatus.merged.value]),
        )
    ).all()
    people = session.exec(
        select(Participant.id, Participant.affiliation, Participant.role).where(
            Participant.workshop_id == workshop_id
        )
    ).all()
    fa_ref = {fa.id: i for i, fa in enumerate(areas, start=1)}
    card_ids = {c.id for c in cards}
    # Filtered by focus area in SQL and by card here: a 2,000-id IN list
    # would hit SQLite's parameter limit.
    votes = [
        v
        for v in session.exec(
            select(Vote).where(col(Vote.focus_area_id).in_(list(fa_ref)), col(Vote.dots) > 0)
        ).all()
        if v.card_id in card_ids
    ]
    ratings = {
        cid: (int(n), int(si), int(sf))
        for cid, n, si, sf in session.exec(
            select(
                Rating.card_id, func.count(), func.sum(Rating.impact), func.sum(Rating.feasibility)
            )
            .where(col(Rating.focus_area_id).in_(list(fa_ref)))
            .group_by(col(Rating.card_id))
        ).all()
        if cid in card_ids
    }
    events = [
        e
        for e in session.exec(
            select(Event)
            .where(Event.workshop_id == workshop_id, col(Event.kind).in_(EVENT_REFS))
            .order_by(col(Event.seq))
        ).all()
        if _kept(e)
    ]

    # Groups under the disclosure rule: a participant's group by the people
    # of the workshop, a vote's by the voters of its focus area (the sizes
    # the results protect, so an import publishes the same breakdowns).
    person_label = disclosure.labels(Counter(affiliations.group_of(a) for _p, a, _r in people))
    vote_label = _vote_labels(votes)

    def group(affiliation: str) -> str:
        return person_label.get(affiliations.group_of(affiliation), affiliations.OTHER)

    def vote_group(v: Vote) -> str:
        return vote_label[(v.focus_area_id, affiliations.group_of(v.affiliation))]

    # Clusters by their content and their cards' content, then cards by
    # theirs, their cluster's reference, their votes and ratings.
    members: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    for k in cards:
        members[k.cluster_id].append(_card_content(k, fa_ref))
    by_cluster = {c.id: c for c in clusters}
    cl_ref = _content_refs(clusters, lambda c: _cluster_key(c, fa_ref, by_cluster, members))
    tally: dict[Any, list[tuple[str, int]]] = defaultdict(list)
    for v in votes:
        tally[v.card_id].append((vote_group(v), v.dots))
    by_card = {c.id: c for c in cards}
    card_ref = _content_refs(cards, lambda c: _card_key(c, fa_ref, cl_ref, by_card, tally, ratings))
    # Pseudonyms numbered by group in a random order, drawn afresh per
    # export: join order would let someone who watched people arrive tie
    # numbers (and so ballots) to names.
    shuffled = list(people)
    secrets.SystemRandom().shuffle(shuffled)
    ordered = sorted(shuffled, key=lambda p: group(p[1]))
    p_ref = {pid: i for i, (pid, _a, _r) in enumerate(ordered, start=1)}
    voters = sorted({key for v in votes if (key := voter_of(v)) is not None})
    secrets.SystemRandom().shuffle(voters)
    v_ref = {k: i for i, k in enumerate(voters, start=1)}
    refs = {"focus_areas": fa_ref, "clusters": cl_ref, "cards": card_ref}
    arc = Archive(
        schema_version=SCHEMA_VERSION,
        workshop=_pick(
            ArchiveWorkshop, ws, settings=WorkshopSettings.model_validate(ws.model_dump())
        ),
        participants=[
            ArchiveParticipant(ref=p_ref[pid], group=group(a), role=r) for pid, a, r in ordered
        ],
        focus_areas=[
            _pick(ArchiveFocusArea, fa, ref=fa_ref[fa.id], position=i) for i, fa in enumerate(areas)
        ],
        clusters=[
            _pick(
                ArchiveCluster,
                c,
                ref=cl_ref[c.id],
                focus_area=fa_ref[c.focus_area_id],
                merged_into=cl_ref.get(c.merged_into_id),
            )
            for c in sorted(clusters, key=lambda c: cl_ref[c.id])
        ],
        cards=[
            _pick(
                ArchiveCard,
                c,
                ref=card_ref[c.id],
                focus_area=fa_ref[c.focus_area_id],
                cluster=cl_ref.get(c.cluster_id),
                merged_into=card_ref.get(c.merged_into_id),
            )
            for c in sorted(cards, key=lambda c: card_ref[c.id])
        ],
        # By card, group, dots and the fresh pseudonym: never in the order
        # the votes were cast, which would name every voter to someone who
        # saw people vote one after another.
        votes=sorted(
            (
                ArchiveVote(
                    card=card_ref[v.card_id],
                    voter=v_ref.get(voter_of(v) or ""),
                    group=vote_group(v),
                    dots=v.dots,
                )
                for v in votes
            ),
            key=lambda v: (v.card, v.group, v.dots, v.voter or 0),
        ),
        ratings=[
            ArchiveRating(card=card_ref[cid], count=n, impact_sum=si, feasibility_sum=sf)
            for cid, (n, si, sf) in sorted(ratings.items(), key=lambda kv: card_ref[kv[0]])
        ],
        # Renumbered: gaps would show how much else (exports, edits, votes)
        # happened in between.
        events=[
            ArchiveEvent(
                seq=seq,
                kind=e.kind,
                day=e.created_at.date(),
                payload=_event_payload(e.kind, e.payload, refs),
            )
            for seq, e in enumerate(events, start=1)
        ],
    )
    return arc.model_dump(mode="json")


def _kept(e: Event) -> bool:
    """A card's first placement in a cluster replays the order cards came in
    (a facilitator sorting them as they arrive), and nothing reads it:
    provenance reports moves between clusters only."""
    return not (e.kind == "card.moved" and e.payload.get("from_cluster_id") is None)


def _content_refs(rows: Sequence[R], key: Callable[[R], Any]) -> dict[Any, int]:
    """References 1..n in content order. Rows whose content is the same are
    shuffled first, so that even then the numbers do not follow their ids."""
    shuffled = list(rows)
    secrets.SystemRandom().shuffle(shuffled)
    return {row.id: i for i, row in enumerate(sorted(shuffled, key=key), start=1)}


def _text_key(text: str | None) -> tuple[str, str]:
    text = text or ""
    return (text.casefold(), text)


def _cluster_content(c: Cluster, fa_ref: dict[Any, int]) -> tuple[Any, ...]:
    return (
        fa_ref.get(c.focus_area_id, 0),
        c.position,
        _text_key(c.title),
        _text_key(c.synthesis),
        c.is_recommendation,
        c.status,
    )


def _card_content(c: Card, fa_ref: dict[Any, int]) -> tuple[Any, ...]:
    return (
        fa_ref.get(c.focus_area_id, 0),
        CARD_KINDS.index(c.kind) if c.kind in CARD_KINDS else len(CARD_KINDS),
        c.kind,
        _text_key(c.title),
        _text_key(c.body),
        json.dumps(c.context or {}, sort_keys=True, ensure_ascii=False),
        c.status,
    )


def _cluster_key(
    c: Cluster,
    fa_ref: dict[Any, int],
    by_id: dict[Any, Cluster],
    members: dict[Any, list[tuple[Any, ...]]],
) -> tuple[Any, ...]:
    into = by_id.get(c.merged_into_id)
    return (
        _cluster_content(c, fa_ref),
        _cluster_content(into, fa_ref) if into is not None else (),
        sorted(members.get(c.id, [])),
    )


def _card_key(
    c: Card,
    fa_ref: dict[Any, int],
    cl_ref: dict[Any, int],
    by_id: dict[Any, Card],
    tally: dict[Any, list[tuple[str, int]]],
    ratings: dict[Any, tuple[int, int, int]],
) -> tuple[Any, ...]:
    into = by_id.get(c.merged_into_id)
    return (
        _card_content(c, fa_ref),
        cl_ref.get(c.cluster_id, 0),
        _card_content(into, fa_ref) if into is not None else (),
        sorted(tally.get(c.id, [])),
        ratings.get(c.id, (0, 0, 0)),
    )


def _pick(model: type[M], row: Any, **given: Any) -> M:
    """An archive record from a table row: the fields both share, plus ``given``."""
    fields = {k: getattr(row, k) for k in model.model_fields if k not in given and hasattr(row, k)}
    return model.model_validate({**fields, **given})


def _vote_labels(votes: Any) -> dict[tuple[int, str], str]:
    """(focus area, group) -> the label its votes are published under."""
    ballots: dict[int, dict[str, list[Ballot]]] = defaultdict(lambda: defaultdict(list))
    for v in votes:
        g = affiliations.group_of(v.affiliation)
        ballots[v.focus_area_id][g].append(Ballot(voter_of(v), v.card_id, g, v.dots))
    out: dict[tuple[int, str], str] = {}
    for fa_id, groups in ballots.items():
        sizes = {g: distinct_voters(bs) for g, bs in groups.items()}
        out.update({(fa_id, g): label for g, label in disclosure.labels(sizes).items()})
    return out


def _event_payload(kind: str, payload: dict[str, Any], refs: dict[str, dict[Any, int]]) -> dict:
    out: dict[str, Any] = {
        k: refs[table].get(payload.get(k)) for k, table in EVENT_REFS[kind].items()
    }
    out.update({k: str(payload.get(k) or "") for k in EVENT_TEXT.get(kind, ())})
    return out


class ArchiveError(ValueError):
    """What is wrong with an archive, in one line: where, then what
    (``votes[3].card: no card with ref 999``)."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)


def read_archive(path: Path, *, max_bytes: int | None = None) -> Any:
    """The parsed JSON of an archive file, read no further than the size limit."""
    limit = MAX_ARCHIVE_BYTES if max_bytes is None else max_bytes
    with path.open("rb") as fh:
        raw = fh.read(limit + 1)
    return parse_archive(raw, max_bytes=limit)


def parse_archive(raw: bytes, *, max_bytes: int | None = None) -> Any:
    """The parsed JSON of an archive, or ``ArchiveError``: too large, not
    UTF-8, not JSON (NaN and Infinity are not JSON), or nested so deeply that
    the parser gives up (100,000 brackets make ``json`` recurse to its limit)."""
    limit = MAX_ARCHIVE_BYTES if max_bytes is None else max_bytes
    if len(raw) > limit:
        raise ArchiveError("", f"the file is larger than {limit:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArchiveError("", f"not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise ArchiveError("", f"nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise ArchiveError("", f"not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except ValueError as exc:  # a number of more than 4,300 digits, NaN
        raise ArchiveError("", f"not valid JSON ({_one_line(str(exc), 120)})") from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def validate_archive(data: Any) -> Archive:
    """The archive, checked like any other input before anything is written:
    text a database can store, nesting, the schema's types and bounds, then
    what the schema cannot say alone (references, duplicates, counts against
    the participants, dots against the vote cap, the card context as the API
    takes it). Raises ``ArchiveError``, or pydantic's ``ValidationError`` for
    a record that breaks the schema; ``describe_error`` turns either into one
    line."""
    if not isinstance(data, dict):
        raise ArchiveError("", "an archive is a JSON object with a workshop")
    _scan(data)
    version = data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ArchiveError(
            "schema_version",
            f"unsupported archive schema_version {_shown(version)} (this version reads "
            f"{SCHEMA_VERSION})",
        )
    arc = Archive.model_validate(data)
    _check(arc)
    return arc


def describe_error(exc: ValueError) -> str:
    """One line that says where an archive is wrong and what is wrong there."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False)
        if errors:
            first = errors[0]
            loc, msg = first["loc"], first["msg"]
            if first["type"] == "extra_forbidden" and loc:
                loc, msg = loc[:-1], f"unknown key {_shown(loc[-1])}"
            where = _where(loc)
            text = f"{where}: {msg}" if where else msg
            if len(errors) > 1:
                more = len(errors) - 1
                text += f" (and {more} more problem{'s' if more > 1 else ''})"
            return _one_line(text)
    return _one_line(str(exc))


def import_archive(
    session: Session, data: Any, *, new_code: str, organizer_id: int | None = None
) -> Workshop:
    """Restore an archive as a new workshop: closed, every focus area closed
    and revealed, with pseudonymous participants that nobody can log in as.
    The whole archive is validated first (``validate_archive``: a
    ``ValueError`` naming the problem), then written in one transaction: a
    failure writes nothing, and rolls ``session`` back."""
    arc = validate_archive(data)
    try:
        ws = _write(session, arc, new_code=new_code, organizer_id=organizer_id)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return ws


# --- checks -----------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# NUL: PostgreSQL refuses it in text (app/models.py, nul_free); a lone
# surrogate cannot be encoded as UTF-8 by either database driver.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where(loc: Sequence[int | str], out: str = "") -> str:
    """A location as the file spells it: ``votes[3].card``, after ``out``."""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _NAME.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{_shown(part)}]"
    return out


def _scan(data: dict[str, Any]) -> None:
    """Nesting depth and text, walked without recursion before the schema
    sees anything (pydantic and the JSON columns would recurse)."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            raise ArchiveError(_where(path), f"nested more than {MAX_DEPTH} levels deep")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            at = (*path, key)
            if isinstance(key, str) and _UNSTORABLE.search(key):
                raise ArchiveError(_where(at), "a key that no database can store")
            if isinstance(value, str):
                if "\x00" in value:
                    raise ArchiveError(_where(at), NUL_MESSAGE)
                if _UNSTORABLE.search(value):
                    raise ArchiveError(_where(at), "cannot contain a lone surrogate (not text)")
            elif isinstance(value, dict | list | tuple):
                stack.append((value, at))


def _refs(records: Sequence[Any], section: str) -> dict[int, Any]:
    """ref -> record, refusing a ref used twice."""
    out: dict[int, Any] = {}
    first: dict[int, int] = {}
    for i, rec in enumerate(records):
        if rec.ref in out:
            raise ArchiveError(
                f"{section}[{i}].ref", f"duplicate ref {rec.ref} (also {section}[{first[rec.ref]}])"
            )
        out[rec.ref] = rec
        first[rec.ref] = i
    return out


def _resolve(table: dict[int, Any], ref: int, where: str, label: str) -> Any:
    rec = table.get(ref)
    if rec is None:
        raise ArchiveError(where, f"no {label} with ref {ref}")
    return rec


def _merge_target(table: dict[int, Any], rec: Any, where: str, label: str) -> None:
    if rec.merged_into is None:
        return
    into = _resolve(table, rec.merged_into, where, label)
    if into is rec:
        raise ArchiveError(where, f"a {label} cannot be merged into itself")
    if into.focus_area != rec.focus_area:
        raise ArchiveError(
            where,
            f"{label} {into.ref} is in focus area {into.focus_area}, this {label} in "
            f"{rec.focus_area}",
        )


def _acyclic(records: Sequence[Any], section: str) -> None:
    """Merges end somewhere: no chain of merged_into comes back round."""
    parent = {rec.ref: rec.merged_into for rec in records}
    done: set[int] = set()
    for i, rec in enumerate(records):
        chain: dict[int, None] = {}  # in order, and quick to look up
        node: int | None = rec.ref
        while node is not None and node not in done:
            if node in chain:
                loop = list(chain)[list(chain).index(node) :]
                raise ArchiveError(
                    f"{section}[{i}].merged_into",
                    f"the merges go round in a circle ({', '.join(map(str, loop[:5]))})",
                )
            chain[node] = None
            node = parent.get(node)
        done.update(chain)


def _context(value: dict[str, Any], where: str) -> dict[str, Any]:
    """A card's context as the API takes it (CardContext), unknown keys
    refused, stored as the API stores it."""
    unknown = sorted(set(value) - set(CardContext.model_fields))
    if unknown:
        known = ", ".join(CardContext.model_fields)
        raise ArchiveError(where, f"unknown key {_shown(unknown[0])} (a context has {known})")
    try:
        ctx = CardContext.model_validate(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        raise ArchiveError(_where(first["loc"], where), first["msg"]) from None
    return _clean_context(ctx)


def _check(arc: Archive) -> None:
    """What the schema cannot say record by record. The first problem, in
    file order, is raised as an ``ArchiveError``."""
    people = len(arc.participants)
    _refs(arc.participants, "participants")
    areas = _refs(arc.focus_areas, "focus_areas")
    positions: dict[int, int] = {}
    for i, fa in enumerate(arc.focus_areas):
        if fa.position in positions:
            raise ArchiveError(
                f"focus_areas[{i}].position",
                f"duplicate position {fa.position} (also focus_areas[{positions[fa.position]}])",
            )
        positions[fa.position] = i
        if len(set(fa.kinds)) != len(fa.kinds):
            raise ArchiveError(f"focus_areas[{i}].kinds", "a kind is listed twice")

    clusters = _refs(arc.clusters, "clusters")
    for i, cl in enumerate(arc.clusters):
        _resolve(areas, cl.focus_area, f"clusters[{i}].focus_area", "focus area")
        _merge_target(clusters, cl, f"clusters[{i}].merged_into", "cluster")
    _acyclic(arc.clusters, "clusters")

    cards = _refs(arc.cards, "cards")
    for i, card in enumerate(arc.cards):
        _resolve(areas, card.focus_area, f"cards[{i}].focus_area", "focus area")
        if card.cluster is not None:
            cl = _resolve(clusters, card.cluster, f"cards[{i}].cluster", "cluster")
            if cl.focus_area != card.focus_area:
                raise ArchiveError(
                    f"cards[{i}].cluster",
                    f"cluster {cl.ref} is in focus area {cl.focus_area}, the card in "
                    f"{card.focus_area}",
                )
        _merge_target(cards, card, f"cards[{i}].merged_into", "card")
        card.context = _context(card.context, f"cards[{i}].context")
    _acyclic(arc.cards, "cards")

    # Dots are bounded by the schema, not by the workshop's vote cap: an
    # organizer may lower the cap after votes were cast, and an honest export
    # of that workshop must still import.
    ballots: dict[tuple[int, int], int] = {}
    for i, v in enumerate(arc.votes):
        _resolve(cards, v.card, f"votes[{i}].card", "card")
        if v.voter is not None:
            if (v.voter, v.card) in ballots:
                raise ArchiveError(
                    f"votes[{i}]",
                    f"voter {v.voter} votes on card {v.card} twice "
                    f"(also votes[{ballots[v.voter, v.card]}])",
                )
            ballots[v.voter, v.card] = i

    rated: dict[int, int] = {}
    for i, r in enumerate(arc.ratings):
        _resolve(cards, r.card, f"ratings[{i}].card", "card")
        if r.card in rated:
            raise ArchiveError(
                f"ratings[{i}].card",
                f"card {r.card} is rated twice (also ratings[{rated[r.card]}])",
            )
        rated[r.card] = i
        if r.count > people:
            raise ArchiveError(
                f"ratings[{i}].count", f"{r.count} ratings but {people} participants"
            )
        for name in ("impact_sum", "feasibility_sum"):
            total = getattr(r, name)
            if not r.count <= total <= MAX_SCORE * r.count:
                raise ArchiveError(
                    f"ratings[{i}].{name}",
                    f"{total} is not a sum of {r.count} scores from 1 to {MAX_SCORE} "
                    f"({r.count} to {MAX_SCORE * r.count})",
                )
    rows = sum(r.count for r in arc.ratings)
    if rows > MAX_RATINGS:
        raise ArchiveError("ratings", f"{rows:,} ratings in all; at most {MAX_RATINGS:,}")

    tables: dict[str, tuple[dict[int, Any], str]] = {
        "focus_areas": (areas, "focus area"),
        "clusters": (clusters, "cluster"),
        "cards": (cards, "card"),
    }
    seqs: dict[int, int] = {}
    for i, e in enumerate(arc.events):
        if e.seq in seqs:
            raise ArchiveError(
                f"events[{i}].seq", f"duplicate seq {e.seq} (also events[{seqs[e.seq]}])"
            )
        seqs[e.seq] = i
        refs, texts = EVENT_REFS[e.kind], EVENT_TEXT.get(e.kind, ())
        unknown = sorted(set(e.payload) - set(refs) - set(texts))
        if unknown:
            raise ArchiveError(
                f"events[{i}].payload", f"unknown key {_shown(unknown[0])} in a {e.kind} event"
            )
        for key, value in e.payload.items():
            at = f"events[{i}].payload.{key}"
            if key in texts:
                if value is not None and value not in PHASE_NAMES:
                    raise ArchiveError(at, f"{_shown(value)} is not a phase")
            elif value is not None:
                if not isinstance(value, int):
                    raise ArchiveError(at, "a ref is a whole number (or null)")
                table, label = tables[refs[key]]
                _resolve(table, value, at, label)


# --- writing ------------------------------------------------------------------


def _write(session: Session, arc: Archive, *, new_code: str, organizer_id: int | None) -> Workshop:
    """The rows of a validated archive: one row per record, one rating row per
    counted rating, nothing else."""
    w = arc.workshop
    ws = Workshop(
        **w.model_dump(exclude={"settings"}),
        **w.settings.model_dump(),
        code=new_code,
        organizer_id=organizer_id,
        closed=True,
        closed_at=utcnow(),
        last_seq=max((e.seq for e in arc.events), default=0),
    )
    ws_id = _insert(session, [ws])[0].id or 0
    ids: dict[str, dict[int, int]] = {}
    # Nobody can log in as an imported participant: the token is thrown away.
    people = [
        Participant(
            workshop_id=ws_id,
            display_name=f"Participant {p.ref}",
            affiliation=p.group,
            role=p.role,
            token_hash=hashlib.sha256(secrets.token_bytes(32)).hexdigest(),
        )
        for p in arc.participants
    ]
    _insert(session, people)
    areas = [
        FocusArea(
            **fa.model_dump(mode="json", exclude={"ref"}),
            workshop_id=ws_id,
            phase=Phase.closed.value,
            revealed=True,
        )
        for fa in arc.focus_areas
    ]
    ids["focus_areas"] = _ids(arc.focus_areas, _insert(session, areas))
    fa_ids = ids["focus_areas"]
    clusters = [
        Cluster(
            **c.model_dump(exclude={"ref", "focus_area", "merged_into"}),
            workshop_id=ws_id,
            focus_area_id=fa_ids[c.focus_area],
        )
        for c in arc.clusters
    ]
    ids["clusters"] = _ids(arc.clusters, _insert(session, clusters))
    cards = [
        Card(
            **k.model_dump(exclude={"ref", "focus_area", "cluster", "merged_into"}),
            workshop_id=ws_id,
            focus_area_id=fa_ids[k.focus_area],
            cluster_id=_ref(ids["clusters"], k.cluster),
        )
        for k in arc.cards
    ]
    ids["cards"] = _ids(arc.cards, _insert(session, cards))
    # Merge targets may come later in the file: linked once all rows exist.
    for row, cl in zip(clusters, arc.clusters, strict=True):
        row.merged_into_id = _ref(ids["clusters"], cl.merged_into)
    for card, k in zip(cards, arc.cards, strict=True):
        card.merged_into_id = _ref(ids["cards"], k.merged_into)
    fa_of_card = {c.ref: fa_ids[c.focus_area] for c in arc.cards}
    session.add_all(
        Vote(
            voter_key=f"a{v.voter}" if v.voter is not None else None,
            card_id=ids["cards"][v.card],
            focus_area_id=fa_of_card[v.card],
            affiliation=v.group,
            dots=v.dots,
        )
        for v in arc.votes
    )
    session.add_all(
        Rating(
            card_id=ids["cards"][r.card], focus_area_id=fa_of_card[r.card], impact=i, feasibility=f
        )
        for r in arc.ratings
        for i, f in zip(
            _spread(r.impact_sum, r.count), _spread(r.feasibility_sum, r.count), strict=True
        )
    )
    tz = utcnow().tzinfo
    for e in arc.events:
        refs = EVENT_REFS[e.kind]
        payload: dict[str, Any] = {k: _ref(ids[t], _int(e.payload.get(k))) for k, t in refs.items()}
        payload.update({k: str(e.payload.get(k) or "") for k in EVENT_TEXT.get(e.kind, ())})
        day = dt.datetime.combine(e.day, dt.time(), tzinfo=tz)
        session.add(
            Event(workshop_id=ws_id, seq=e.seq, kind=e.kind, payload=payload, created_at=day)
        )
    session.flush()
    return ws


def _ref(ids: dict[int, int], ref: int | None) -> int | None:
    """The new id of a resolved reference (``_check`` made sure it exists)."""
    return None if ref is None else ids[ref]


def _int(value: int | str | None) -> int | None:
    return value if isinstance(value, int) else None


def _insert(session: Session, rows: list[T]) -> list[T]:
    session.add_all(rows)
    session.flush()  # one round of INSERTs; the new ids come back in order
    return rows


def _ids(records: list[Any], rows: list[Any]) -> dict[int, int]:
    """Archive reference -> new database id."""
    return {rec.ref: row.id for rec, row in zip(records, rows, strict=True)}


def _spread(total: int, count: int) -> list[int]:
    """``count`` scores adding up to ``total``, the same mean; each in 1..5
    because ``_check`` keeps ``total`` within count..5*count."""
    base, extra = divmod(total, count)
    return [base + 1] * extra + [base] * (count - extra)
