"""digest_entries and digests: daily digests for divisions that want one email a day.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "digest_entries",
        sa.Column("alert_id", sa.String(36), primary_key=True),
        sa.Column("division_code", sa.String(64), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("digest_date", sa.Date(), nullable=True),
    )
    op.create_index("ix_digest_entries_waiting", "digest_entries", ["division_code", "digest_date"])
    op.create_table(
        "digests",
        sa.Column("division_code", sa.String(64), primary_key=True),
        sa.Column("digest_date", sa.Date(), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('sending', 'sent', 'failed', 'retrying')", name="ck_digests_status"
        ),
    )


def downgrade() -> None:
    op.drop_table("digests")
    op.drop_index("ix_digest_entries_waiting", "digest_entries")
    op.drop_table("digest_entries")
