"""client_guard (rate limit and replacement per client and page); responses.replaces

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("responses", sa.Column("replaces", sa.String(36), nullable=True))
    op.create_table(
        "client_guard",
        sa.Column("client_hash", sa.String(64), primary_key=True),
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("last_response_id", sa.String(36), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_count", sa.Integer, nullable=False),
        sa.Column("replaced_id", sa.String(36), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("client_guard")
    with op.batch_alter_table("responses") as batch:
        batch.drop_column("replaces")
