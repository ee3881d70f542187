"""Alerts need a crowd (issue 11): an alert whose evidence is concentrated in few sources
or a short burst is recorded in alert_outbox but held for review, with the reason and the
evidence, until an admin releases it (then it is published like any other) or dismisses
it (never published). Who decided and when is kept.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_outbox") as batch:
        # crowd.REASONS; NULL: an alert that was never held.
        batch.add_column(sa.Column("held_reason", sa.String(32), nullable=True))
        # crowd.Evidence.as_json: the judged window's counts, never a source's hash.
        batch.add_column(sa.Column("held_evidence", sa.Text, nullable=True))
        batch.add_column(sa.Column("released_by", sa.String(254), nullable=True))
        batch.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("dismissed_by", sa.String(254), nullable=True))
        batch.add_column(sa.Column("dismissed_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_alert_outbox_held", ["held_reason"])


def downgrade() -> None:
    with op.batch_alter_table("alert_outbox") as batch:
        batch.drop_index("ix_alert_outbox_held")
        for column in (
            "dismissed_at",
            "dismissed_by",
            "released_at",
            "released_by",
            "held_evidence",
            "held_reason",
        ):
            batch.drop_column(column)
