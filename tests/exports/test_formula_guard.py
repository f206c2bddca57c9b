"""Formula injection in CSV and XLSX beyond ASCII: spreadsheet apps in some
locales also start a formula at the fullwidth (and small form) ``＝ ＋ － ＠``,
and some trim leading blanks or invisible characters before they look."""

from __future__ import annotations

import io

import openpyxl
import pytest
from sqlmodel import Session

from app.exports import export_workshop
from app.exports.tables import safe
from tests.exports import factory
from tests.exports.readers import csv_rows

HOSTILE = [
    '\uff1dHYPERLINK("http://x","y")',  # ＝ fullwidth equals
    "\uff0b1+cmd|' /C calc'!A0",  # ＋ fullwidth plus
    "\uff0d2+3",  # － fullwidth hyphen-minus
    "\uff20SUM(A1:A2)",  # ＠ fullwidth commercial at
    '\ufe66HYPERLINK("http://x")',  # ﹦ small equals sign
    " =1+1",
    "\u3000\uff1d1+1",  # ideographic space, then ＝
    "\u00a0+1",  # no-break space
    "\u200b=1+1",  # zero-width space
    "\ufeff@SUM(A1)",  # byte-order mark
    "\n=1+1",
    "\x0b-1+1",  # vertical tab (a control character)
]
HARMLESS = ["Hello", "a=b", "Border security", "Сотрудничество", "1 = 1", "'quoted"]


@pytest.mark.parametrize("value", HOSTILE)
def test_formula_starters_after_blanks_or_in_fullwidth_are_defused(value: str) -> None:
    assert safe(value) == "'" + value


@pytest.mark.parametrize("value", HARMLESS)
def test_ordinary_text_is_left_alone(value: str) -> None:
    assert safe(value) == value


def test_non_text_is_left_alone() -> None:
    assert safe(-3) == -3 and safe(None) is None and safe(1.5) == 1.5


def test_fullwidth_formulas_are_defused_in_csv_and_xlsx(session: Session) -> None:
    ws = factory.workshop(session, title='\uff1dHYPERLINK("http://x")')
    fa = factory.focus_area(session, ws, title="\uff0bcmd")
    factory.card(session, fa, "\uff1d1+1", body="\uff20SUM(A1)", context={"where": "\uff0d9"})
    factory.card(session, fa, "Second card", body=" =1+1")
    factory.cluster(session, fa, "\uff0d1", synthesis="\u3000\uff1d2")
    session.commit()
    assert ws.id is not None
    cells = [c for row in csv_rows(export_workshop(session, ws.id, "csv").content) for c in row]
    for value in ("\uff1d1+1", "\uff20SUM(A1)", " =1+1", "\uff0bcmd", "\uff0d9"):
        assert "'" + value in cells
        assert value not in cells
    wb = openpyxl.load_workbook(io.BytesIO(export_workshop(session, ws.id, "xlsx").content))
    values = [c.value for s in wb.worksheets for row in s.iter_rows() for c in row]
    for value in (
        "\uff1d1+1",
        "\uff20SUM(A1)",
        " =1+1",
        "\uff0bcmd",
        '\uff1dHYPERLINK("http://x")',
    ):
        assert "'" + value in values
        assert value not in values
