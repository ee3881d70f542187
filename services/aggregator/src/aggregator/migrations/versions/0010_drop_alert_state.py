"""The drop rule's alert_state goes: the drop detector (detector_state, 0009) is the
only rule now (issue 12). Its open drops get no recovery notice from the detector,
which judges each page's history afresh; their drop emails were sent and stay in
alert_outbox.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("alert_state")


def downgrade() -> None:
    # The table as 0001 and 0004 left it, empty: the rule's state is not recoverable.
    op.create_table(
        "alert_state",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("question", sa.String(32), primary_key=True),
        sa.Column("last_alert_day", sa.Date, nullable=False),
        sa.Column("last_alert_id", sa.String(36), nullable=False),
        *(
            sa.Column(name, type_(), nullable=True)
            for name, type_ in (
                ("baseline_yes", sa.Integer),
                ("baseline_neutral", sa.Integer),
                ("baseline_no", sa.Integer),
                ("dropped_yes", sa.Integer),
                ("dropped_neutral", sa.Integer),
                ("dropped_no", sa.Integer),
                ("recovery_alert_id", lambda: sa.String(36)),
                ("recovered_day", sa.Date),
            )
        ),
    )
