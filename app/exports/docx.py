"""The outcome document as a Word file (python-docx): a title page, a table
of contents field, real Heading 1-3 styles, real tables, the impact x
feasibility chart as a PNG drawn from the same shapes as the SVG, and a
running header (title, classification) and footer (page X of Y) built from
Word fields. Word fills in the contents and page numbers when the file is
opened; the document asks for that through ``w:updateFields``.
"""

from __future__ import annotations

import io
from datetime import datetime, time

from docx import Document
from docx.document import Document as DocumentObject
from docx.enum.style import WD_STYLE_TYPE
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_BREAK
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt, RGBColor
from docx.text.paragraph import Paragraph

from app.exports.outcome import CardItem, KindGroup, Outcome, Table
from app.exports.stamps import restamp

MUTED = RGBColor(0x52, 0x60, 0x6D)


class _Writer:
    """Appends paragraphs straight to the body. python-docx's own
    ``add_paragraph`` looks the style up by name and searches the body for
    the section properties on every call, which is quadratic: 20 s instead
    of 2 for a 2,000-card workshop."""

    def __init__(self, doc: DocumentObject) -> None:
        self.doc = doc
        self.body = doc.element.body
        self.ids = {s.name: s.style_id for s in doc.styles if s.name}
        self.width = doc._block_width  # needs the section, read before it is moved
        self.sect = self.body.sectPr
        if self.sect is not None:
            self.body.remove(self.sect)

    def p(self, text: str = "", style: str | None = None) -> Paragraph:
        element = OxmlElement("w:p")
        self.body.append(element)
        if style:
            element.style = self.ids[style]  # type: ignore[attr-defined]
        para = Paragraph(element, self.doc._body)  # type: ignore[arg-type]
        if text:
            para.add_run(text)
        return para

    def h(self, text: str, level: int) -> Paragraph:
        return self.p(text, f"Heading {level}")

    def bullets(self, lines: list[str]) -> None:
        for line in lines:
            self.p(line, "List Bullet")

    def text(self, value: str) -> None:
        for block in value.strip().split("\n\n"):
            if block.strip():
                self.p(block.strip())

    def table(self, t: Table) -> None:
        if not t.rows:
            self.p("None.")
            return
        cols = len(t.header)
        table = self.doc._body.add_table(1, cols, self.width)
        table.style = self.doc.styles["Light Grid Accent 1"]
        for cell, text in zip(table.rows[0].cells, t.header, strict=True):
            cell.text = text
        for row in t.rows:
            for cell, text in zip(table.add_row().cells, row, strict=True):
                cell.text = text
        # The first column holds names (focus areas, groups): give it room,
        # the counts beside it need little.
        first = int(self.width * (0.4 if cols > 2 else 0.6))
        widths = [first] + [int((self.width - first) / max(cols - 1, 1))] * (cols - 1)
        for column, width in zip(table.columns, widths, strict=True):
            column.width = width
            for cell in column.cells:
                cell.width = width
        header = table.rows[0]._tr.get_or_add_trPr()
        repeat = OxmlElement("w:tblHeader")  # repeat the header row on every page
        header.append(repeat)
        if t.caption:
            self.p(t.caption, "Caption")

    def card(self, c: CardItem) -> None:
        self.p(c.heading, "Card Title").add_run(f"  ({c.kind_label})").font.color.rgb = MUTED
        self.text(c.body)
        if c.facets:
            self.p("; ".join(f"{k}: {v}" for k, v in c.facets), "Card Meta")
        for title, body in c.merged_from:
            self.p(f"Merged from: {title}" + (f": {body}" if body.strip() else ""), "Card Meta")

    def kinds(self, groups: list[KindGroup]) -> None:
        for g in groups:
            self.h(g.label, 3)
            for c in g.cards:
                self.card(c)

    def finish(self) -> None:
        if self.sect is not None:
            self.body.append(self.sect)


def render_docx(o: Outcome) -> bytes:
    doc = Document()
    _setup(doc, o)
    w = _Writer(doc)
    _title_page(w, o)

    w.h("Summary", 1)
    w.text(o.executive_summary)
    if o.top_findings:
        w.h("Top findings", 2)
        for f in o.top_findings:
            p = w.p("", "List Bullet")
            p.add_run(f.heading).bold = True
            p.add_run(f" ({f.focus_area}; {f.stats})" + (": " + f.synthesis if f.synthesis else ""))

    w.h("How the findings were gathered", 1)
    w.h("Participants", 2)
    w.table(o.participants)
    w.h("Cards", 2)
    w.table(o.cards)
    w.h("Voting", 2)
    w.bullets(o.rules)
    w.h("Phases", 2)
    w.bullets(o.phases)

    for s in o.focus_areas:
        w.h(s.heading, 1)
        if s.prompt:
            w.p(s.prompt, "Quote")
        w.p(s.turnout)
        if s.points:
            w.p().add_run().add_picture(io.BytesIO(s.chart_png()), width=Cm(15))
            w.p(
                f"Figure {s.number}: impact and feasibility; numbers are the findings' ranks.",
                "Caption",
            )
        for cl in s.clusters:
            w.h(cl.heading, 2)
            w.p(cl.stats, "Card Meta")
            if cl.shares:
                w.p(cl.shares_line, "Card Meta")
            w.text(cl.synthesis)
            for title in cl.merged_from:
                w.p(f"Merged from the finding: {title}", "Card Meta")
            w.kinds(cl.kinds)
        if s.unclustered:
            w.h("Cards not in a finding", 2)
            w.kinds(s.unclustered)

    w.h("Recommendations for programme planning", 1)
    if not o.recommendations:
        w.p("None.")
    for heading, recs in o.recommendations:
        w.h(heading, 2)
        for r in recs:
            p = w.p(f"{r.rank}. ", "Card Title")
            p.add_run(r.title)
            if r.text:
                w.text(r.text)
            w.p("; ".join([r.source, r.stats] + [f"{k}: {v}" for k, v in r.facets]), "Card Meta")

    w.h("Cross-dimensional view", 1)
    for heading, table in (
        ("Cards by OSCE dimension", o.dimensions),
        ("Partner organisations mentioned", o.partners),
        ("Crime areas", o.crime_areas),
    ):
        w.h(heading, 2)
        w.table(table)

    w.h("Annex A: All cards", 1)
    w.p(o.annex_note)
    for heading, groups in o.annex_a:
        w.h(heading, 2)
        for g in groups:
            w.h(g.label, 3)
            for c in g.cards:
                finding = f"  (finding {c.cluster_rank})" if c.cluster_rank else ""
                w.p(f"{c.ref}  {c.title}{finding}", "Index")

    w.h("Annex B: Provenance of the findings", 1)
    for prov in o.provenance:
        w.h(prov.heading, 2)
        w.p(prov.sources)
        w.bullets(prov.notes)

    if o.participant_annex is not None:
        w.h("Annex C: Participants", 1)
        w.p("Published at the organizer's request.")
        w.table(o.participant_annex)

    w.finish()
    buf = io.BytesIO()
    doc.save(buf)
    return restamp(buf.getvalue(), o.day)  # python-docx dates each member with the clock


def _setup(doc: DocumentObject, o: Outcome) -> None:
    props = doc.core_properties
    props.title, props.author, props.last_modified_by = o.title, o.hosted_by, ""
    props.subject, props.keywords, props.comments = "Outcome document", "", ""
    # Metadata carries no time finer than the day: the workshop's first day.
    day = datetime.combine(o.day, time()) if o.day else datetime(2000, 1, 1)
    props.created = props.modified = day
    props.last_printed = day
    styles = doc.styles
    styles["Normal"].font.size = Pt(10.5)  # type: ignore[union-attr]
    meta = styles.add_style("Card Meta", WD_STYLE_TYPE.PARAGRAPH)
    meta.base_style = styles["Normal"]
    meta.font.size, meta.font.italic, meta.font.color.rgb = Pt(9), True, MUTED  # type: ignore[union-attr]
    title = styles.add_style("Card Title", WD_STYLE_TYPE.PARAGRAPH)
    title.base_style = styles["Normal"]
    title.font.bold = True  # type: ignore[union-attr]
    title.paragraph_format.keep_with_next = True  # type: ignore[union-attr]
    title.paragraph_format.space_before = Pt(6)  # type: ignore[union-attr]
    index = styles.add_style("Index", WD_STYLE_TYPE.PARAGRAPH)
    index.base_style = styles["Normal"]
    index.font.size = Pt(9)  # type: ignore[union-attr]
    index.paragraph_format.space_after = Pt(0)  # type: ignore[union-attr]
    section = doc.sections[0]
    section.page_height, section.page_width = Cm(29.7), Cm(21.0)
    section.left_margin = section.right_margin = Cm(2.2)
    section.different_first_page_header_footer = True
    head = section.header.paragraphs[0]
    head.text = o.title + (f"  |  {o.classification}" if o.classification else "")
    head.style = styles["Header"]
    foot = section.footer.paragraphs[0]
    foot.alignment = WD_ALIGN_PARAGRAPH.CENTER
    foot.add_run("Page ")
    _field(foot, "PAGE", "1")
    foot.add_run(" of ")
    _field(foot, "NUMPAGES", "1")
    update = OxmlElement("w:updateFields")
    update.set(qn("w:val"), "true")
    doc.settings.element.append(update)


def _field(paragraph: Paragraph, instruction: str, placeholder: str) -> None:
    """A complex field (begin, instruction, separate, cached result, end)."""
    run = paragraph.add_run()
    begin = OxmlElement("w:fldChar")
    begin.set(qn("w:fldCharType"), "begin")
    begin.set(qn("w:dirty"), "true")
    instr = OxmlElement("w:instrText")
    instr.set(qn("xml:space"), "preserve")
    instr.text = f" {instruction} "
    sep = OxmlElement("w:fldChar")
    sep.set(qn("w:fldCharType"), "separate")
    run._r.append(begin)
    run._r.append(instr)
    run._r.append(sep)
    paragraph.add_run(placeholder)
    end = OxmlElement("w:fldChar")
    end.set(qn("w:fldCharType"), "end")
    paragraph.add_run()._r.append(end)


def _title_page(w: _Writer, o: Outcome) -> None:
    if o.classification:
        p = w.p()
        p.alignment = WD_ALIGN_PARAGRAPH.RIGHT
        run = p.add_run(o.classification.upper())
        run.bold, run.font.color.rgb = True, RGBColor(0x9B, 0x1C, 0x1C)
    w.p(o.title, "Title")
    w.p("Outcome document", "Subtitle")
    for line in (o.dates, o.venue, f"Organized by {o.hosted_by}" if o.hosted_by else ""):
        if line:
            w.p(line)
    w.p(o.notice, "Intense Quote")
    w.p().add_run().add_break(WD_BREAK.PAGE)
    w.p("Contents", "TOC Heading")
    _field(
        w.p(),
        'TOC \\o "1-2" \\h \\z \\u',
        "Right-click and choose Update Field to see the contents.",
    )
    w.p().add_run().add_break(WD_BREAK.PAGE)
