"""Exports of a workshop's outcome: one entry point, ``export_workshop``,
and the table of formats it knows. Every document format is rendered from the
one outcome structure (``outcome.build_outcome``); the JSON archive is the
whole workshop for ``lessons import``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import Session

from app.exports.archive import export_archive, import_archive
from app.exports.outcome import Outcome, build_outcome
from app.models import Workshop

__all__ = ["FORMATS", "ExportFile", "Format", "export_workshop", "import_archive", "slugify"]


@dataclass(frozen=True)
class ExportFile:
    content: bytes
    media_type: str
    filename: str


@dataclass(frozen=True)
class Format:
    extension: str
    media_type: str
    render: Callable[[Outcome], bytes] | None  # None: built from the database (the archive)
    label: str


def _docx(o: Outcome) -> bytes:
    from app.exports.docx import render_docx

    return render_docx(o)


def _pdf(o: Outcome) -> bytes:
    # WeasyPrint is imported only when a PDF is asked for: it is slow to load.
    from app.exports.pdf import render_pdf

    return render_pdf(o)


def _md(o: Outcome) -> bytes:
    from app.exports.markdown import render_markdown

    return render_markdown(o).encode("utf-8")


def _csv(o: Outcome) -> bytes:
    from app.exports.tables import render_csv

    return render_csv(o)


def _xlsx(o: Outcome) -> bytes:
    from app.exports.tables import render_xlsx

    return render_xlsx(o)


FORMATS: dict[str, Format] = {
    "docx": Format(
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        _docx,
        "Word document",
    ),
    "pdf": Format("pdf", "application/pdf", _pdf, "PDF"),
    "md": Format("md", "text/markdown; charset=utf-8", _md, "Markdown"),
    "csv": Format("csv", "text/csv; charset=utf-8", _csv, "CSV (one row per card)"),
    "xlsx": Format(
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _xlsx,
        "Excel workbook",
    ),
    "json": Format("json", "application/json", None, "JSON archive (for lessons import)"),
}


def slugify(text: str, limit: int = 60) -> str:
    """ASCII, lower case, words joined by hyphens, cut at a word boundary."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    slug = ""
    for word in words:
        if len(slug) + len(word) + 1 > limit:
            break
        slug = f"{slug}-{word}" if slug else word
    return slug or "workshop"


def export_workshop(session: Session, workshop_id: int, fmt: str) -> ExportFile:
    spec = FORMATS.get(fmt)
    if spec is None:
        raise ValueError(f"unknown export format: {fmt!r}")
    ws = session.get(Workshop, workshop_id)
    if ws is None:
        raise LookupError(f"workshop {workshop_id} not found")
    if spec.render is None:
        data = export_archive(session, workshop_id)
        content = json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")
    else:
        content = spec.render(build_outcome(session, workshop_id))
    stem = slugify(ws.title) + (f"-{ws.date.isoformat()}" if ws.date else "")
    return ExportFile(content, spec.media_type, f"{stem}.{spec.extension}")
