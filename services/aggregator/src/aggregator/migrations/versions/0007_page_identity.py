"""Pages keep their identity and new pages are not free (issue 11): whether a page is
shown, how many sources answered it, whether its title is the city's page list's, the
titles answers sent with how many sources sent each; a page's division is no longer
stored (divisions.yaml decides it from the URL whenever it is read).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pages") as batch:
        batch.add_column(
            sa.Column("title_from_list", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("sources", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("visible", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.drop_index("ix_pages_division")
        batch.drop_column("division")
    # Every page so far came from answers counted before sources existed, and was shown:
    # it stays shown.
    op.execute(sa.text("UPDATE pages SET visible = :yes").bindparams(yes=True))
    op.create_table(
        "page_titles",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("title", sa.String(200), primary_key=True),
        sa.Column("sources", sa.Integer, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("page_titles")
    with op.batch_alter_table("pages") as batch:
        batch.add_column(sa.Column("division", sa.String(64), nullable=True))
        batch.create_index("ix_pages_division", ["division"])
        batch.drop_column("visible")
        batch.drop_column("sources")
        batch.drop_column("title_from_list")
