"""The migration to identities that never come back, on a database holding
data: every row kept as it was, each workshop given its own random uid, and
on SQLite the tables rebuilt with AUTOINCREMENT (foreign keys intact), so
that deleting the newest workshop after the upgrade frees no id."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import create_engine, text

from app.migrate import downgrade, upgrade

BEFORE = "7a3c9e51b2d4"
AFTER = "c5e8a1f04b37"
ROWS = {
    "organizer": "SELECT id, name FROM organizer ORDER BY id",
    "workshop": "SELECT id, code, title, organizer_id FROM workshop ORDER BY id",
    "focus_area": "SELECT id, workshop_id, title FROM focus_area ORDER BY id",
    "participant": "SELECT id, workshop_id, display_name FROM participant ORDER BY id",
    "card": "SELECT id, workshop_id, focus_area_id, author_id, title FROM card ORDER BY id",
    "event": "SELECT id, workshop_id, seq, kind FROM event ORDER BY id",
}


def _fill(conn) -> None:  # type: ignore[no-untyped-def]
    conn.execute(
        text(
            "INSERT INTO organizer (id, name, password_hash, created_at) "
            "VALUES (1, 'Org', 'x', '2026-01-01')"
        )
    )
    for wid in (1, 2, 3):
        conn.execute(
            text(
                "INSERT INTO workshop (id, title, venue, hosted_by, organizer_id, code, "
                "key_rotation, joins_locked, closed, executive_summary, affiliations, template, "
                "last_seq, created_at, private_writing, vote_budget, vote_cap, blind_voting, "
                "anonymize_on_close, classification, participant_annex) VALUES (:id, :t, '', "
                "'', 1, :c, 0, false, false, '', '[]', '', 1, '2026-01-01', false, 5, 3, "
                "true, true, '', false)"
            ),
            {"id": wid, "t": f"Workshop {wid}", "c": f"CODE{wid}"},
        )
        conn.execute(
            text(
                "INSERT INTO focus_area (id, workshop_id, position, title, prompt, kinds, phase, "
                "revealed, ratings_enabled, late_cards) VALUES (:id, :w, 0, 'Area', '', '[]', "
                "'collect', false, false, false)"
            ),
            {"id": wid, "w": wid},
        )
        conn.execute(
            text(
                "INSERT INTO participant (id, workshop_id, display_name, affiliation, role, "
                "token_hash, joined_at) VALUES (:id, :w, :n, '', 'participant', :h, '2026-01-01')"
            ),
            {"id": wid, "w": wid, "n": f"P{wid}", "h": f"{wid:064d}"},
        )
        conn.execute(
            text(
                "INSERT INTO card (id, workshop_id, focus_area_id, kind, title, body, context, "
                "author_id, status, version, created_at, updated_at) VALUES (:id, :w, :w, "
                "'tool', :t, '', '{}', :w, 'visible', 1, '2026-01-01', '2026-01-01')"
            ),
            {"id": wid, "w": wid, "t": f"Card {wid}"},
        )
        conn.execute(
            text(
                "INSERT INTO event (id, workshop_id, seq, kind, actor_role, payload, created_at) "
                "VALUES (:id, :w, 1, 'workshop.created', 'organizer', '{}', '2026-01-01')"
            ),
            {"id": wid, "w": wid},
        )
    if conn.dialect.name == "postgresql":  # rows inserted with their ids: move the sequences on
        for table in ("organizer", "workshop", "focus_area", "participant", "card", "event"):
            conn.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 3)")  # noqa: S608
            )


def test_existing_rows_are_kept_and_get_their_own_uid(database_url: str, tmp_path: Path) -> None:
    downgrade(database_url, BEFORE)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        _fill(conn)
        # The newest workshop is deleted before the upgrade...
        for table in ("event", "card", "participant", "focus_area"):
            conn.execute(text(f"DELETE FROM {table} WHERE workshop_id = 3"))  # noqa: S608
        conn.execute(text("DELETE FROM workshop WHERE id = 3"))
        before = {name: conn.execute(text(q)).all() for name, q in ROWS.items()}
    upgrade(database_url, AFTER)
    with engine.begin() as conn:
        after = {name: conn.execute(text(q)).all() for name, q in ROWS.items()}
        uids = conn.execute(text("SELECT uid FROM workshop ORDER BY id")).scalars().all()
        if conn.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    assert after == before
    assert len(uids) == len(set(uids)) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}", u) for u in uids)
    with engine.begin() as conn:
        # ... and on PostgreSQL (a sequence) its id is never given again; on SQLite
        # the rebuilt table starts from the largest id it holds. After the upgrade,
        # deleting the newest frees nothing on either.
        conn.execute(text("DELETE FROM event WHERE workshop_id = 2"))
        conn.execute(text("DELETE FROM card WHERE workshop_id = 2"))
        conn.execute(text("DELETE FROM participant WHERE workshop_id = 2"))
        conn.execute(text("DELETE FROM focus_area WHERE workshop_id = 2"))
        conn.execute(text("DELETE FROM workshop WHERE id = 2"))
        new = conn.execute(
            text(
                "INSERT INTO workshop (uid, title, venue, hosted_by, code, key_rotation, "
                "joins_locked, closed, executive_summary, affiliations, template, last_seq, "
                "created_at, private_writing, vote_budget, vote_cap, blind_voting, "
                "anonymize_on_close, classification, participant_annex) VALUES (:u, 'New', '', "
                "'', 'NEWCODE', 0, false, false, '', '[]', '', 0, '2026-01-02', false, 5, 3, true, "
                "true, '', false) RETURNING id"
            ),
            {"u": "f" * 32},
        ).scalar_one()
    assert new > 2  # SQLite: 3 (an id freed before the upgrade is given once); PostgreSQL: 4
    engine.dispose()
    # And back down, keeping the rows.
    downgrade(database_url, BEFORE)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM workshop")).scalar_one() == 2
    engine.dispose()
