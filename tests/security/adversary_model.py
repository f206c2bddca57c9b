"""The model behind tests/security/test_adversary.py: what the database holds
(a snapshot, read straight from the tables), who may see which card (the
intended rules, written out here independently of ``app.domain.cards``), and
the oracle's checks of response bodies, websocket frames and results.

Every card the adversary writes carries a unique marker ``ZQX<n>QXZ`` in its
title, body and context, and every person's display name is a marker
``NMQ<n>QMN``, so that a leak is a plain substring search: a marker of a card
the receiver may not see, of a card of another workshop, or of a card whose
creation was refused, or the name of anybody but the receiver, is a leak."""

from __future__ import annotations

import itertools
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from app.models import Card, Cluster, FocusArea, Rating, Vote, Workshop

MARK_RE = re.compile(r"ZQX(\d+)QXZ")
NAME_RE = re.compile(r"NMQ(\d+)QMN")
K = 3  # the smallest group an affiliation breakdown may show
OTHER = "Other"
STAFF = frozenset({"fac", "org"})
# Keys a card-like JSON object (one with "id", "title" and "kind") must never hold.
AUTHOR_KEYS = frozenset(
    {"author", "author_id", "participant", "participant_id", "display_name", "affiliation"}
)

_numbers = itertools.count(1)


def new_marker() -> tuple[int, str]:
    """A marker never used before in this test process."""
    n = next(_numbers)
    return n, f"ZQX{n}QXZ"


def new_name() -> tuple[int, str]:
    n = next(_numbers)
    return n, f"NMQ{n}QMN"


def group_of(affiliation: str) -> str:
    """ "Group: Name" belongs to Group; an entry without a colon is its own
    group (the rule the organizer is told on the affiliations form)."""
    affiliation = affiliation.strip()
    if not affiliation:
        return OTHER
    head, sep, _ = affiliation.partition(":")
    return head.strip() if sep else affiliation


# -- the snapshot -----------------------------------------------------------------------


@dataclass(frozen=True)
class FaRow:
    id: int
    phase: str
    revealed: bool
    ratings_enabled: bool
    late_cards: bool


@dataclass(frozen=True)
class CardRow:
    id: int
    focus_area_id: int
    kind: str
    title: str
    body: str
    context: str  # JSON, keys sorted
    status: str
    version: int
    cluster_id: int | None
    merged_into_id: int | None
    author_id: int | None


@dataclass(frozen=True)
class ClusterRow:
    id: int
    focus_area_id: int
    title: str
    synthesis: str
    position: int
    is_recommendation: bool
    status: str
    merged_into_id: int | None


@dataclass(frozen=True)
class VoteRow:
    id: int
    participant_id: int | None
    card_id: int
    focus_area_id: int
    affiliation: str
    dots: int


@dataclass(frozen=True)
class RatingRow:
    id: int
    participant_id: int | None
    card_id: int
    impact: int
    feasibility: int


@dataclass(frozen=True)
class Snapshot:
    """Everything of one workshop a refused request must leave as it was."""

    private_writing: bool
    blind_voting: bool
    anonymize_on_close: bool
    closed: bool
    joins_locked: bool
    last_seq: int
    focus_areas: dict[int, FaRow]
    cards: dict[int, CardRow]
    clusters: dict[int, ClusterRow]
    votes: dict[int, VoteRow]
    ratings: dict[int, RatingRow]

    def diff(self, other: Snapshot) -> list[str]:
        out: list[str] = []
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a == b:
                continue
            if isinstance(a, dict):
                for key in sorted(set(a) | set(b)):
                    if a.get(key) != b.get(key):
                        out.append(f"{f.name}[{key}]: {a.get(key)} -> {b.get(key)}")
            else:
                out.append(f"{f.name}: {a!r} -> {b!r}")
        return out


def load(engine: Engine, workshop_id: int) -> Snapshot:
    """Read the workshop's rows (plain Core queries on one connection: this
    runs after every request)."""
    ws_t, fa_t, card_t = Workshop.__table__, FocusArea.__table__, Card.__table__  # type: ignore[attr-defined]
    cl_t, vote_t, rating_t = Cluster.__table__, Vote.__table__, Rating.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        ws = conn.execute(
            select(
                ws_t.c.private_writing,
                ws_t.c.blind_voting,
                ws_t.c.anonymize_on_close,
                ws_t.c.closed,
                ws_t.c.joins_locked,
                ws_t.c.last_seq,
            ).where(ws_t.c.id == workshop_id)
        ).one()
        fas = {
            row[0]: FaRow(*row)
            for row in conn.execute(
                select(
                    fa_t.c.id,
                    fa_t.c.phase,
                    fa_t.c.revealed,
                    fa_t.c.ratings_enabled,
                    fa_t.c.late_cards,
                ).where(fa_t.c.workshop_id == workshop_id)
            )
        }
        cards = {}
        for row in conn.execute(
            select(
                card_t.c.id,
                card_t.c.focus_area_id,
                card_t.c.kind,
                card_t.c.title,
                card_t.c.body,
                card_t.c.context,
                card_t.c.status,
                card_t.c.version,
                card_t.c.cluster_id,
                card_t.c.merged_into_id,
                card_t.c.author_id,
            ).where(card_t.c.workshop_id == workshop_id)
        ):
            values = list(row)
            values[5] = json.dumps(values[5] or {}, sort_keys=True)
            cards[row[0]] = CardRow(*values)
        clusters = {
            row[0]: ClusterRow(*row)
            for row in conn.execute(
                select(
                    cl_t.c.id,
                    cl_t.c.focus_area_id,
                    cl_t.c.title,
                    cl_t.c.synthesis,
                    cl_t.c.position,
                    cl_t.c.is_recommendation,
                    cl_t.c.status,
                    cl_t.c.merged_into_id,
                ).where(cl_t.c.workshop_id == workshop_id)
            )
        }
        ids = list(fas)
        votes = {
            row[0]: VoteRow(*row)
            for row in conn.execute(
                select(
                    vote_t.c.id,
                    vote_t.c.participant_id,
                    vote_t.c.card_id,
                    vote_t.c.focus_area_id,
                    vote_t.c.affiliation,
                    vote_t.c.dots,
                ).where(vote_t.c.focus_area_id.in_(ids))
            )
        }
        ratings = {
            row[0]: RatingRow(*row)
            for row in conn.execute(
                select(
                    rating_t.c.id,
                    rating_t.c.participant_id,
                    rating_t.c.card_id,
                    rating_t.c.impact,
                    rating_t.c.feasibility,
                ).where(rating_t.c.focus_area_id.in_(ids))
            )
        }
    return Snapshot(*ws, fas, cards, clusters, votes, ratings)


def workshop_id(engine: Engine, code: str) -> int:
    ws_t = Workshop.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return int(conn.execute(select(ws_t.c.id).where(ws_t.c.code == code)).scalar_one())


# -- who may see what -------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """``kind``: participant, fac (the facilitator, also a participant row),
    org (the workshop's organizer), proj (the projector) or anon (no
    credentials); ``pid`` is the participant id of participants and the
    facilitator."""

    name: str
    kind: str
    pid: int | None = None

    @property
    def staff(self) -> bool:
        return self.kind in STAFF


def may_see(snap: Snapshot, card_id: int, viewer: Viewer) -> bool:
    """The intended rules: withdrawn cards are seen by nobody; a card's
    author sees it otherwise; hidden cards: staff; a draft focus area:
    staff; private writing while the focus area is in draft or collect:
    staff (the facilitator sees private text by default, the organizer too);
    later on, everyone who is in the workshop. Cards of other workshops and
    ids that do not exist: nobody."""
    card = snap.cards.get(card_id)
    if card is None or card.status == "withdrawn":
        return False
    if viewer.kind == "anon":
        return False
    if viewer.pid is not None and card.author_id == viewer.pid:
        return True
    fa = snap.focus_areas[card.focus_area_id]
    if card.status == "hidden" or fa.phase == "draft":
        return viewer.staff
    if snap.private_writing and fa.phase in ("draft", "collect"):
        return viewer.staff
    return True


def totals_visible(snap: Snapshot, fa: FaRow) -> bool:
    if fa.phase in ("draft", "collect", "cluster"):
        return False
    return fa.revealed or not snap.blind_voting


def results_allowed(snap: Snapshot, fa: FaRow, viewer: Viewer) -> bool:
    """Whether a focus area may appear in ``viewer``'s results at all (they
    carry card text)."""
    if viewer.staff:
        return True
    if fa.phase == "draft":
        return False
    return not (snap.private_writing and fa.phase == "collect")


@dataclass
class Marks:
    """Which marker belongs to which card of the current workshop."""

    card_of: dict[int, int] = field(default_factory=dict)  # marker number -> card id
    names: dict[int, str] = field(default_factory=dict)  # name number -> actor

    def allowed(self, snap: Snapshot, viewer: Viewer) -> set[int]:
        return {n for n, cid in self.card_of.items() if may_see(snap, cid, viewer)}


def excerpt(text: str, needle: str, width: int = 160) -> str:
    i = text.find(needle)
    if i < 0:
        return text[: 2 * width]
    return text[max(0, i - width) : i + len(needle) + width]


def scan(text: str, snap: Snapshot, marks: Marks, viewer: Viewer) -> list[str]:
    """Markers of cards ``viewer`` may not see, and names other than theirs."""
    problems: list[str] = []
    allowed = marks.allowed(snap, viewer)
    for n in sorted({int(m) for m in MARK_RE.findall(text)}):
        if n in allowed:
            continue
        cid = marks.card_of.get(n)
        if cid is None:
            why = "a card of another workshop, or one whose creation was refused"
        else:
            c = snap.cards[cid]
            fa = snap.focus_areas[c.focus_area_id]
            why = (
                f"card {cid}: status {c.status}, phase {fa.phase}, "
                f"private writing {'on' if snap.private_writing else 'off'}, "
                f"written by participant {c.author_id}"
            )
        marker = f"ZQX{n}QXZ"
        problems.append(f"marker {marker} ({why}) reached {viewer.name}: …{excerpt(text, marker)}…")
    for n in sorted({int(m) for m in NAME_RE.findall(text)}):
        if marks.names.get(n) != viewer.name:
            name = f"NMQ{n}QMN"
            problems.append(
                f"the display name of {marks.names.get(n, '?')} reached {viewer.name}: "
                f"…{excerpt(text, name)}…"
            )
    return problems


def _walk(obj: Any) -> Iterator[dict[str, Any]]:
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def check_card_objects(obj: Any, snap: Snapshot, viewer: Viewer) -> list[str]:
    """No card-like object in a JSON answer names or hints at its author."""
    problems = []
    for d in _walk(obj):
        if not {"id", "title", "kind"} <= d.keys():
            continue
        bad = AUTHOR_KEYS & d.keys()
        if bad:
            problems.append(f"card {d.get('id')} carries {sorted(bad)} to {viewer.name}")
        if d.get("mine") is True:
            card = snap.cards.get(d.get("id"))  # type: ignore[arg-type]
            if card is None or viewer.pid is None or card.author_id != viewer.pid:
                problems.append(f"card {d.get('id')} is marked mine for {viewer.name}")
    return problems


# -- results: totals and disclosure control ---------------------------------------------


def _cluster_root(snap: Snapshot, cluster_id: int | None) -> int | None:
    seen: set[int] = set()
    node = cluster_id
    while node is not None and node not in seen:
        seen.add(node)
        cl = snap.clusters.get(node)
        if cl is None or cl.merged_into_id is None:
            break
        node = cl.merged_into_id
    return node


def members(snap: Snapshot, cluster_id: Any) -> set[int]:
    """Visible cards whose cluster (followed through merges) is this one."""
    return {
        c.id
        for c in snap.cards.values()
        if c.status == "visible" and _cluster_root(snap, c.cluster_id) == cluster_id
    }


def _card_results(fa_json: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for cl in fa_json.get("clusters", []):
        yield from cl.get("cards", [])
    yield from fa_json.get("unclustered", [])


def check_results(
    body: Any, snap: Snapshot, viewer: Viewer, owner_of_vote: dict[int, int]
) -> list[str]:
    """The results API against the database.

    ``owner_of_vote`` maps vote row ids to the participant who cast them, as
    seen before anonymization erased the link: breakdowns are judged by the
    true number of people behind them, not the lower bound the app can still
    compute after closing."""
    problems: list[str] = []
    for fa_json in body.get("focus_areas", []):
        fa = snap.focus_areas.get(fa_json.get("id"))
        if fa is None:
            problems.append(f"results name focus area {fa_json.get('id')} of another workshop")
            continue
        where = f"results of focus area {fa.id} ({fa.phase}) for {viewer.name}"
        if not results_allowed(snap, fa, viewer):
            problems.append(f"{where}: shown although {viewer.name} may not read this area")
        visible_cards = {
            c.id for c in snap.cards.values() if c.focus_area_id == fa.id and c.status == "visible"
        }
        rows = [v for v in snap.votes.values() if v.card_id in visible_cards and v.dots > 0]
        by_card: dict[int, list[VoteRow]] = defaultdict(list)
        for v in rows:
            by_card[v.card_id].append(v)
        anonymous = any(v.participant_id is None for v in rows)

        def person(v: VoteRow) -> int | str:
            owner = v.participant_id if v.participant_id is not None else owner_of_vote.get(v.id)
            return owner if owner is not None else f"row{v.id}"

        # Totals: per card, per cluster, turnout.
        show_totals = viewer.staff or totals_visible(snap, fa)
        for c in _card_results(fa_json):
            if c["id"] not in visible_cards:
                problems.append(f"{where}: card {c['id']} is not a visible card of this area")
                continue
            if c.get("dots") is None:
                continue
            if not show_totals:
                problems.append(f"{where}: card {c['id']} shows totals before they are revealed")
            mine = by_card.get(c["id"], [])
            if c["dots"] != sum(v.dots for v in mine) or c.get("voters") != len(mine):
                problems.append(
                    f"{where}: card {c['id']} shows {c['dots']} dots / {c.get('voters')} voters,"
                    f" the database {sum(v.dots for v in mine)} / {len(mine)}"
                )
        turnout = fa_json.get("turnout") or {}
        spent = sum(v.dots for v in rows)
        if turnout.get("dots_spent") not in (None, spent):
            problems.append(f"{where}: turnout {turnout.get('dots_spent')} dots, database {spent}")
        if not anonymous and turnout.get("voters") not in (
            None,
            len({v.participant_id for v in rows}),
        ):
            problems.append(f"{where}: turnout {turnout.get('voters')} voters, database differs")

        # Disclosure control. True voters per group, over the ballots the
        # numbers are made of (dots on visible cards of this area).
        people: dict[str, set[int | str]] = defaultdict(set)
        for v in rows:
            people[group_of(v.affiliation)].add(person(v))
        shown = list(fa_json.get("groups_shown") or [])
        named = {g for g in shown if g != OTHER}
        for g in named:
            if len(people.get(g, set())) < K:
                problems.append(
                    f"{where}: group {g!r} is shown with {len(people.get(g, set()))} voters (< {K})"
                )
        folded = {p for g, ps in people.items() if g not in named for p in ps}
        if OTHER in shown and len(folded) < K:
            problems.append(f"{where}: group 'Other' is shown with {len(folded)} voters (< {K})")
        for cl in fa_json.get("clusters", []):
            shares = cl.get("shares") or []
            if not shares:
                continue
            cw = f"{where}, cluster {cl.get('id')}"
            if not show_totals:
                problems.append(f"{cw}: affiliation shares before totals are revealed")
            ids = members(snap, cl.get("id"))
            own = [v for v in rows if v.card_id in ids]
            actual: dict[str, int] = defaultdict(int)
            for v in own:
                g = group_of(v.affiliation)
                actual[g if g in named else OTHER] += v.dots
            total = sum(v.dots for v in own)
            if cl.get("dots") is not None and cl["dots"] != total:
                problems.append(f"{cw}: {cl['dots']} dots, the database {total}")
            for s in shares:
                g = s.get("group")
                if g not in shown:
                    problems.append(f"{cw}: a share for {g!r}, which is not in groups_shown")
                elif s.get("dots") != actual.get(g, 0):
                    problems.append(
                        f"{cw}: {g!r} shown with {s.get('dots')} dots,"
                        f" the database {actual.get(g, 0)}"
                    )
            shown_sum = sum(int(s.get("dots") or 0) for s in shares)
            if shown_sum != (cl.get("dots") if cl.get("dots") is not None else total):
                hidden = sorted(
                    f"{g}: {n}" for g, n in actual.items() if g not in {s["group"] for s in shares}
                )
                problems.append(
                    f"{cw}: shares add up to {shown_sum} of {cl.get('dots')} dots, so the"
                    f" suppressed remainder ({', '.join(hidden)}) can be computed"
                )
        for cl in fa_json.get("clusters", []):
            listed = {c["id"] for c in cl.get("cards", [])}
            ids = members(snap, cl.get("id"))
            if listed != ids:
                problems.append(
                    f"{where}, cluster {cl.get('id')}: lists cards {sorted(listed)},"
                    f" the database {sorted(ids)}"
                )
            if anonymous or cl.get("voters") is None:
                continue
            n = len({v.participant_id for v in rows if v.card_id in ids})
            if cl["voters"] != n:
                problems.append(f"{where}, cluster {cl.get('id')}: {cl['voters']} voters, db {n}")
    return problems
