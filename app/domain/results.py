"""Read-only ranking of a focus area's clusters and cards, shared by the web
pages, the JSON API and the exports. Everything is loaded with a fixed handful
of queries for any number of focus areas (clusters, cards, vote rows, rating
sums) and aggregated in Python, so a 2,000-card workshop costs the same four
round trips as a small one. Only ``visible`` cards and ``active`` clusters
count. The output carries no author and no participant id: affiliation shares
are shown only for groups of at least ``affiliations.MIN_GROUP`` voters.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.domain import affiliations, disclosure
from app.models import Card, CardStatus, Cluster, FocusArea, Rating, Vote

# A finding is "shared across structures" when at least this many affiliation
# groups are shown for its focus area and every one of them gave it at least
# SHARED_MIN_SHARE of its dots: broad support, not one structure's pet topic.
SHARED_MIN_GROUPS = 2
SHARED_MIN_SHARE = 0.15


@dataclass
class Jsonable:
    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MergedNote(Jsonable):
    title: str
    body: str


@dataclass
class CardResult(Jsonable):
    id: int
    kind: str
    title: str
    body: str
    context: dict[str, Any]
    cluster_id: int | None
    dots: int | None = None
    voters: int | None = None
    impact: float | None = None
    feasibility: float | None = None
    ratings: int | None = None
    merged_from: list[MergedNote] = field(default_factory=list)


@dataclass
class GroupShare(Jsonable):
    group: str
    dots: int
    share: float  # of the cluster's dots, 0..1


@dataclass
class ClusterResult(Jsonable):
    id: int
    rank: int
    title: str
    synthesis: str
    position: int
    is_recommendation: bool
    cards: list[CardResult]
    dots: int | None = None
    voters: int | None = None
    impact: float | None = None
    feasibility: float | None = None
    ratings: int | None = None
    shares: list[GroupShare] = field(default_factory=list)
    shared_across_structures: bool = False
    merged_from: list[str] = field(default_factory=list)  # titles of clusters merged in


@dataclass
class Turnout(Jsonable):
    voters: int
    dots_spent: int


@dataclass
class FocusAreaResults(Jsonable):
    id: int
    position: int
    title: str
    prompt: str
    phase: str
    ratings_enabled: bool
    clusters: list[ClusterResult]
    unclustered: list[CardResult]
    turnout: Turnout
    groups_shown: list[str]
    totals_included: bool


@dataclass
class WorkshopResults(Jsonable):
    workshop_id: int
    focus_areas: list[FocusAreaResults]


@dataclass
class Ballot:
    voter: str | None  # who, as a voter key: never a participant
    card_id: int
    group: str
    dots: int


def focus_area_results(
    session: Session, focus_area_id: int, *, include_totals: bool = True
) -> FocusAreaResults:
    fa = session.get(FocusArea, focus_area_id)
    if fa is None:
        raise LookupError(f"focus area {focus_area_id} not found")
    return _results(session, [fa], include_totals=include_totals)[0]


def workshop_results(
    session: Session, workshop_id: int, *, include_totals: bool = True
) -> WorkshopResults:
    areas = session.exec(
        select(FocusArea)
        .where(FocusArea.workshop_id == workshop_id)
        .order_by(col(FocusArea.position), col(FocusArea.id))
    ).all()
    return WorkshopResults(
        workshop_id=workshop_id,
        focus_areas=_results(session, list(areas), include_totals=include_totals),
    )


def voter_of(v: Vote) -> str | None:
    """A vote's voter: its voter key (kept through anonymize-on-close), or
    for rows from before voter keys, its participant while still known."""
    if v.voter_key:
        return v.voter_key
    return f"p{v.participant_id}" if v.participant_id is not None else None


def distinct_voters(ballots: list[Ballot]) -> int:
    """People behind these ballots. Rows without a voter (anonymized before
    voter keys existed) cannot be told apart, so they count as the largest
    number of them on one card: a person has at most one row per card, which
    makes this a lower bound and keeps group-size checks on the safe side."""
    named = {b.voter for b in ballots if b.voter is not None}
    per_card: dict[int, int] = defaultdict(int)
    for b in ballots:
        if b.voter is None:
            per_card[b.card_id] += 1
    return len(named) + max(per_card.values(), default=0)


def _cluster_voters(ballots: list[Ballot]) -> int:
    # Rows with no voter key (anonymized before voters had keys) fall back
    # to counting vote rows.
    named = {b.voter for b in ballots if b.voter is not None}
    return len(named) + sum(1 for b in ballots if b.voter is None)


def _results(
    session: Session, areas: list[FocusArea], *, include_totals: bool
) -> list[FocusAreaResults]:
    ids = [fa.id for fa in areas if fa.id is not None]
    if not ids:
        return []
    clusters = session.exec(
        select(Cluster).where(col(Cluster.focus_area_id).in_(ids)).order_by(col(Cluster.id))
    ).all()
    cards = session.exec(
        select(Card)
        .where(
            col(Card.focus_area_id).in_(ids),
            col(Card.status).in_([CardStatus.visible.value, CardStatus.merged.value]),
        )
        .order_by(col(Card.id))
    ).all()
    votes = session.exec(
        select(Vote)
        .where(col(Vote.focus_area_id).in_(ids), col(Vote.dots) > 0)
        .order_by(col(Vote.id))
    ).all()
    rating_rows = session.exec(
        select(
            Rating.card_id,
            func.count(col(Rating.id)),
            func.sum(Rating.impact),
            func.sum(Rating.feasibility),
        )
        .where(col(Rating.focus_area_id).in_(ids))
        .group_by(col(Rating.card_id))
    ).all()
    visible = {c.id: c for c in cards if c.status == CardStatus.visible.value}
    ballots: dict[int, list[Ballot]] = defaultdict(list)
    for v in votes:
        if v.card_id in visible:
            group = affiliations.group_of(v.affiliation)
            ballots[v.focus_area_id].append(Ballot(voter_of(v), v.card_id, group, v.dots))
    ratings = {card_id: (int(n), int(si), int(sf)) for card_id, n, si, sf in rating_rows}
    by_fa_clusters: dict[int, list[Cluster]] = defaultdict(list)
    for cl in clusters:
        by_fa_clusters[cl.focus_area_id].append(cl)
    by_fa_cards: dict[int, list[Card]] = defaultdict(list)
    for c in cards:
        by_fa_cards[c.focus_area_id].append(c)
    return [
        _area(
            fa,
            by_fa_clusters[fa.id or 0],
            by_fa_cards[fa.id or 0],
            ballots[fa.id or 0],
            ratings,
            include_totals=include_totals,
        )
        for fa in areas
    ]


def _root(start: int | None, parent: dict[int, int | None]) -> int | None:
    """Follow merged_into links to the end of the chain (cycle-safe)."""
    seen: set[int] = set()
    node = start
    while node is not None and node in parent and parent[node] is not None and node not in seen:
        seen.add(node)
        node = parent[node]
    return node


def _area(
    fa: FocusArea,
    clusters: list[Cluster],
    cards: list[Card],
    ballots: list[Ballot],
    ratings: dict[int, tuple[int, int, int]],
    *,
    include_totals: bool,
) -> FocusAreaResults:
    # Cards may still point at a cluster that was merged away: follow the chain.
    cluster_parent = {cl.id or 0: cl.merged_into_id for cl in clusters}
    active = {cl.id or 0: cl for cl in clusters if cl.status == "active"}
    card_parent = {c.id or 0: c.merged_into_id for c in cards if c.status == "merged"}
    merged_notes: dict[int, list[MergedNote]] = defaultdict(list)
    for c in cards:
        if c.status == CardStatus.merged.value:
            target = _root(c.id, card_parent)
            if target is not None and target != c.id:
                merged_notes[target].append(MergedNote(c.title, c.body))

    card_ballots: dict[int, list[Ballot]] = defaultdict(list)
    for b in ballots:
        card_ballots[b.card_id].append(b)
    sizes = _group_sizes(ballots)

    def card_result(c: Card) -> CardResult:
        cid = c.id or 0
        res = CardResult(
            id=cid,
            kind=c.kind,
            title=c.title,
            body=c.body,
            context=dict(c.context or {}),
            cluster_id=None,
            merged_from=merged_notes.get(cid, []),
        )
        if include_totals:
            mine = card_ballots.get(cid, [])
            res.dots = sum(b.dots for b in mine)
            res.voters = _cluster_voters(mine)
            res.ratings, res.impact, res.feasibility = _means([ratings.get(cid)])
        return res

    members: dict[int, list[CardResult]] = defaultdict(list)
    unclustered: list[CardResult] = []
    for c in cards:
        if c.status != CardStatus.visible.value:
            continue
        card = card_result(c)
        root = _root(c.cluster_id, cluster_parent)
        if root is not None and root in active:
            card.cluster_id = root
            members[root].append(card)
        else:
            unclustered.append(card)

    merged_titles: dict[int, list[str]] = defaultdict(list)
    for cl in clusters:
        if cl.status == "merged":
            root = _root(cl.id, cluster_parent)
            if root is not None and root in active and root != cl.id:
                merged_titles[root].append(cl.title)

    results: list[ClusterResult] = []
    for cid, cl in active.items():
        mine = members.get(cid, [])
        if not mine and not cl.synthesis.strip():
            continue  # an empty leftover cluster is not a finding
        res = ClusterResult(
            id=cid,
            rank=0,
            title=cl.title,
            synthesis=cl.synthesis,
            position=cl.position,
            is_recommendation=cl.is_recommendation,
            cards=sorted(mine, key=_card_key) if include_totals else mine,
            merged_from=merged_titles.get(cid, []),
        )
        if include_totals:
            card_ids = {c.id for c in mine}
            own = [b for i in card_ids for b in card_ballots.get(i, [])]
            res.dots = sum(b.dots for b in own)
            res.voters = _cluster_voters(own)
            res.ratings, res.impact, res.feasibility = _means([ratings.get(i) for i in card_ids])
            res.shares = _shares(own, sizes, res.dots)
            res.shared_across_structures = _is_shared(res.shares)
        results.append(res)

    if include_totals:
        results.sort(key=lambda r: (-(r.dots or 0), -(r.voters or 0), r.position, _text(r)))
        unclustered.sort(key=_card_key)
    else:
        results.sort(key=lambda r: (r.position, _text(r)))
    for i, r in enumerate(results, start=1):
        r.rank = i
    return FocusAreaResults(
        id=fa.id or 0,
        position=fa.position,
        title=fa.title,
        prompt=fa.prompt,
        phase=fa.phase,
        ratings_enabled=fa.ratings_enabled,
        clusters=results,
        unclustered=unclustered,
        turnout=Turnout(voters=distinct_voters(ballots), dots_spent=sum(b.dots for b in ballots)),
        groups_shown=disclosure.published(sizes),
        totals_included=include_totals,
    )


def _card_key(c: CardResult) -> tuple[int, int, str, str, int]:
    # Ties follow content, never ids: id order is writing order.
    return (-(c.dots or 0), -(c.voters or 0), c.title.casefold(), c.body.casefold(), c.id)


def _text(r: ClusterResult) -> tuple[str, str, int]:
    return (r.title.casefold(), r.synthesis.casefold(), r.id)


def _means(
    parts: list[tuple[int, int, int] | None],
) -> tuple[int, float | None, float | None]:
    # Means over all ratings of the cards, not a mean of per-card means: a card
    # rated by ten people weighs more than one rated by one.
    n = sum(p[0] for p in parts if p)
    if not n:
        return 0, None, None
    si = sum(p[1] for p in parts if p)
    sf = sum(p[2] for p in parts if p)
    return n, round(si / n, 2), round(sf / n, 2)


def _group_sizes(ballots: list[Ballot]) -> dict[str, int]:
    """Distinct voters per affiliation group in a focus area: the sizes the
    disclosure rule protects."""
    per_group: dict[str, list[Ballot]] = defaultdict(list)
    for b in ballots:
        per_group[b.group].append(b)
    return {g: distinct_voters(bs) for g, bs in per_group.items()}


def _shares(own: list[Ballot], sizes: dict[str, int], total: int) -> list[GroupShare]:
    if not total:
        return []
    return [
        GroupShare(g, dots, round(dots / total, 3))
        for g, dots in disclosure.breakdown(((b.group, b.dots) for b in own), sizes)
    ]


def _is_shared(shares: list[GroupShare]) -> bool:
    if len(shares) < SHARED_MIN_GROUPS:
        return False
    return all(s.share >= SHARED_MIN_SHARE for s in shares)
