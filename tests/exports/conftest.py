from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.exports import FORMATS, ExportFile, export_workshop
from app.models import Workshop
from tests.exports import factory


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    yield from factory.make_test_engine(tmp_path)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def sample(session: Session) -> Workshop:
    return factory.sample_workshop(session)


def _render_all(tmp: Path, *, participant_annex: bool) -> dict[str, ExportFile]:
    # Rendered once per module and the database dropped at once, so that a
    # shared PostgreSQL database is free again for the per-test fixtures.
    engines = factory.make_test_engine(tmp)
    try:
        with Session(next(engines), expire_on_commit=False) as s:
            ws = factory.sample_workshop(s, participant_annex=participant_annex)
            assert ws.id is not None
            return {fmt: export_workshop(s, ws.id, fmt) for fmt in FORMATS}
    finally:
        engines.close()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExportFile]:
    """Every format of the sample workshop, Chatham House defaults."""
    return _render_all(tmp_path_factory.mktemp("rendered"), participant_annex=False)


@pytest.fixture(scope="module")
def rendered_with_annex(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExportFile]:
    """Every format with the organizer's participant annex switched on."""
    return _render_all(tmp_path_factory.mktemp("annex"), participant_annex=True)
