"""Hostile card text stays literal text in every format: no formula, no
HTML, no template evaluation, no Markdown emphasis, no broken XML."""

from __future__ import annotations

import io
import json

import openpyxl
import pytest

from app.exports import ExportFile
from tests.exports.factory import NASTY
from tests.exports.readers import (
    csv_rows,
    docx_paragraphs,
    markdown_html,
    markdown_inline_text,
    pdf_text,
)

CYRILLIC = ["Сотрудничество с полицией", "Мониторинг границ", "Пограничный контроль работает."]


def test_markdown_keeps_hostile_text_literal(rendered: dict[str, ExportFile]) -> None:
    content = rendered["md"].content
    text = "\n".join(markdown_inline_text(content))
    for value in [*NASTY, *CYRILLIC]:
        assert value in text
    html = markdown_html(content)
    assert "<script>" not in html
    assert "<strong>bold</strong>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "49" not in text


def test_docx_keeps_hostile_text_literal(rendered: dict[str, ExportFile]) -> None:
    paragraphs = "\n".join(docx_paragraphs(rendered["docx"].content))
    for value in [*NASTY, *CYRILLIC]:
        assert value in paragraphs


def test_pdf_keeps_hostile_text_literal(rendered: dict[str, ExportFile]) -> None:
    text = " ".join(pdf_text(rendered["pdf"].content).split())
    for value in [*NASTY, *CYRILLIC]:
        assert value in text


def test_csv_defuses_formulas(rendered: dict[str, ExportFile]) -> None:
    rows = csv_rows(rendered["csv"].content)
    cells = [c for row in rows for c in row]
    assert "'" + NASTY[0] in cells
    assert NASTY[0] not in cells
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    for value in [*NASTY[1:], *CYRILLIC]:
        assert any(value in c for c in cells)


def test_xlsx_defuses_formulas(rendered: dict[str, ExportFile]) -> None:
    wb = openpyxl.load_workbook(io.BytesIO(rendered["xlsx"].content))
    cells = [c for ws in wb.worksheets for row in ws.iter_rows() for c in row]
    assert not any(c.data_type == "f" for c in cells)
    values = [c.value for c in cells if isinstance(c.value, str)]
    assert "'" + NASTY[0] in values
    assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in values)
    for value in [*NASTY[1:], *CYRILLIC]:
        assert any(value in v for v in values)


def test_archive_keeps_text_exactly(rendered: dict[str, ExportFile]) -> None:
    data = json.loads(rendered["json"].content)
    titles = {c["title"] for c in data["cards"]}
    assert set(NASTY) <= titles


@pytest.mark.parametrize("value", ["\x00bad\x0b", "a\x1fb"])
def test_control_characters_are_dropped_not_fatal(value: str) -> None:
    from app.exports.outcome import clean

    assert clean(value) in {"bad", "ab"}
