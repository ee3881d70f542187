"""What one source contributed (issue 11, "Numbers one person cannot move"): responses per
page, city-local day and source, whether each processed event counted or was excess, and
the excess per page and day.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_counts",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("source", sa.String(32), primary_key=True),
        # Responses of this source counted in the page's scores that day (at most the cap).
        sa.Column("counted", sa.Integer, nullable=False, server_default="0"),
        # Responses beyond the cap: kept for admins, never in scores or alerts.
        sa.Column("excess", sa.Integer, nullable=False, server_default="0"),
        postgresql_with={"fillfactor": 70},
    )
    # Pruning forgets sources by day (KOE_SOURCE_KEEP_DAYS); counts stay.
    op.create_index("ix_source_counts_day", "source_counts", ["day"])
    op.add_column(
        "processed_events",
        sa.Column("excess", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "daily_excess",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("responses", sa.Integer, nullable=False, server_default="0"),
        postgresql_with={"fillfactor": 70},
    )


def downgrade() -> None:
    op.drop_table("daily_excess")
    with op.batch_alter_table("processed_events") as batch:
        batch.drop_column("excess")
    op.drop_index("ix_source_counts_day", table_name="source_counts")
    op.drop_table("source_counts")
