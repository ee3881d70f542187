"""Per-page window rollups (issue 13): lists sort and page in SQL (rollups.py).

The rows are filled by the consumer's first batch or idle tick (rollups.advance sums
the daily rows once); until then readers sum the daily rows as before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_QUESTIONS = ("findability", "clarity", "usefulness")
_ANSWERS = ("yes", "neutral", "no")
# Frozen here (not imported from rollups.py): a migration must not change with the code.
_COLUMNS = [
    name
    for p in ("d7", "d28", "all")
    for name in [f"{p}_n"] + [f"{p}_{q}_{a}" for q in _QUESTIONS for a in _ANSWERS]
]


def upgrade() -> None:
    op.create_table(
        "page_rollups",
        sa.Column("page_id", sa.String(128), primary_key=True),
        *(sa.Column(name, sa.Integer, nullable=False, server_default="0") for name in _COLUMNS),
        postgresql_with={"fillfactor": 70},
    )
    op.create_table(
        "rollup_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("as_of", sa.Date, nullable=True),
    )
    # rollups.advance reads the days since the last advance and the last 28 days.
    op.create_index("ix_daily_counts_day", "daily_counts", ["day"])
    op.create_index("ix_daily_responses_day", "daily_responses", ["day"])


def downgrade() -> None:
    op.drop_index("ix_daily_responses_day", "daily_responses")
    op.drop_index("ix_daily_counts_day", "daily_counts")
    op.drop_table("rollup_state")
    op.drop_table("page_rollups")
