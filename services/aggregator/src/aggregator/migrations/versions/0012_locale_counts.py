"""Counts per locale (issue 15, "every resident's language"): the answers and responses
of each page, day and language the widget asked in, and each processed event's locale
so that a change of mind is un-counted from its own language.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("processed_events", sa.Column("locale", sa.String(16), nullable=True))
    op.create_table(
        "daily_locale_counts",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("locale", sa.String(16), primary_key=True),
        sa.Column("question", sa.String(32), primary_key=True),
        sa.Column("yes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("neutral", sa.Integer, nullable=False, server_default="0"),
        sa.Column("no", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "daily_locale_responses",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("locale", sa.String(16), primary_key=True),
        sa.Column("responses", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("daily_locale_responses")
    op.drop_table("daily_locale_counts")
    with op.batch_alter_table("processed_events") as table:
        table.drop_column("locale")
