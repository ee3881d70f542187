"""Initial aggregator schema: processed events, daily counts and responses, pages, alerts.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# Counts, responses and pages are updated in place by every batch that touches them;
# free room in each heap page lets PostgreSQL update without new index entries (HOT).
# SQLite ignores the option.
UPDATED_IN_PLACE: dict[str, Any] = {"postgresql_with": {"fillfactor": 70}}


def upgrade() -> None:
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("page_id", sa.String(128), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "daily_counts",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("question", sa.String(32), primary_key=True),
        sa.Column("yes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("neutral", sa.Integer, nullable=False, server_default="0"),
        sa.Column("no", sa.Integer, nullable=False, server_default="0"),
        **UPDATED_IN_PLACE,
    )
    op.create_table(
        "daily_responses",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("responses", sa.Integer, nullable=False, server_default="0"),
        **UPDATED_IN_PLACE,
    )
    op.create_table(
        "pages",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("title", sa.String(200), nullable=True),
        sa.Column("division", sa.String(64), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        **UPDATED_IN_PLACE,
    )
    op.create_index("ix_pages_division", "pages", ["division"])
    op.create_table(
        "alert_state",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("question", sa.String(32), primary_key=True),
        sa.Column("last_alert_day", sa.Date, nullable=False),
        sa.Column("last_alert_id", sa.String(36), nullable=False),
    )
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(36), nullable=False, unique=True),
        sa.Column("page_id", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_alert_outbox_unsent", "alert_outbox", ["sent_at", "id"])


def downgrade() -> None:
    op.drop_table("alert_outbox")
    op.drop_table("alert_state")
    op.drop_index("ix_pages_division", "pages")
    op.drop_table("pages")
    op.drop_table("daily_responses")
    op.drop_table("daily_counts")
    op.drop_table("processed_events")
