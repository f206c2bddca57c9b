"""Fixtures for the security proofs: a database shared by a whole module (the
route walk seeds a fresh workshop per route instead of a fresh database), the
app on it, and a real server process (``lessons serve``) with a scripted
workshop whose every response, frame and export is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from tests.conftest import SECRET, fresh_database

from .live import LiveServer, Recording, run_scenario


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
