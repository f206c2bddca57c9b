"""The JSON archive of a whole workshop (``schema_version`` 1) and its
import as a new, closed workshop. The archive keeps what the outcome needs to
be rebuilt exactly, under the Chatham House rule: no names, no authors, no
actors, no time finer than the day. Participants become numbered pseudonyms
that carry only their affiliation *group*, and groups too small to be shown
(under ``affiliations.MIN_GROUP``) become "Other"; votes point at those
pseudonyms so voter counts and affiliation shares survive; ratings are
aggregated per card. Only visible and merged cards (the ones a document
shows) and the event kinds that provenance uses are kept, with ids replaced by
references local to the file.

No order, no timing: every list is in an order that depends on content only.
Card and cluster references are numbered in content order (rows with the same
content in a fresh random order), votes are listed by card, group, dots and
pseudonym, and pseudonyms are drawn afresh on every export, so the file says
nothing about who joined, wrote or voted when. The events kept are renumbered
1..n in their order, without the gaps other activity left.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import Session, col, select

from app.domain import affiliations
from app.domain.results import Ballot, distinct_voters
from app.models import (
    BODY_MAX,
    CARD_KINDS,
    TITLE_MAX,
    Card,
    CardContext,
    CardStatus,
    Cluster,
    Event,
    FocusArea,
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


class ArchiveWorkshop(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    date: dt.date | None = None
    end_date: dt.date | None = None
    venue: str = Field(default="", max_length=200)
    hosted_by: str = Field(default="", max_length=200)
    executive_summary: str = Field(default="", max_length=20000)
    affiliations: list[str] = []
    template: str = Field(default="", max_length=80)
    settings: WorkshopSettings = WorkshopSettings()


class ArchiveParticipant(BaseModel):
    ref: int
    group: str = Field(default="", max_length=200)
    role: str = Field(default="participant", pattern="^(participant|facilitator)$")


class ArchiveFocusArea(BaseModel):
    ref: int
    position: int = 0
    title: str = Field(min_length=1, max_length=200)
    prompt: str = Field(default="", max_length=2000)
    kinds: list[str] = list(CARD_KINDS)
    ratings_enabled: bool = False


class ArchiveCluster(BaseModel):
    ref: int
    focus_area: int
    title: str = Field(default="", max_length=TITLE_MAX)
    synthesis: str = Field(default="", max_length=BODY_MAX)
    position: int = 0
    is_recommendation: bool = False
    status: str = Field(default="active", pattern="^(active|merged|deleted)$")
    merged_into: int | None = None


class ArchiveCard(BaseModel):
    ref: int
    focus_area: int
    kind: str = Field(pattern="^(" + "|".join(CARD_KINDS) + ")$")
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    body: str = Field(default="", max_length=BODY_MAX)
    context: dict[str, Any] = {}
    status: str = Field(default="visible", pattern="^(visible|merged)$")
    cluster: int | None = None
    merged_into: int | None = None


class ArchiveVote(BaseModel):
    card: int
    voter: int | None = None  # a participant ref; None once anonymized
    group: str = Field(default="", max_length=200)
    dots: int = Field(ge=1, le=50)


class ArchiveRating(BaseModel):
    card: int
    count: int = Field(ge=1)
    impact_sum: int
    feasibility_sum: int


class ArchiveEvent(BaseModel):
    seq: int
    kind: str
    day: dt.date
    payload: dict[str, Any] = {}


class Archive(BaseModel):
    schema_version: int
    workshop: ArchiveWorkshop
    participants: list[ArchiveParticipant] = []
    focus_areas: list[ArchiveFocusArea] = []
    clusters: list[ArchiveCluster] = []
    cards: list[ArchiveCard] = []
    votes: list[ArchiveVote] = []
    ratings: list[ArchiveRating] = []
    events: list[ArchiveEvent] = []


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

    shown = _shown_groups(people, votes)

    def group(affiliation: str) -> str:
        g = affiliations.group_of(affiliation)
        return g if g in shown else affiliations.OTHER

    # Clusters by their content and their cards' content, then cards by
    # theirs, their cluster's reference, their votes and ratings.
    members: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    for k in cards:
        members[k.cluster_id].append(_card_content(k, fa_ref))
    by_cluster = {c.id: c for c in clusters}
    cl_ref = _content_refs(clusters, lambda c: _cluster_key(c, fa_ref, by_cluster, members))
    tally: dict[Any, list[tuple[str, int]]] = defaultdict(list)
    for v in votes:
        tally[v.card_id].append((group(v.affiliation), v.dots))
    by_card = {c.id: c for c in cards}
    card_ref = _content_refs(cards, lambda c: _card_key(c, fa_ref, cl_ref, by_card, tally, ratings))
    # Pseudonyms numbered by group in a random order, drawn afresh per
    # export: join order would let someone who watched people arrive tie
    # numbers (and so ballots) to names.
    shuffled = list(people)
    secrets.SystemRandom().shuffle(shuffled)
    ordered = sorted(shuffled, key=lambda p: group(p[1]))
    p_ref = {pid: i for i, (pid, _a, _r) in enumerate(ordered, start=1)}
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
                    voter=p_ref.get(v.participant_id),
                    group=group(v.affiliation),
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


def _shown_groups(people: Any, votes: Any) -> set[str]:
    """Groups big enough to be named anywhere: at least MIN_GROUP people, or
    at least MIN_GROUP voters in one focus area. Every other group would be
    folded into "Other" by every count, so folding it here changes nothing."""
    sizes = Counter(affiliations.group_of(a) for _pid, a, _r in people)
    ballots: dict[tuple[int, str], list[Ballot]] = defaultdict(list)
    for v in votes:
        g = affiliations.group_of(v.affiliation)
        ballots[(v.focus_area_id, g)].append(Ballot(v.participant_id, v.card_id, g, v.dots))
    for (_fa, g), bs in ballots.items():
        sizes[g] = max(sizes[g], distinct_voters(bs))
    return {g for g, n in sizes.items() if n >= affiliations.MIN_GROUP}


def _event_payload(kind: str, payload: dict[str, Any], refs: dict[str, dict[Any, int]]) -> dict:
    out: dict[str, Any] = {
        k: refs[table].get(payload.get(k)) for k, table in EVENT_REFS[kind].items()
    }
    out.update({k: str(payload.get(k) or "") for k in EVENT_TEXT.get(kind, ())})
    return out


def import_archive(
    session: Session, data: dict[str, Any], *, new_code: str, organizer_id: int | None = None
) -> Workshop:
    """Restore an archive as a new workshop: closed, every focus area closed
    and revealed, with pseudonymous participants that nobody can log in as.
    Raises ``ValueError`` (pydantic's ValidationError) on a malformed file."""
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"unsupported archive schema_version: {data.get('schema_version')!r}")
    arc = Archive.model_validate(data)
    for rec in arc.cards:
        CardContext.model_validate(rec.context)
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
    ids["people"] = _ids(arc.participants, _insert(session, people))
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
            cluster_id=ids["clusters"].get(k.cluster or 0),
        )
        for k in arc.cards
    ]
    ids["cards"] = _ids(arc.cards, _insert(session, cards))
    # Merge targets may come later in the file: linked once all rows exist.
    for row, cl in zip(clusters, arc.clusters, strict=True):
        row.merged_into_id = ids["clusters"].get(cl.merged_into or 0)
    for card, k in zip(cards, arc.cards, strict=True):
        card.merged_into_id = ids["cards"].get(k.merged_into or 0)
    fa_of_card = {c.ref: fa_ids[c.focus_area] for c in arc.cards}
    session.add_all(
        Vote(
            participant_id=ids["people"].get(v.voter or 0),
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
        refs = EVENT_REFS.get(e.kind)
        if refs is None:
            continue
        payload: dict[str, Any] = {k: ids[t].get(e.payload.get(k) or 0) for k, t in refs.items()}
        payload.update({k: str(e.payload.get(k) or "") for k in EVENT_TEXT.get(e.kind, ())})
        day = dt.datetime.combine(e.day, dt.time(), tzinfo=tz)
        session.add(
            Event(workshop_id=ws_id, seq=e.seq, kind=e.kind, payload=payload, created_at=day)
        )
    session.commit()
    return ws


def _insert(session: Session, rows: list[T]) -> list[T]:
    session.add_all(rows)
    session.flush()  # one round of INSERTs; the new ids come back in order
    return rows


def _ids(records: list[Any], rows: list[Any]) -> dict[int, int]:
    """Archive reference -> new database id."""
    return {rec.ref: row.id for rec, row in zip(records, rows, strict=True)}


def _spread(total: int, count: int) -> list[int]:
    """``count`` scores in 1..5 adding up to ``total``: the same mean."""
    base, extra = divmod(total, count)
    return [base + 1] * extra + [base] * (count - extra)
