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
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections import Counter, defaultdict
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
    ws = session.get(Workshop, workshop_id)
    if ws is None:
        raise LookupError(f"workshop {workshop_id} not found")
    areas = session.exec(
        select(FocusArea)
        .where(FocusArea.workshop_id == workshop_id)
        .order_by(col(FocusArea.position), col(FocusArea.id))
    ).all()
    clusters = session.exec(
        select(Cluster).where(Cluster.workshop_id == workshop_id).order_by(col(Cluster.id))
    ).all()
    cards = session.exec(
        select(Card)
        .where(
            Card.workshop_id == workshop_id,
            col(Card.status).in_([CardStatus.visible.value, CardStatus.merged.value]),
        )
        .order_by(col(Card.id))
    ).all()
    people = session.exec(
        select(Participant.id, Participant.affiliation, Participant.role)
        .where(Participant.workshop_id == workshop_id)
        .order_by(col(Participant.id))
    ).all()
    fa_ref = {fa.id: i for i, fa in enumerate(areas, start=1)}
    cl_ref = {c.id: i for i, c in enumerate(clusters, start=1)}
    card_ref = {c.id: i for i, c in enumerate(cards, start=1)}
    # Filtered by focus area in SQL and by card here: a 2,000-id IN list
    # would hit SQLite's parameter limit.
    votes = [
        v
        for v in session.exec(
            select(Vote)
            .where(col(Vote.focus_area_id).in_(list(fa_ref)), col(Vote.dots) > 0)
            .order_by(col(Vote.id))
        ).all()
        if v.card_id in card_ref
    ]
    ratings = [
        r
        for r in session.exec(
            select(
                Rating.card_id, func.count(), func.sum(Rating.impact), func.sum(Rating.feasibility)
            )
            .where(col(Rating.focus_area_id).in_(list(fa_ref)))
            .group_by(col(Rating.card_id))
            .order_by(col(Rating.card_id))
        ).all()
        if r[0] in card_ref
    ]
    events = session.exec(
        select(Event)
        .where(Event.workshop_id == workshop_id, col(Event.kind).in_(EVENT_REFS))
        .order_by(col(Event.seq))
    ).all()

    shown = _shown_groups(people, votes)

    def group(affiliation: str) -> str:
        g = affiliations.group_of(affiliation)
        return g if g in shown else affiliations.OTHER

    # Pseudonyms numbered by group in a random order: join order would let
    # someone who watched people arrive tie numbers (and so votes) to names.
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
        focus_areas=[_pick(ArchiveFocusArea, fa, ref=fa_ref[fa.id]) for fa in areas],
        clusters=[
            _pick(
                ArchiveCluster,
                c,
                ref=cl_ref[c.id],
                focus_area=fa_ref[c.focus_area_id],
                merged_into=cl_ref.get(c.merged_into_id),
            )
            for c in clusters
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
            for c in cards
        ],
        votes=[
            ArchiveVote(
                card=card_ref[v.card_id],
                voter=p_ref.get(v.participant_id),
                group=group(v.affiliation),
                dots=v.dots,
            )
            for v in votes
        ],
        ratings=[
            ArchiveRating(card=card_ref[cid], count=n, impact_sum=si, feasibility_sum=sf)
            for cid, n, si, sf in ratings
        ],
        events=[
            ArchiveEvent(
                seq=e.seq,
                kind=e.kind,
                day=e.created_at.date(),
                payload=_event_payload(e.kind, e.payload, refs),
            )
            for e in events
        ],
    )
    return arc.model_dump(mode="json")


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
