"""Chatham House: no participant name, author, participant id or time finer
than the day in any format, unless the organizer opted into the annex."""

from __future__ import annotations

import json
import re

import pytest

from app.exports import FORMATS, ExportFile
from tests.exports.factory import NAMES
from tests.exports.readers import visible_text


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_without_annex_names_nobody(rendered: dict[str, ExportFile], fmt: str) -> None:
    text = visible_text(fmt, rendered[fmt].content)
    for name in [*NAMES, "Facilitator Marchbanks"]:
        assert name not in text


@pytest.mark.parametrize("fmt", ["md", "docx", "pdf"])
def test_export_with_annex_lists_participants_in_the_annex(
    rendered_with_annex: dict[str, ExportFile], fmt: str
) -> None:
    text = visible_text(fmt, rendered_with_annex[fmt].content)
    assert "Annex C: Participants" in text
    for name in NAMES:
        assert name in text
    # Names only in the annex: nothing before its heading mentions anyone.
    before = text.split("Annex C: Participants")[0]
    assert not any(name in before for name in NAMES)


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_tables_and_archive_never_carry_names(
    rendered_with_annex: dict[str, ExportFile], fmt: str
) -> None:
    text = visible_text(fmt, rendered_with_annex[fmt].content)
    assert not any(name in text for name in NAMES)


def test_archive_has_no_author_participant_id_or_clock_time(
    rendered: dict[str, ExportFile],
) -> None:
    raw = rendered["json"].content.decode()
    data = json.loads(raw)
    assert "author" not in raw
    assert "participant_id" not in raw
    assert "actor" not in raw
    assert not re.search(r"\d{2}:\d{2}", raw)
    assert {e["day"] for e in data["events"]} == {"2007-10-15"}
    assert all(set(p) == {"ref", "group", "role"} for p in data["participants"])


@pytest.mark.parametrize("fmt", ["md", "csv"])
def test_text_exports_carry_no_clock_time(rendered: dict[str, ExportFile], fmt: str) -> None:
    assert not re.search(r"\d{1,2}:\d{2}", visible_text(fmt, rendered[fmt].content))


def test_small_affiliation_groups_are_not_named(rendered: dict[str, ExportFile]) -> None:
    # ODIHR has 2 participants and the external partner 1: both are "Other".
    # (The JSON archive keeps the organizer's affiliation list, which says
    # nothing about who came.)
    for fmt in ("md", "pdf", "docx", "xlsx", "csv"):
        text = visible_text(fmt, rendered[fmt].content)
        assert "ODIHR" not in text
        assert "UNODC" in text  # as a partner facet, which is not an affiliation
        assert "External partner" not in text
