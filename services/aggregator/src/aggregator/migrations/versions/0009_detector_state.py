"""The drop detector's state per page and question (issue 12): what detector.State
keeps between the days it judges.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "detector_state",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("question", sa.String(32), primary_key=True),
        sa.Column("last_day", sa.Date, nullable=False),
        sa.Column("restart", sa.Date, nullable=True),
        sa.Column("quiet_until", sa.Date, nullable=True),
        sa.Column("streak", sa.Integer, nullable=False, server_default="0"),
        sa.Column("dropped_day", sa.Date, nullable=True),
        sa.Column("dropped_from_yes", sa.Integer, nullable=True),
        sa.Column("dropped_from_neutral", sa.Integer, nullable=True),
        sa.Column("dropped_from_no", sa.Integer, nullable=True),
        sa.Column("dropped_yes", sa.Integer, nullable=True),
        sa.Column("dropped_neutral", sa.Integer, nullable=True),
        sa.Column("dropped_no", sa.Integer, nullable=True),
        sa.Column("drop_alert_id", sa.String(36), nullable=True),
        # Updated in place once a day per row: room for HOT updates, as daily_counts.
        postgresql_with={"fillfactor": 70},
    )


def downgrade() -> None:
    op.drop_table("detector_state")
