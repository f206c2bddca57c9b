"""The outcome document as one data structure, built from the database by
``build_outcome`` and read by every renderer (Markdown, DOCX, PDF, CSV, XLSX)
and by the web report page. Everything a renderer needs is decided here once:
the ranking (from ``app.domain.results``), the wording of statistics, the
tables, card references and what the Chatham House rule allows to be shown.
It holds no author, no participant id, no time finer than the day, and
participant names only when the organizer opted into the participant annex.
User text is kept verbatim (each renderer escapes it for its format) except for
control characters, which no document format can carry.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from markupsafe import Markup
from sqlmodel import Session, col, select

from app import charts
from app.domain.results import CardResult, ClusterResult, workshop_results
from app.exports.sections import (
    KIND_LABELS,
    Provenance,
    Recommendation,
    Table,
    clean,
    counts_table,
    dimension_table,
    fmt_mean,
    method_tables,
    participant_annex,
    phases,
    provenance,
    recommendations,
    rules,
    stats_line,
)
from app.models import CARD_KINDS, DIMENSIONS, Cluster, Event, Participant, Workshop

CHATHAM_HOUSE = (
    "This meeting was held under the Chatham House rule: participants are free to use the "
    "information received, but neither the identity nor the affiliation of the speaker(s), "
    "nor that of any other participant, may be revealed. Findings are reported without "
    "attribution."
)
FACETS = (
    ("dimensions", "OSCE dimension"),
    ("where", "Where"),
    ("partners", "Partners"),
    ("crime_areas", "Crime areas"),
    ("evidence", "Evidence or outcome"),
    ("human_rights", "Human-rights considerations"),
)
TOP_FINDINGS_PER_AREA = 3
ANNEX_A_NOTE = (
    "Every visible card, without attribution, by focus area and kind. The full text of each "
    "card is in its focus area's chapter, under the same number."
)
__all__ = ["KIND_LABELS", "Provenance", "Recommendation", "Table", "clean", "fmt_mean"]


def fmt_dates(start: date | None, end: date | None) -> str:
    if start is None:
        return ""
    if end is None or end <= start:
        return f"{start.day} {start:%B %Y}"
    if (start.year, start.month) == (end.year, end.month):
        return f"{start.day}-{end.day} {end:%B %Y}"
    if start.year == end.year:
        return f"{start.day} {start:%B} - {end.day} {end:%B %Y}"
    return f"{start.day} {start:%B %Y} - {end.day} {end:%B %Y}"


@dataclass
class CardItem:
    id: int
    ref: str  # "2.14": focus area 2, card 14 of Annex A
    kind: str
    kind_label: str
    title: str
    body: str
    facets: list[tuple[str, str]]  # (label, text), only those filled in
    context: dict[str, str]  # every facet as flat text, for the tables
    tags: dict[str, list[str]]  # the list facets (dimension labels, partners, crime areas)
    merged_from: list[tuple[str, str]]  # (title, body) of cards merged into this one
    focus_area: str
    dots: int
    voters: int
    impact: float | None
    feasibility: float | None
    cluster: str = ""
    cluster_rank: int | None = None

    @property
    def heading(self) -> str:
        return f"{self.ref} {self.title}"


@dataclass
class KindGroup:
    kind: str
    label: str
    cards: list[CardItem]


@dataclass
class ClusterItem:
    id: int
    rank: int
    title: str
    synthesis: str
    dots: int
    voters: int
    impact: float | None
    feasibility: float | None
    shares: list[tuple[str, str]]  # (group, "40%")
    shared: bool
    is_recommendation: bool
    kinds: list[KindGroup]
    cards: list[CardItem]
    merged_from: list[str]

    @property
    def heading(self) -> str:
        return f"{self.rank}. {self.title}"

    @property
    def stats(self) -> str:
        return stats_line(self.dots, self.voters, self.impact, self.feasibility)

    @property
    def shares_line(self) -> str:
        if not self.shares:
            return ""
        text = "Share of dots by affiliation: " + ", ".join(f"{g} {s}" for g, s in self.shares)
        return text + (" (shared across structures)" if self.shared else "")


@dataclass
class FocusAreaSection:
    id: int
    number: int
    title: str
    prompt: str
    voters: int
    dots_spent: int
    clusters: list[ClusterItem]
    unclustered: list[KindGroup]
    points: list[charts.Point]

    @property
    def heading(self) -> str:
        return f"Focus area {self.number}: {self.title}"

    @property
    def turnout(self) -> str:
        return f"{self.voters} participants voted and spent {self.dots_spent} dots."

    def annex_groups(self) -> list[KindGroup]:
        """Every card of the focus area by kind, in reference order."""
        cards = [c for cl in self.clusters for c in cl.cards]
        cards += [c for g in self.unclustered for c in g.cards]
        return group_by_kind(sorted(cards, key=lambda c: int(c.ref.split(".")[1])))

    def chart(self) -> charts.Chart:
        title = f"Impact and feasibility of the findings in focus area {self.number}"
        return charts.impact_feasibility(self.points, title=title)

    def chart_svg(self) -> Markup:
        return Markup(charts.to_svg(self.chart()))  # noqa: S704 - to_svg escapes all text

    def chart_png(self) -> bytes:
        return charts.to_png(self.chart())

    def bars_svg(self, limit: int = 12) -> Markup:
        rows = [(c.heading, c.dots) for c in self.clusters[:limit] if c.dots]
        chart = charts.vote_bars(rows, title=f"Dots per finding in focus area {self.number}")
        return Markup(charts.to_svg(chart))  # noqa: S704 - to_svg escapes all text


@dataclass
class Finding:
    focus_area: str
    heading: str
    synthesis: str
    stats: str


@dataclass
class Outcome:
    title: str
    day: date | None  # the first day, for file names and document metadata
    dates: str
    venue: str
    hosted_by: str
    classification: str
    notice: str
    executive_summary: str
    top_findings: list[Finding]
    participants: Table
    cards: Table
    rules: list[str]
    phases: list[str]
    focus_areas: list[FocusAreaSection]
    recommendations: list[tuple[str, list[Recommendation]]]  # per focus area heading
    dimensions: Table
    partners: Table
    crime_areas: Table
    annex_a: list[tuple[str, list[KindGroup]]]  # (focus area heading, cards by kind)
    annex_note: str
    provenance: list[Provenance]
    participant_annex: Table | None
    all_cards: list[CardItem]  # Annex A order: one row each in CSV and XLSX


def build_outcome(session: Session, workshop_id: int) -> Outcome:
    ws = session.get(Workshop, workshop_id)
    if ws is None:
        raise LookupError(f"workshop {workshop_id} not found")
    sections: list[FocusAreaSection] = []
    for number, fa in enumerate(workshop_results(session, workshop_id).focus_areas, start=1):
        # Card numbers follow content (kind, then text), never ids: numbers in
        # writing order would tell whoever saw who wrote first which card is whose.
        results = sorted(
            [c for cl in fa.clusters for c in cl.cards] + fa.unclustered, key=_content_key
        )
        by_id = {c.id: _card(c, f"{number}.{i}", fa.title) for i, c in enumerate(results, 1)}
        clusters = [_cluster(cl, by_id) for cl in fa.clusters]
        for cl in clusters:
            for item in cl.cards:
                item.cluster, item.cluster_rank = cl.title, cl.rank
        points = [
            charts.Point(str(c.rank), c.title, c.impact, c.feasibility, c.dots)
            for c in clusters
            if c.impact is not None and c.feasibility is not None
        ]
        unclustered = group_by_kind(_ranked([by_id[c.id] for c in fa.unclustered]))
        turnout = fa.turnout
        sections.append(
            FocusAreaSection(
                fa.id,
                number,
                clean(fa.title),
                clean(fa.prompt),
                turnout.voters,
                turnout.dots_spent,
                clusters,
                unclustered,
                points,
            )
        )
    ws_id = ws.id or 0
    events = session.exec(
        select(Event).where(Event.workshop_id == ws_id).order_by(col(Event.seq))
    ).all()
    cluster_titles = dict(
        session.exec(select(Cluster.id, Cluster.title).where(Cluster.workshop_id == ws_id)).all()
    )
    people = session.exec(
        select(Participant.affiliation, Participant.role).where(Participant.workshop_id == ws_id)
    ).all()
    everything = [c for s in sections for g in s.annex_groups() for c in g.cards]
    participants, cards = method_tables(sections, [(a, r) for a, r in people])
    return Outcome(
        title=clean(ws.title),
        day=ws.date,
        dates=fmt_dates(ws.date, ws.end_date),
        venue=clean(ws.venue),
        hosted_by=clean(ws.hosted_by),
        classification=clean(ws.classification),
        notice=CHATHAM_HOUSE,
        executive_summary=clean(ws.executive_summary),
        top_findings=[
            Finding(s.heading, c.heading, c.synthesis, c.stats)
            for s in sections
            for c in s.clusters[:TOP_FINDINGS_PER_AREA]
        ],
        participants=participants,
        cards=cards,
        rules=rules(ws, sections),
        phases=phases(sections, events),
        focus_areas=sections,
        recommendations=recommendations(sections),
        dimensions=dimension_table(sections),
        partners=counts_table(everything, "partners", "Partner organisation"),
        crime_areas=counts_table(everything, "crime_areas", "Crime area"),
        annex_a=[(s.heading, s.annex_groups()) for s in sections],
        annex_note=ANNEX_A_NOTE,
        provenance=provenance(sections, events, cluster_titles),
        participant_annex=participant_annex(session, ws_id) if ws.participant_annex else None,
        all_cards=everything,
    )


def group_by_kind(cards: list[CardItem]) -> list[KindGroup]:
    """Cards in the order tool, method, lesson, recommendation (then any other
    kind), each group keeping the order it was given."""
    groups: dict[str, list[CardItem]] = defaultdict(list)
    for c in cards:
        groups[c.kind].append(c)
    order = CARD_KINDS + sorted(k for k in groups if k not in CARD_KINDS)
    return [KindGroup(k, KIND_LABELS.get(k, (k, k))[1], groups[k]) for k in order if groups[k]]


def _text_key(text: str) -> tuple[str, str]:
    return (text.casefold(), text)


def _content_key(c: CardResult) -> tuple[Any, ...]:
    """A card's place in Annex A: kind, then its text and facets, then its
    totals; nothing that follows when it was written."""
    return (
        CARD_KINDS.index(c.kind) if c.kind in CARD_KINDS else len(CARD_KINDS),
        c.kind,
        _text_key(c.title),
        _text_key(c.body),
        json.dumps(c.context, sort_keys=True, ensure_ascii=False, default=str),
        sorted(_text_key(m.title) + _text_key(m.body) for m in c.merged_from),
        -(c.dots or 0),
        -(c.voters or 0),
        c.impact or 0.0,
        c.feasibility or 0.0,
    )


def _ranked(cards: list[CardItem]) -> list[CardItem]:
    """Cards by dots, then voters, then their Annex A number (content order):
    ties never fall back to ids, whatever order the results came in."""
    return sorted(cards, key=lambda c: (-c.dots, -c.voters, int(c.ref.split(".")[1])))


LIST_FACETS = ("dimensions", "partners", "crime_areas")


def facet_tags(context: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in LIST_FACETS:
        value = context.get(key) or []
        items = [clean(v).strip() for v in (value if isinstance(value, list) else [value])]
        if key == "dimensions":
            items = [DIMENSIONS.get(d, d) for d in items]
        out[key] = list(dict.fromkeys(v for v in items if v))
    return out


def facet_values(context: dict[str, Any], tags: dict[str, list[str]]) -> dict[str, str]:
    return {
        key: ", ".join(tags[key]) if key in tags else clean(context.get(key) or "").strip()
        for key, _label in FACETS
    }


def _card(card: CardResult, ref: str, focus_area: str) -> CardItem:
    tags = facet_tags(card.context)
    values = facet_values(card.context, tags)
    return CardItem(
        id=card.id,
        ref=ref,
        kind=card.kind,
        kind_label=KIND_LABELS.get(card.kind, (card.kind, card.kind))[0],
        title=clean(card.title),
        body=clean(card.body),
        facets=[(label, values[key]) for key, label in FACETS if values[key]],
        context=values,
        tags=tags,
        merged_from=sorted(
            ((clean(m.title), clean(m.body)) for m in card.merged_from),
            key=lambda tb: _text_key(tb[0]) + _text_key(tb[1]),
        ),
        focus_area=clean(focus_area),
        dots=card.dots or 0,
        voters=card.voters or 0,
        impact=card.impact,
        feasibility=card.feasibility,
    )


def _cluster(cl: ClusterResult, by_id: dict[int, CardItem]) -> ClusterItem:
    cards = _ranked([by_id[c.id] for c in cl.cards])
    return ClusterItem(
        id=cl.id,
        rank=cl.rank,
        title=clean(cl.title).strip() or "Untitled finding",
        synthesis=clean(cl.synthesis),
        dots=cl.dots or 0,
        voters=cl.voters or 0,
        impact=cl.impact,
        feasibility=cl.feasibility,
        shares=[(clean(s.group), f"{round(s.share * 100)}%") for s in cl.shares],
        shared=cl.shared_across_structures,
        is_recommendation=cl.is_recommendation,
        kinds=group_by_kind(cards),
        cards=cards,
        merged_from=sorted((clean(t) for t in cl.merged_from), key=_text_key),
    )
