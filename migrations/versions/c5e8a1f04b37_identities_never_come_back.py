"""identities that never come back

Workshops get a ``uid`` (128 random bits, unique): facilitator and projector
keys, cookie names, socket groups, broker messages and prepared files are
keyed by it instead of the id. Existing workshops get a fresh random uid, so
their facilitator and projector links (and participants' cookies) change once
with this upgrade: the old ones may have been those of a deleted workshop
whose id was given again (see the README's note on upgrading).

On SQLite every table is rebuilt with AUTOINCREMENT, so that the id of the
newest row deleted is never given to the next row inserted (PostgreSQL
sequences never go back already). The rebuild copies the rows as they are;
foreign keys must be off (they are on a plain Alembic connection), or
dropping a parent table would cascade.

Revision ID: c5e8a1f04b37
Revises: 7a3c9e51b2d4
Create Date: 2026-12-08 10:00:00
"""

import secrets

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "c5e8a1f04b37"
down_revision = "7a3c9e51b2d4"
branch_labels = None
depends_on = None

# Parents first, as the initial schema creates them.
TABLES = (
    "organizer",
    "authsession",
    "workshop",
    "event",
    "focus_area",
    "participant",
    "cluster",
    "card",
    "rating",
    "vote",
)


def _sqlite() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return False
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("foreign keys must be off while SQLite tables are rebuilt")
    return True


def _rebuild(table: str, autoincrement: bool) -> None:
    with op.batch_alter_table(
        table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass


def upgrade() -> None:
    sqlite = _sqlite()
    with op.batch_alter_table("workshop", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("uid", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
    conn = op.get_bind()
    for (wid,) in conn.execute(sa.text("SELECT id FROM workshop")).all():
        conn.execute(
            sa.text("UPDATE workshop SET uid = :uid WHERE id = :id"),
            {"uid": secrets.token_hex(16), "id": wid},
        )
    with op.batch_alter_table(
        "workshop",
        schema=None,
        recreate="always" if sqlite else "auto",
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch_op:
        batch_op.alter_column(
            "uid", existing_type=sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False
        )
        batch_op.create_index(batch_op.f("ix_workshop_uid"), ["uid"], unique=True)
    if sqlite:
        for table in TABLES:
            if table != "workshop":
                _rebuild(table, True)


def downgrade() -> None:
    sqlite = _sqlite()
    with op.batch_alter_table(
        "workshop",
        schema=None,
        recreate="always" if sqlite else "auto",
        table_kwargs={"sqlite_autoincrement": False},
    ) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workshop_uid"))
        batch_op.drop_column("uid")
    if sqlite:
        for table in TABLES:
            if table != "workshop":
                _rebuild(table, False)
