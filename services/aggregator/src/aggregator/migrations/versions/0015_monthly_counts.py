"""Monthly rows (retention.py): daily rows older than KOE_DAILY_KEEP_YEARS are folded
into one row per page and month, so the daily tables stop growing with the years kept.
The day indexes let the fold find old rows of the tables that had none.

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def _answers() -> list[sa.Column]:
    return [
        sa.Column(name, sa.Integer, nullable=False, server_default="0")
        for name in ("yes", "neutral", "no")
    ]


def _responses() -> sa.Column:
    return sa.Column("responses", sa.Integer, nullable=False, server_default="0")


def _key(*more: tuple[str, int]) -> list[sa.Column]:
    """page_id, month and the other key columns (name, length)."""
    return [
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("month", sa.Date, primary_key=True),
        *(sa.Column(name, sa.String(length), primary_key=True) for name, length in more),
    ]


def upgrade() -> None:
    op.create_table(
        "monthly_counts",
        *_key(("question", 32)),
        *_answers(),
    )
    op.create_table("monthly_responses", *_key(), _responses())
    op.create_table("monthly_excess", *_key(), _responses())
    op.create_table(
        "monthly_locale_counts",
        *_key(("locale", 16), ("question", 32)),
        *_answers(),
    )
    op.create_table(
        "monthly_locale_responses",
        *_key(("locale", 16)),
        _responses(),
    )
    for table in ("daily_excess", "daily_locale_counts", "daily_locale_responses"):
        op.create_index(f"ix_{table}_day", table, ["day"])


def downgrade() -> None:
    for table in ("daily_excess", "daily_locale_counts", "daily_locale_responses"):
        op.drop_index(f"ix_{table}_day", table_name=table)
    for table in (
        "monthly_locale_responses",
        "monthly_locale_counts",
        "monthly_excess",
        "monthly_responses",
        "monthly_counts",
    ):
        op.drop_table(table)
