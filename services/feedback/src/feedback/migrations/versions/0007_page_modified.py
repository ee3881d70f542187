"""responses.page_modified: the page's last-modified date its snippet carries

Revision ID: 0007_page_modified
Revises: 0006_locale_tags
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_page_modified"
down_revision = "0006_locale_tags"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("responses", sa.Column("page_modified", sa.Date, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("responses") as table:
        table.drop_column("page_modified")
