"""The derived parts of the outcome document: the method counts ("How the
findings were gathered"), the voting rules, the phases each focus area went
through, the programme-planning recommendations, the cross-dimensional tables,
the provenance annex and the opt-in participant annex. Split from
``outcome.py``, which builds the focus-area sections these read; the small
text helpers shared by every renderer live here too.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from app.domain import affiliations, disclosure
from app.domain.results import SHARED_MIN_SHARE
from app.models import CARD_KINDS, DIMENSIONS, Event, Participant, Role, Workshop

if TYPE_CHECKING:
    from app.exports.outcome import CardItem, FocusAreaSection

KIND_LABELS = {
    "tool": ("Tool", "Tools"),
    "method": ("Method", "Methods"),
    "lesson": ("Lesson learned", "Lessons learned"),
    "recommendation": ("Recommendation", "Recommendations"),
}
SHARED_RULE = (
    "Shares of dots by affiliation group are shown only for groups of at least "
    f"{affiliations.MIN_GROUP} voters in a focus area. Smaller groups are counted together "
    'as "Other", and when "Other" would still be smaller than that, the smallest groups '
    "join it until it is not, so no group's figure can be worked out from the others. "
    'A finding is marked "shared across structures" when at least two groups '
    f"are shown and each gave it at least {round(SHARED_MIN_SHARE * 100)}% of its dots."
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def clean(text: Any) -> str:
    """Text without the characters XML (DOCX, XLSX, SVG) cannot hold."""
    return _CONTROL.sub("", str(text or ""))


def fmt_mean(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def stats_line(dots: int, voters: int, impact: float | None, feasibility: float | None) -> str:
    text = f"{dots} dots from {voters} voters"
    if impact is not None:
        text += f"; impact {fmt_mean(impact)}, feasibility {fmt_mean(feasibility)}"
    return text


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Recommendation:
    rank: int  # within its focus area
    source: str  # "Finding 3" (a flagged cluster) or "Card"
    title: str
    text: str
    stats: str
    facets: list[tuple[str, str]]


@dataclass
class Provenance:
    heading: str  # "1.3 Title": focus area 1, finding 3
    sources: str  # the card numbers, "Cards: 1.4, 1.7"; each card is listed in Annex A
    notes: list[str]


def method_tables(
    sections: list[FocusAreaSection], people: list[tuple[str, str]]
) -> tuple[Table, Table]:
    """Participants by affiliation group (under the disclosure rule of
    app/domain/disclosure.py) and cards
    by kind and focus area. Counts only, never a name."""
    groups = Counter(affiliations.group_of(a) for a, role in people if role == Role.participant)
    total = sum(groups.values())
    # The same rule as every other breakdown: the rows add up to the total,
    # so no small group can be counted as "total minus the rows shown".
    rows = [[g, str(n)] for g, n in disclosure.breakdown(groups.items(), groups)]
    rows.append(["Total", str(total)])
    participants = Table(["Affiliation group", "Participants"], rows)
    if len(rows) == 1 and total:
        participants.caption = (
            f"With groups of fewer than {disclosure.K}, participants are counted only in the total."
        )
    sums = [0] * (len(CARD_KINDS) + 1)
    card_rows: list[list[str]] = []
    for s in sections:
        per_kind = Counter(c.kind for g in s.annex_groups() for c in g.cards)
        counts = [per_kind.get(k, 0) for k in CARD_KINDS] + [sum(per_kind.values())]
        sums = [a + b for a, b in zip(sums, counts, strict=True)]
        card_rows.append([f"{s.number}. {s.title}"] + [str(n) for n in counts])
    card_rows.append(["Total"] + [str(n) for n in sums])
    header = ["Focus area"] + [KIND_LABELS[k][1] for k in CARD_KINDS] + ["Total"]
    return participants, Table(header, card_rows)


def rules(ws: Workshop, sections: list[FocusAreaSection]) -> list[str]:
    rules = [
        f"Each participant had {ws.vote_budget} dots to spend in each focus area, with at "
        f"most {ws.vote_cap} on any one card. A finding's dots are the dots on its cards; "
        "findings are ranked by dots, then by number of voters.",
        "Only cards still visible at the end count: withdrawn, hidden and merged cards are "
        "left out.",
    ]
    if ws.blind_voting:
        rules.append("Voting was blind: totals stayed hidden until the vote was closed.")
    rated = [str(s.number) for s in sections if s.points]
    if rated:
        rules.append(
            f"In focus area {', '.join(rated)} participants also rated impact and feasibility "
            "from 1 to 5; a finding's ratings are the means over all ratings of its cards."
        )
    return rules + [SHARED_RULE]


def phases(sections: list[FocusAreaSection], events: Sequence[Event]) -> list[str]:
    runs: dict[int, list[str]] = defaultdict(list)
    for e in events:
        if e.kind == "focus_area.phase":
            fa_id, phase = e.payload.get("focus_area_id"), str(e.payload.get("phase", ""))
            seen = runs[fa_id if isinstance(fa_id, int) else -1]
            if phase and phase != "draft" and (not seen or seen[-1] != phase):
                seen.append(phase)
    return [
        f"Focus area {s.number}: " + (", ".join(runs[s.id]) if runs[s.id] else "not recorded")
        for s in sections
    ]


def recommendations(
    sections: list[FocusAreaSection],
) -> list[tuple[str, list[Recommendation]]]:
    """Per focus area: the findings flagged for programme planning and every
    recommendation card not already inside one, ranked by dots then voters
    (dot budgets are per focus area, so ranks are too)."""
    out: list[tuple[str, list[Recommendation]]] = []
    for s in sections:
        ranked: list[tuple[int, int, Recommendation]] = []
        flagged: set[int] = set()
        for cl in s.clusters:
            if cl.is_recommendation:
                flagged.update(c.id for c in cl.cards)
                facets = _union_facets(cl.cards)
                source = f"Finding {cl.rank}"
                rec = Recommendation(0, source, cl.title, cl.synthesis, cl.stats, facets)
                ranked.append((cl.dots, cl.voters, rec))
        for c in (c for g in s.annex_groups() for c in g.cards):
            if c.kind == "recommendation" and c.id not in flagged:
                facets = _union_facets([c])
                stats = stats_line(c.dots, c.voters, c.impact, c.feasibility)
                # The card's text is in its chapter, under the same number.
                rec = Recommendation(0, "Card", c.heading, "", stats, facets)
                ranked.append((c.dots, c.voters, rec))
        ranked.sort(key=lambda t: (-t[0], -t[1]))
        for i, (_dots, _voters, rec) in enumerate(ranked, start=1):
            rec.rank = i
        if ranked:
            out.append((s.heading, [r for _, _, r in ranked]))
    return out


def _union_facets(cards: list[CardItem]) -> list[tuple[str, str]]:
    out = []
    for key, label in (("dimensions", "OSCE dimension"), ("partners", "Partners")):
        values = dict.fromkeys(v for c in cards for v in c.tags[key])
        if values:
            out.append((label, ", ".join(values)))
    where = dict.fromkeys(c.context["where"] for c in cards if c.context["where"])
    if where:
        out.append(("Where", "; ".join(where)))
    return out


def dimension_table(sections: list[FocusAreaSection]) -> Table:
    labels = list(DIMENSIONS.values())
    rows = []
    for s in sections:
        cards = [c for g in s.annex_groups() for c in g.cards]
        dims = Counter(d for c in cards for d in c.tags["dimensions"])
        none = sum(1 for c in cards if not c.tags["dimensions"])
        rows.append(
            [f"{s.number}. {s.title}"] + [str(dims.get(d, 0)) for d in labels] + [str(none)]
        )
    header = ["Focus area"] + labels + ["Not specified"]
    caption = "Cards per OSCE dimension; a card may name more than one dimension."
    return Table(header, rows, caption)


def counts_table(cards: list[CardItem], key: str, label: str) -> Table:
    counts = Counter(v for c in cards for v in c.tags[key])
    rows = [[k, str(n)] for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return Table([label, "Cards"], rows)


def provenance(
    sections: list[FocusAreaSection], events: Sequence[Event], titles: dict[int | None, str]
) -> list[Provenance]:
    """For each finding: its cards, the cards and clusters merged into it and
    the cards moved between clusters, from the event log. Ids only go in."""
    moves: dict[int, list[tuple[Any, Any]]] = defaultdict(list)
    for e in events:
        if e.kind == "card.moved" and e.payload.get("from_cluster_id") is not None:
            p = e.payload
            moves[p.get("card_id", -1)].append((p.get("from_cluster_id"), p.get("to_cluster_id")))

    def name(cluster_id: Any) -> str:
        return f"'{clean(titles.get(cluster_id)) or 'untitled'}'" if cluster_id else "no cluster"

    out = []
    for s in sections:
        for cl in s.clusters:
            notes = [f"Finding '{t}' was merged into this one." for t in cl.merged_from]
            for c in cl.cards:
                notes += [f"{c.ref} absorbs the merged card '{t}'." for t, _ in c.merged_from]
                notes += [f"{c.ref} moved from {name(a)} to {name(b)}." for a, b in moves[c.id]]
            sources = "Cards: " + (", ".join(c.ref for c in cl.cards) or "none")
            out.append(Provenance(f"{s.number}.{cl.rank} {cl.title}", sources, notes))
    return out


def participant_annex(session: Session, workshop_id: int) -> Table:
    # Only reached when the organizer opted in: the one place names are read.
    rows = session.exec(
        select(Participant.display_name, Participant.affiliation)
        .where(Participant.workshop_id == workshop_id, Participant.role == Role.participant.value)
        .order_by(col(Participant.display_name))
    ).all()
    return Table(["Name", "Affiliation"], [[clean(n), clean(a)] for n, a in rows])
