"""Responses a later one from the same client replaces (issue 3): each processed event
keeps its day and answers, so a replacing event can un-count it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

QUESTIONS = ("findability", "clarity", "usefulness")


def upgrade() -> None:
    # Nullable: events counted before this revision have nothing to un-count with,
    # and a replacement of one of those simply counts the new response.
    op.add_column("processed_events", sa.Column("day", sa.Date, nullable=True))
    for question in QUESTIONS:
        op.add_column("processed_events", sa.Column(question, sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processed_events") as batch:
        for question in reversed(QUESTIONS):
            batch.drop_column(question)
        batch.drop_column("day")
