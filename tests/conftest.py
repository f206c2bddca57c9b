"""Test fixtures: a fresh database per test (SQLite file, or PostgreSQL when
TEST_DATABASE_URL is set), the app on it, and TestClients for each role."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from app.config import Settings
from app.db import make_engine
from app.migrate import upgrade

SECRET = "test-secret-" + "x" * 40
PG_URL = os.environ.get("TEST_DATABASE_URL", "")


def _pg_available(url: str) -> bool:
    try:
        eng = create_engine(url)
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:
        return False


@contextmanager
def fresh_database(directory: Path) -> Iterator[str]:
    """A migrated database: SQLite in ``directory``, or a new PostgreSQL
    database when TEST_DATABASE_URL is set (failing, not skipping, when
    REQUIRE_POSTGRES=1 and the server is unreachable)."""
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


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        secret_key=SECRET,
        data_dir=tmp_path,
        public_url="http://testserver",
        coalesce_ms=20,
    )


@pytest.fixture
def engine(settings: Settings):  # type: ignore[no-untyped-def]
    eng = make_engine(settings)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def app(settings: Settings):  # type: ignore[no-untyped-def]
    from app.main import create_app

    return create_app(settings)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c
