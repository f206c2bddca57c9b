"""The outcome as tables: CSV (one row per visible card) and XLSX (sheets
Cards, Clusters and Summary, header row frozen, autofilter on, column widths
set). Both are formula-safe: any text cell that starts with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return gets a leading apostrophe, so a
spreadsheet shows it as text instead of running it (OWASP, CSV injection).
So does one that starts with their fullwidth or small forms (``＝ ＋ － ＠``,
which some locales also take for formulas), or with any of them after
leading blanks and invisible characters, which some apps trim first.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from datetime import datetime, time
from typing import Any
from zipfile import ZIP_DEFLATED, ZipFile

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from app.exports.outcome import FACETS, ClusterItem, Outcome
from app.exports.stamps import restamp

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

CARD_COLUMNS: list[tuple[str, int]] = [
    ("Focus area", 28),
    ("Reference", 10),
    ("Kind", 14),
    ("Title", 40),
    ("Body", 60),
    *((label, 24) for _key, label in FACETS),
    ("Merged from", 30),
    ("Finding", 32),
    ("Finding rank", 8),
    ("Finding dots", 8),
    ("Finding voters", 8),
    ("Finding impact", 8),
    ("Finding feasibility", 8),
    ("Card dots", 8),
    ("Card voters", 8),
    ("Card impact", 8),
    ("Card feasibility", 8),
]
CLUSTER_COLUMNS: list[tuple[str, int]] = [
    ("Focus area", 28),
    ("Rank", 6),
    ("Finding", 40),
    ("Synthesis", 60),
    ("Dots", 8),
    ("Voters", 8),
    ("Impact", 8),
    ("Feasibility", 8),
    ("Cards", 8),
    ("For programme planning", 12),
    ("Shared across structures", 12),
    ("Shares by affiliation", 40),
]


def safe(value: Any) -> Any:
    if isinstance(value, str) and _starts_formula(value):
        return "'" + value
    return value


def _starts_formula(text: str) -> bool:
    if text.startswith(_FORMULA_START):
        return True
    # Skip what an app may trim (blanks, control and format characters such
    # as a zero-width space or a byte-order mark), then compare the first
    # character in its compatibility form: NFKC folds the fullwidth
    # "＝＋－＠" and the small "﹦﹢﹣﹫" onto "=+-@".
    for ch in text:
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf"):
            continue
        return unicodedata.normalize("NFKC", ch).startswith(_FORMULA_START)
    return False


def card_rows(o: Outcome) -> list[list[Any]]:
    finding: dict[int, ClusterItem] = {
        c.id: cl for s in o.focus_areas for cl in s.clusters for c in cl.cards
    }
    rows: list[list[Any]] = []
    for c in o.all_cards:
        cl = finding.get(c.id)
        merged = "; ".join(t for t, _b in c.merged_from)
        row: list[Any] = [c.focus_area, c.ref, c.kind_label, c.title, c.body]
        rows.append(
            row
            + [c.context[key] for key, _label in FACETS]
            + [merged]
            + (
                [cl.title, cl.rank, cl.dots, cl.voters, cl.impact, cl.feasibility]
                if cl
                else ["", None, None, None, None, None]
            )
            + [c.dots, c.voters, c.impact, c.feasibility]
        )
    return rows


def cluster_rows(o: Outcome) -> list[list[Any]]:
    return [
        [
            s.title,
            cl.rank,
            cl.title,
            cl.synthesis,
            cl.dots,
            cl.voters,
            cl.impact,
            cl.feasibility,
            len(cl.cards),
            "yes" if cl.is_recommendation else "no",
            "yes" if cl.shared else "no",
            ", ".join(f"{g} {share}" for g, share in cl.shares),
        ]
        for s in o.focus_areas
        for cl in s.clusters
    ]


def summary_rows(o: Outcome) -> list[list[Any]]:
    rows: list[list[Any]] = [
        ["Title", o.title],
        ["Dates", o.dates],
        ["Venue", o.venue],
        ["Organized by", o.hosted_by],
        ["Classification", o.classification],
        ["Notice", o.notice],
        ["Executive summary", o.executive_summary],
    ]
    for s in o.focus_areas:
        rows.append([s.heading, s.turnout])
    rows += [["Voting", rule] for rule in o.rules]
    return rows


def render_csv(o: Outcome) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([name for name, _w in CARD_COLUMNS])
    for row in card_rows(o):
        writer.writerow(["" if v is None else safe(v) for v in row])
    # A byte-order mark makes Excel read the file as UTF-8 (Cyrillic).
    return buf.getvalue().encode("utf-8-sig")


def render_xlsx(o: Outcome) -> bytes:
    wb = Workbook()
    cards = wb.active
    assert cards is not None
    cards.title = "Cards"
    _sheet(cards, CARD_COLUMNS, card_rows(o), wrap={"Title", "Body"})
    _sheet(wb.create_sheet("Clusters"), CLUSTER_COLUMNS, cluster_rows(o), wrap={"Synthesis"})
    _sheet(wb.create_sheet("Summary"), [("Item", 28), ("Value", 100)], summary_rows(o), {"Value"})
    # Document properties carry no time finer than the day.
    day = datetime.combine(o.day, time()) if o.day else datetime(2000, 1, 1)
    wb.properties.created = wb.properties.modified = day
    wb.properties.title, wb.properties.creator = o.title, o.hosted_by or None
    buf = io.BytesIO()
    # ExcelWriter directly: openpyxl's save_workbook stamps "modified" with now.
    with ZipFile(buf, "w", ZIP_DEFLATED) as archive:
        ExcelWriter(wb, archive).save()
    return restamp(buf.getvalue(), o.day)  # and it dates each zip member with the clock


def _sheet(
    ws: Worksheet, columns: list[tuple[str, int]], rows: list[list[Any]], wrap: set[str]
) -> None:
    ws.append([name for name, _w in columns])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append([safe(v) for v in row])
    for i, (name, width) in enumerate(columns, start=1):
        letter = get_column_letter(i)
        ws.column_dimensions[letter].width = width
        if name in wrap:
            for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                cell.alignment = Alignment(wrap_text=True, vertical="top")
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{max(len(rows) + 1, 2)}"
