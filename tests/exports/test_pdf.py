from __future__ import annotations

import io

from pypdf import PdfReader

from app.exports import ExportFile
from app.exports.pdf import css_string
from tests.exports.readers import pdf_text


def test_pdf_reads_back_with_title_page_and_sections(rendered: dict[str, ExportFile]) -> None:
    reader = PdfReader(io.BytesIO(rendered["pdf"].content))
    first = " ".join(reader.pages[0].extract_text().split())
    assert "Lessons learned: organized crime" in first
    assert "OSCE INTERNAL" in first
    assert "Chatham House rule" in first
    text = " ".join(pdf_text(rendered["pdf"].content).split())
    for heading in ("Contents", "How the findings were gathered", "Annex A: All cards"):
        assert heading in text


def test_pdf_has_running_header_and_page_x_of_y(rendered: dict[str, ExportFile]) -> None:
    reader = PdfReader(io.BytesIO(rendered["pdf"].content))
    total = len(reader.pages)
    assert total >= 5
    second = " ".join(reader.pages[1].extract_text().split())
    assert f"Page 2 of {total}" in second
    assert "Lessons learned: organized crime" in second
    assert "OSCE INTERNAL" in second
    assert "Page 1 of" not in reader.pages[0].extract_text()


def test_pdf_outline_has_the_sections(rendered: dict[str, ExportFile]) -> None:
    reader = PdfReader(io.BytesIO(rendered["pdf"].content))
    titles = [item.title for item in reader.outline if not isinstance(item, list)]
    assert "Summary" in titles
    assert "Annex B: Provenance of the findings" in titles


def test_css_string_escapes_everything_that_could_break_out() -> None:
    value = css_string('a"; } </style><script>x</script> \\ Ж')
    assert value.startswith('"') and value.endswith('"')
    inner = value[1:-1]
    assert all(ch.isalnum() or ch in " \\" for ch in inner)
    assert "Ж" in inner
