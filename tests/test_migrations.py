"""Migrations: head gives the models' schema; downgrade and upgrade round-trip."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

import app.models  # noqa: F401
from app.migrate import downgrade, upgrade


def test_upgrade_head_matches_models(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    engine.dispose()
    assert diff == []


def test_downgrade_upgrade_round_trip(database_url: str) -> None:
    downgrade(database_url, "base")
    engine = create_engine(database_url)
    assert "card" not in inspect(engine).get_table_names()
    upgrade(database_url)
    assert "card" in inspect(engine).get_table_names()
    engine.dispose()
