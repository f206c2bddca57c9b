"""Real readers for every export format, returning what a person would see:
the text of each file, for the privacy and injection checks."""

from __future__ import annotations

import csv
import io
import zipfile

import openpyxl
from docx import Document
from markdown_it import MarkdownIt
from pypdf import PdfReader


def docx_xml(content: bytes) -> str:
    """Every XML part of the package, metadata included."""
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        return "\n".join(
            z.read(n).decode("utf-8") for n in z.namelist() if n.endswith((".xml", ".rels"))
        )


def docx_paragraphs(content: bytes) -> list[str]:
    doc = Document(io.BytesIO(content))
    out = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        for row in table.rows:
            out.extend(cell.text for cell in row.cells)
    return out


def pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def xlsx_values(content: bytes) -> list[str]:
    wb = openpyxl.load_workbook(io.BytesIO(content))
    return [
        str(cell.value)
        for ws in wb.worksheets
        for row in ws.iter_rows()
        for cell in row
        if cell.value is not None
    ]


def csv_rows(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


def markdown_html(content: bytes) -> str:
    return MarkdownIt("commonmark").enable("table").render(content.decode("utf-8"))


def markdown_inline_text(content: bytes) -> list[str]:
    """The literal text of every inline token, as a renderer would show it."""
    md = MarkdownIt("commonmark").enable("table")
    out: list[str] = []
    for token in md.parse(content.decode("utf-8")):
        for child in token.children or []:
            if child.type == "text":
                out.append(child.content)
    return out


def visible_text(fmt: str, content: bytes) -> str:
    if fmt == "docx":
        return docx_xml(content) + "\n" + "\n".join(docx_paragraphs(content))
    if fmt == "pdf":
        return pdf_text(content)
    if fmt == "xlsx":
        return "\n".join(xlsx_values(content))
    if fmt == "csv":
        return "\n".join("\t".join(r) for r in csv_rows(content))
    return content.decode("utf-8")
