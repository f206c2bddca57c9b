"""The database engine and sessions. SQLite gets WAL, synchronous=FULL,
foreign keys, a busy timeout and write transactions that begin IMMEDIATE, so
concurrent writers queue instead of failing; PostgreSQL is used as is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from app.config import Settings


def make_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        if ":memory:" not in url:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            # At least as many connections as worker threads (40): a thread
            # must never wait for a connection held by a request that waits
            # for a thread.
            **({} if ":memory:" in url else {"pool_size": 20, "max_overflow": 40}),
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=30)


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling is switched off (isolation_level=None)
    # so that we can issue BEGIN IMMEDIATE ourselves: a deferred transaction that
    # reads and then writes fails with "database is locked" under concurrency.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Readers (page renders, websocket pushes) must not queue behind
        # writers: WAL lets a deferred transaction read a consistent snapshot.
        if conn.get_execution_options().get("readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def read_engine(engine: Engine) -> Engine:
    """The same pool, for transactions that only read."""
    return engine.execution_options(readonly=True)


def session_scope(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def checkpoint_sqlite(engine: Engine) -> None:
    """Fold the WAL into the database file and truncate it, so deleted rows
    do not linger in the -wal file. Runs outside any transaction: our BEGIN
    IMMEDIATE hook would otherwise make the checkpoint fail as busy."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cur.close()
    finally:
        raw.close()
