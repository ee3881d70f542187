"""Edits (issue 15, "did my edit help?"): the last-modified dates answers give a page
and how many sources gave each, each page's confirmed date, its edits, and which alert
outbox rows are four-week edit reports rather than alerts.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "page_modified_votes",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("modified", sa.Date, primary_key=True),
        sa.Column("sources", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "page_edits",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("previous", sa.Date, nullable=False),
        sa.Column("confirmed_by", sa.String(8), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("report_id", sa.String(36), nullable=True),
    )
    op.create_index("ix_page_edits_unreported", "page_edits", ["report_id", "day"])
    op.add_column("pages", sa.Column("modified", sa.Date, nullable=True))
    op.add_column(
        "pages",
        sa.Column("modified_from_list", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "alert_outbox",
        sa.Column("edit_report", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("alert_outbox") as table:
        table.drop_column("edit_report")
    with op.batch_alter_table("pages") as table:
        table.drop_column("modified_from_list")
        table.drop_column("modified")
    op.drop_index("ix_page_edits_unreported", table_name="page_edits")
    op.drop_table("page_edits")
    op.drop_table("page_modified_votes")
