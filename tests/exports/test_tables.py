from __future__ import annotations

import io

import openpyxl

from app.exports import ExportFile
from app.exports.tables import CARD_COLUMNS, safe
from tests.exports.readers import csv_rows

VISIBLE_CARDS = 13  # the sample workshop's visible cards in both focus areas


def test_csv_has_one_row_per_visible_card(rendered: dict[str, ExportFile]) -> None:
    rows = csv_rows(rendered["csv"].content)
    header, body = rows[0], rows[1:]
    assert header == [name for name, _w in CARD_COLUMNS]
    assert len(body) == VISIBLE_CARDS
    by_title = {r[header.index("Title")]: dict(zip(header, r, strict=True)) for r in body}
    assert "Hidden card" not in by_title and "Withdrawn card" not in by_title
    joint = by_title["Joint teams with Europol"]
    assert joint["Finding"] == "Joint investigation teams"
    assert joint["Finding dots"] == "18" and joint["Card dots"] == "12"
    assert joint["OSCE dimension"] == "Human, Politico-military"
    assert joint["Partners"] == "UNODC, Europol"
    assert joint["Card impact"] == "5.0"
    assert by_title["Prosecutor curriculum"]["Merged from"] == "Curriculum duplicate"


def test_xlsx_has_sheets_frozen_header_and_filters(rendered: dict[str, ExportFile]) -> None:
    wb = openpyxl.load_workbook(io.BytesIO(rendered["xlsx"].content))
    assert wb.sheetnames == ["Cards", "Clusters", "Summary"]
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref and ws.auto_filter.ref.startswith("A1:")
        assert ws["A1"].font.bold
        assert (ws.column_dimensions["A"].width or 0) >= 10
    cards = wb["Cards"]
    assert cards.max_row == VISIBLE_CARDS + 1
    clusters = wb["Clusters"]
    first = [c.value for c in clusters[2]]
    assert first[:3] == [
        "Cross-dimensional approach and human rights",
        1,
        "Joint investigation teams",
    ]
    assert first[4] == 18 and first[5] == 9
    assert wb.properties.created is not None and wb.properties.created.hour == 0


def test_safe_prefixes_formula_starts_only() -> None:
    for value in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert safe(value) == "'" + value
    assert safe("plain") == "plain"
    assert safe(-3) == -3
    assert safe(None) is None
