"""responses.locale: room for the catalogue's longer tags (ja-x-easy, zh-Hans)

Revision ID: 0006_locale_tags
Revises: 0005_used_challenges
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_locale_tags"
down_revision = "0005_used_challenges"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch: SQLite alters a column's type only by copying the table.
    with op.batch_alter_table("responses") as table:
        table.alter_column("locale", type_=sa.String(16), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("responses") as table:
        table.alter_column("locale", type_=sa.String(8), existing_nullable=False)
