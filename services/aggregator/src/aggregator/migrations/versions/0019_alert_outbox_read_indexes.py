"""Indexes for the dashboard's reads of alert_outbox (issue 13): the pages list counts
the open alerts of the pages it shows by page id, and the alerts list reads the newest
first; both read every alert without them, a table that grows with the city.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_alert_outbox_page_id", "alert_outbox", ["page_id"])
    op.create_index("ix_alert_outbox_created_at", "alert_outbox", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_alert_outbox_created_at", table_name="alert_outbox")
    op.drop_index("ix_alert_outbox_page_id", table_name="alert_outbox")
