"""The outcome document as CommonMark (with pipe tables, which CommonMark
readers without the table extension show as plain lines). Every piece of user
text goes through ``esc``, so ``**bold**``, HTML tags, links and template
syntax stay literal, while the file still reads well as plain text: only the
characters that would start markup are backslash-escaped.
"""

from __future__ import annotations

import re

from app import charts
from app.exports.outcome import CardItem, KindGroup, Outcome, Table

# Inline characters that open emphasis, code, links, HTML, entities, tables or
# hard breaks anywhere in a line.
_INLINE = re.compile(r"([\\`*_\[\]<>|&~])")
_ORDERED = re.compile(r"^(\d+)([.)])")


def esc_inline(text: str) -> str:
    """User text inside a line (a heading, bold text, a table cell)."""
    line = _INLINE.sub(r"\\\1", " ".join(text.split()))
    # A run of "#" at the end of a heading would be read as its closing marks.
    return re.sub(r"#+$", lambda m: "\\" + m.group(0), line)


def _line_start(line: str) -> str:
    # Headings, quotes, bullets, setext underlines and "1." lists only start
    # at the beginning of a line, so that is the only place they are escaped.
    if _ORDERED.match(line):
        return _ORDERED.sub(r"\1\\\2", line)
    return "\\" + line if line[:1] in "#>+=-" else line


def esc_line(text: str) -> str:
    """User text on one line that may start a line."""
    return _line_start(esc_inline(text))


def esc(text: str) -> str:
    """User text over several lines; leading blanks go, since they would
    make a code block and mean nothing in a card."""
    return "\n".join(_line_start(_INLINE.sub(r"\\\1", ln.strip())) for ln in text.splitlines())


def paragraphs(text: str) -> str:
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    return "\n\n".join(esc(b) for b in blocks)


def table(t: Table) -> str:
    if not t.rows:
        return "_None._"
    head = "| " + " | ".join(esc_inline(h) for h in t.header) + " |"
    rule = "|" + "|".join(" --- " for _ in t.header) + "|"
    body = ["| " + " | ".join(esc_inline(c) for c in row) + " |" for row in t.rows]
    out = "\n".join([head, rule, *body])
    return out + (f"\n\n{esc(t.caption)}" if t.caption else "")


def _card(c: CardItem) -> str:
    parts = [f"**{esc_inline(c.heading)}** ({c.kind_label})"]
    if c.body.strip():
        parts.append(paragraphs(c.body))
    if c.facets:
        parts.append("; ".join(f"_{label}:_ {esc_inline(v)}" for label, v in c.facets))
    for title, body in c.merged_from:
        note = f"_Merged from:_ {esc_inline(title)}"
        parts.append(note + (f": {esc_inline(body)}" if body.strip() else ""))
    return "\n\n".join(parts)


def _index_line(c: CardItem) -> str:
    finding = f" (finding {c.cluster_rank})" if c.cluster_rank else ""
    return f"{c.ref} {esc_inline(c.title)}{finding}"


def _kinds(groups: list[KindGroup], level: str) -> list[str]:
    out = []
    for g in groups:
        out.append(f"{level} {g.label}")
        out.extend(_card(c) for c in g.cards)
    return out


def render_markdown(o: Outcome) -> str:
    h = esc_inline
    out: list[str] = [f"# {h(o.title)}"]
    if o.classification:
        out.append(f"**{h(o.classification)}**")
    meta = [h(x) for x in (o.dates, o.venue) if x]
    if o.hosted_by:
        meta.append(f"Organized by {h(o.hosted_by)}")
    if meta:
        out.append("  \n".join(meta))
    out.append(f"> {esc(o.notice)}")

    out.append("## Summary")
    if o.executive_summary.strip():
        out.append(paragraphs(o.executive_summary))
    if o.top_findings:
        out.append("### Top findings")
        items = [
            f"- **{h(f.heading)}** ({h(f.focus_area)}; {f.stats})"
            + (f": {h(f.synthesis)}" if f.synthesis.strip() else "")
            for f in o.top_findings
        ]
        out.append("\n".join(items))

    out.append("## How the findings were gathered")
    out += ["### Participants", table(o.participants), "### Cards", table(o.cards)]
    out += ["### Voting", "\n".join(f"- {esc(r)}" for r in o.rules)]
    out += ["### Phases", "\n".join(f"- {esc_line(p)}" for p in o.phases)]

    for s in o.focus_areas:
        out.append(f"## {h(s.heading)}")
        if s.prompt.strip():
            out.append(f"_Prompt:_ {h(s.prompt)}")
        out.append(s.turnout)
        for cl in s.clusters:
            out.append(f"### {h(cl.heading)}")
            out.append(f"_{cl.stats}_" + (f"  \n{esc_line(cl.shares_line)}" if cl.shares else ""))
            if cl.synthesis.strip():
                out.append(paragraphs(cl.synthesis))
            for title in cl.merged_from:
                out.append(f"_Merged from the finding:_ {h(title)}")
            out += _kinds(cl.kinds, "####")
        if s.unclustered:
            out.append("### Cards not in a finding")
            out += _kinds(s.unclustered, "####")
        if s.points:
            out.append("### Impact and feasibility")
            rows = [
                [p.label, p.name, f"{p.impact:.1f}", f"{p.feasibility:.1f}", quadrant]
                for p in s.points
                for quadrant in [charts.quadrant(p.impact, p.feasibility)]
            ]
            out.append(table(Table(["#", "Finding", "Impact", "Feasibility", "Quadrant"], rows)))

    out.append("## Recommendations for programme planning")
    if not o.recommendations:
        out.append("_None._")
    for heading, recs in o.recommendations:
        out.append(f"### {h(heading)}")
        for r in recs:
            facets = "".join(f"; _{label}:_ {h(v)}" for label, v in r.facets)
            item = f"{r.rank}\\. **{h(r.title)}** ({r.source}; {r.stats}{facets})"
            out.append(item + (f"  \n{esc_line(r.text)}" if r.text.strip() else ""))

    out.append("## Cross-dimensional view")
    out += ["### Cards by OSCE dimension", table(o.dimensions)]
    out += ["### Partner organisations mentioned", table(o.partners)]
    out += ["### Crime areas", table(o.crime_areas)]

    out.append("## Annex A: All cards")
    out.append(o.annex_note)
    for heading, groups in o.annex_a:
        out.append(f"### {h(heading)}")
        for g in groups:
            out.append(f"#### {g.label}")
            out.append("\n".join(f"- {_index_line(c)}" for c in g.cards))

    out.append("## Annex B: Provenance of the findings")
    for p in o.provenance:
        out.append(f"### {h(p.heading)}")
        out.append("\n".join(f"- {esc_line(x)}" for x in [p.sources, *p.notes]))

    if o.participant_annex is not None:
        out.append("## Annex C: Participants")
        out.append("Published at the organizer's request.")
        out.append(table(o.participant_annex))
    return "\n\n".join(out) + "\n"
