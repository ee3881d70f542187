"""Alert recovery state (issue 4): what each open drop dropped from, and its recovery.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import TypeEngine

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Nullable: drops alerted before this revision have no stored baseline and stay
# closed (they cannot recover, and their cooldown works as before).
# (name, a callable that makes its type)
COLUMNS: list[tuple[str, Callable[[], TypeEngine[Any]]]] = [
    ("baseline_yes", sa.Integer),
    ("baseline_neutral", sa.Integer),
    ("baseline_no", sa.Integer),
    ("dropped_yes", sa.Integer),
    ("dropped_neutral", sa.Integer),
    ("dropped_no", sa.Integer),
    ("recovery_alert_id", lambda: sa.String(36)),
    ("recovered_day", sa.Date),
]


def upgrade() -> None:
    # batch mode: SQLite alters a table by copying it.
    with op.batch_alter_table("alert_state") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_state") as batch:
        for name, _type in reversed(COLUMNS):
            batch.drop_column(name)
