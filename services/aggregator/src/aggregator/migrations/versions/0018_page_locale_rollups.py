"""Per-page, per-language window rollups (issue 13): the pages list's language filter
sorts and pages in SQL as the unfiltered list does (rollups.py).

Existing rollups are emptied and rollup_state set back to none, so the consumer's next
batch or idle tick sums both tables from the daily rows once (rollups.advance); until
then readers sum the daily rows as before.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_QUESTIONS = ("findability", "clarity", "usefulness")
_ANSWERS = ("yes", "neutral", "no")
# Frozen here (not imported from rollups.py): a migration must not change with the code.
_COLUMNS = [
    name
    for p in ("d7", "d28", "all")
    for name in [f"{p}_n"] + [f"{p}_{q}_{a}" for q in _QUESTIONS for a in _ANSWERS]
]


def upgrade() -> None:
    op.create_table(
        "page_locale_rollups",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("locale", sa.String(16), primary_key=True),
        *(sa.Column(name, sa.Integer, nullable=False, server_default="0") for name in _COLUMNS),
        postgresql_with={"fillfactor": 70},
    )
    op.execute("DELETE FROM page_rollups")
    op.execute("UPDATE rollup_state SET as_of = NULL")


def downgrade() -> None:
    op.drop_table("page_locale_rollups")
