from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from docx import Document

from app.exports import ExportFile
from tests.exports.readers import docx_xml, pdf_text

SECTIONS = [
    "Summary",
    "How the findings were gathered",
    "Focus area 1: Cross-dimensional approach and human rights",
    "Focus area 2: Tools and methods that worked",
    "Recommendations for programme planning",
    "Cross-dimensional view",
    "Annex A: All cards",
    "Annex B: Provenance of the findings",
]


def test_docx_has_sections_as_heading_1_in_order(rendered: dict[str, ExportFile]) -> None:
    doc = Document(io.BytesIO(rendered["docx"].content))
    h1 = [p.text for p in doc.paragraphs if p.style is not None and p.style.name == "Heading 1"]
    assert h1 == SECTIONS
    h2 = [p.text for p in doc.paragraphs if p.style is not None and p.style.name == "Heading 2"]
    assert h2[:2] == ["Top findings", "Participants"]
    assert "1. Joint investigation teams" in h2
    h3 = {p.text for p in doc.paragraphs if p.style is not None and p.style.name == "Heading 3"}
    assert {"Tools", "Methods", "Lessons learned", "Recommendations"} <= h3
    assert doc.paragraphs[1].style is not None and doc.paragraphs[1].style.name == "Title"


def test_docx_has_real_tables(rendered: dict[str, ExportFile]) -> None:
    doc = Document(io.BytesIO(rendered["docx"].content))
    headers = [[c.text for c in t.rows[0].cells] for t in doc.tables]
    assert ["Affiliation group", "Participants"] in headers
    assert headers[1][0] == "Focus area" and headers[1][-1] == "Total"
    assert len(doc.tables) >= 5


def test_docx_has_page_numbers_toc_and_chart(rendered: dict[str, ExportFile]) -> None:
    content = rendered["docx"].content
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        names = z.namelist()
        footers = "".join(z.read(n).decode() for n in names if n.startswith("word/footer"))
        body = z.read("word/document.xml").decode()
        settings = z.read("word/settings.xml").decode()
        png = [z.read(n) for n in names if n.startswith("word/media/") and n.endswith(".png")]
    assert " PAGE " in footers and " NUMPAGES " in footers
    assert "TOC \\o" in body
    assert "updateFields" in settings
    assert len(png) == 1 and png[0].startswith(b"\x89PNG")


def test_docx_metadata_is_day_precise(rendered: dict[str, ExportFile]) -> None:
    doc = Document(io.BytesIO(rendered["docx"].content))
    props = doc.core_properties
    assert props.created is not None and props.modified is not None
    for stamp in (props.created, props.modified):
        assert stamp.replace(tzinfo=None) == datetime(2007, 10, 15)
    assert props.last_modified_by == ""
    assert "python-docx" not in docx_xml(rendered["docx"].content)


@pytest.mark.office
def test_docx_converts_with_libreoffice(rendered: dict[str, ExportFile], tmp_path: Path) -> None:
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed")
    src = tmp_path / "outcome.docx"
    src.write_bytes(rendered["docx"].content)
    subprocess.run(
        [
            soffice,
            "--headless",
            f"-env:UserInstallation=file://{tmp_path}/profile",
            "--convert-to",
            "pdf",
            "--outdir",
            str(tmp_path),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    text = pdf_text((tmp_path / "outcome.pdf").read_bytes())
    assert "Lessons learned: organized crime" in text
    assert "Joint investigation teams" in text
