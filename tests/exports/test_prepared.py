"""Slow exports prepared ahead (app/exports/prepared.py), on the real database
and the real renderers: a prepared file is served as it was made while the
workshop is unchanged (downloading it does not count as a change), any change
makes the next download render afresh, and a deleted workshop's files are
gone. Closing a workshop through the organizer's page: tests/web."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.domain import events, workshops
from app.exports.prepared import PreparedExports, content_seq
from app.models import Workshop
from tests.exports.readers import pdf_text


@pytest.fixture
def prepared(engine: Engine) -> Iterator[PreparedExports]:
    cache = PreparedExports(engine)
    yield cache
    cache.close()


def _wait_ready(cache: PreparedExports, workshop_id: int, fmt: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cache.ready(workshop_id, fmt):
        assert time.monotonic() < deadline, f"{fmt} was not prepared in {timeout} s"
        time.sleep(0.05)


def test_a_prepared_file_is_served_until_the_workshop_changes(
    prepared: PreparedExports, session: Session, sample: Workshop
) -> None:
    assert sample.id is not None
    prepared.prepare(sample.id)
    _wait_ready(prepared, sample.id, "pdf")
    first = prepared.export(session, sample.id, "pdf")
    assert first.content.startswith(b"%PDF") and first.filename.endswith(".pdf")
    # Downloading records an audit event; that changes nothing in the document.
    events.record(session, workshop_id=sample.id, kind="export.created", actor="organizer")
    session.commit()
    assert prepared.export(session, sample.id, "pdf") is first

    workshops.update_workshop(session, workshop=sample, changes={"title": "Renamed outcome"})
    session.commit()
    fresh = prepared.export(session, sample.id, "pdf")
    assert fresh is not first
    assert "Renamed outcome" in pdf_text(fresh.content)
    assert "Renamed outcome" not in pdf_text(first.content)
    # The fresh render is kept for the new state in turn.
    assert prepared.export(session, sample.id, "pdf") is fresh


def test_formats_that_are_quick_are_never_kept(
    prepared: PreparedExports, session: Session, sample: Workshop
) -> None:
    assert sample.id is not None
    md = prepared.export(session, sample.id, "md")
    assert prepared.export(session, sample.id, "md") is not md
    assert not prepared.ready(sample.id, "md")


def test_deleting_a_workshop_forgets_its_files(
    prepared: PreparedExports, session: Session, sample: Workshop
) -> None:
    assert sample.id is not None
    prepared.export(session, sample.id, "docx")
    assert prepared.ready(sample.id, "docx")
    prepared.forget(sample.id)
    assert not prepared.ready(sample.id, "docx")


def test_files_expire(engine: Engine, session: Session, sample: Workshop) -> None:
    assert sample.id is not None
    cache = PreparedExports(engine, ttl=0.2)
    try:
        kept = cache.export(session, sample.id, "docx")
        assert cache.export(session, sample.id, "docx") is kept
        time.sleep(0.3)
        assert cache.export(session, sample.id, "docx") is not kept
    finally:
        cache.close()


def test_content_seq_ignores_exports(session: Session, sample: Workshop) -> None:
    assert sample.id is not None
    before = content_seq(session, sample.id)
    assert before is not None
    events.record(session, workshop_id=sample.id, kind="export.created", actor="organizer")
    assert content_seq(session, sample.id) == before
