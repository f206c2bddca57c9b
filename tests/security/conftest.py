"""Fixtures for the security proofs: a database shared by a whole module (the
route walk seeds a fresh workshop per route instead of a fresh database), the
app on it, and a real server process (``lessons serve``) with a scripted
workshop whose every response, frame and export is recorded."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.config import Settings
from app.migrate import upgrade
from tests.conftest import PG_URL, SECRET, _pg_available

from .live import LiveServer, Recording, run_scenario


@contextmanager
def fresh_database(directory: Path) -> Iterator[str]:
    """A migrated database: SQLite in ``directory``, or a new PostgreSQL
    database when TEST_DATABASE_URL is set (as tests/conftest.py does)."""
    if not PG_URL:
        url = f"sqlite:///{directory / 'test.db'}"
        upgrade(url)
        yield url
        return
    if not _pg_available(PG_URL):
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but not reachable at {PG_URL}")
        pytest.skip("PostgreSQL not reachable")
    base = make_url(PG_URL)
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": SECRET,
        "data_dir": data_dir,
        "public_url": "http://testserver",
        "coalesce_ms": 20,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def module_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    """A real server, a scripted workshop of 20 participants, and everything
    every role received. Shared by the capture and the log tests."""
    server = LiveServer(tmp_path_factory.mktemp("live"), log_level="info")
    server.prepare()
    server.start()
    try:
        recording = run_scenario(server)
        recording.server_log = server.log_text()
        recording.server_alive = server.alive()
        yield recording
    finally:
        server.stop()


@pytest.fixture
def client_with(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """``client_with(**settings)``: a TestClient on a fresh database with
    these settings changed (small rate limits, short sessions...)."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    stack = ExitStack()

    def make(**overrides: Any) -> TestClient:
        app = create_app(make_settings(database_url, tmp_path, **overrides))
        return stack.enter_context(TestClient(app))

    with stack:
        yield make
