"""Looking up the workshop and the caller only reads: on SQLite those
transactions begin as plain (deferred) ones, so a page view or the lookup
before a write never queues for the single write lock; the write itself
still begins IMMEDIATE (read-then-write must not fail as busy)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlmodel import Session

from tests import factories as f


@pytest.fixture
def begins(client: TestClient) -> Iterator[list[str]]:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    if engine.dialect.name != "sqlite":
        pytest.skip("BEGIN IMMEDIATE is SQLite's; PostgreSQL has row locks")
    seen: list[str] = []

    def log(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("BEGIN"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", log)
    yield seen
    event.remove(engine, "before_cursor_execute", log)


def test_lookups_read_and_only_the_write_takes_the_lock(
    client: TestClient, session: Session, begins: list[str]
) -> None:
    ws = f.workshop(session, private_writing=False)
    f.set_phase(session, ws, 0, "collect")
    session.close()
    r = client.post(
        f"/api/v1/workshops/{ws.code}/participants",
        json={"display_name": "Ana", "affiliation": ws.affiliations[0]},
    )
    assert r.status_code == 201, r.text
    assert begins == ["BEGIN", "BEGIN IMMEDIATE"]  # the workshop, then the join
    token = f.bearer(r.json()["token"])
    begins.clear()
    assert client.get(f"/api/v1/workshops/{ws.code}/me", headers=token).status_code == 200
    assert begins and "BEGIN IMMEDIATE" not in begins[:2]  # workshop and participant lookups
