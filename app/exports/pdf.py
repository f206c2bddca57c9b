"""The outcome document as PDF: WeasyPrint lays out
``templates/exports/outcome_pdf.html``, which wraps the same
``exports/_report.html`` partial the web report page includes, in the shared
Jinja environment (autoescape on). A4, a title page, a contents page with page
numbers, a running header with the title and classification, and "Page X of
Y" in the footer; DejaVu Sans and Serif cover Latin-extended and Cyrillic.
"""

from __future__ import annotations

from markupsafe import Markup
from weasyprint import HTML

from app.exports.outcome import Outcome
from app.render import TEMPLATES, env


def css_string(text: str, limit: int = 90) -> Markup:
    """A CSS string literal for ``content:``. Every character that is not a
    letter, digit or space is written as a hex escape (whose trailing space
    CSS swallows), so nothing in the text can end the string, the rule or the
    <style> element."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "\u2026"
    body = "".join(ch if ch.isalnum() or ch == " " else f"\\{ord(ch):06x} " for ch in text)
    return Markup(f'"{body}"')  # noqa: S704 - every special character is escaped above


def render_html(o: Outcome) -> str:
    # The running header is plain CSS content rather than string-set(): the
    # margin boxes are laid out on every page, and this is cheaper.
    return env.get_template("exports/outcome_pdf.html").render(
        outcome=o,
        header_title=css_string(o.title),
        header_classification=css_string(o.classification.upper()),
    )


def render_pdf(o: Outcome) -> bytes:
    pdf = HTML(string=render_html(o), base_url=str(TEMPLATES)).write_pdf()
    assert pdf is not None
    return pdf
