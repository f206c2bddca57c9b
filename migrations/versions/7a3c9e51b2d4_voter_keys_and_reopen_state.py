"""voter keys and the state closing changed

Votes carry a random per-person voter key, so that results count people, not
vote rows, after anonymize-on-close erases ``vote.participant_id`` (the
outcome must not change when a workshop closes). Workshops keep what closing
changed (phases, join lock) so that reopening can put it back.

Revision ID: 7a3c9e51b2d4
Revises: 4f521c6f13d2
Create Date: 2026-12-01 22:40:00
"""

import secrets

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "7a3c9e51b2d4"
down_revision = "4f521c6f13d2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workshop", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reopen_state", sa.JSON(), nullable=True))
    with op.batch_alter_table("participant", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("voter_key", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
    with op.batch_alter_table("vote", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("voter_key", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_vote_voter_key"), ["voter_key"], unique=False)
    # Existing votes of people still known get their person's new key; votes
    # already anonymized stay without one (results count them as before).
    conn = op.get_bind()
    voters = conn.execute(
        sa.text("SELECT DISTINCT participant_id FROM vote WHERE participant_id IS NOT NULL")
    ).scalars()
    for pid in list(voters):
        key = secrets.token_hex(16)
        conn.execute(
            sa.text("UPDATE participant SET voter_key = :k WHERE id = :p"), {"k": key, "p": pid}
        )
        conn.execute(
            sa.text("UPDATE vote SET voter_key = :k WHERE participant_id = :p"),
            {"k": key, "p": pid},
        )


def downgrade() -> None:
    with op.batch_alter_table("vote", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vote_voter_key"))
        batch_op.drop_column("voter_key")
    with op.batch_alter_table("participant", schema=None) as batch_op:
        batch_op.drop_column("voter_key")
    with op.batch_alter_table("workshop", schema=None) as batch_op:
        batch_op.drop_column("reopen_state")
