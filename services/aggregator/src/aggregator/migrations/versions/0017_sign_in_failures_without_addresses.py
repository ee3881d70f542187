"""Failed sign-ins keep a keyed hash of the client's address, no longer the address
(issue 14): the rows written before hold raw addresses, and they matter to the
throttle for 15 minutes only, so they go. At worst a guesser gets a fresh window.

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM sign_in_failures")


def downgrade() -> None:
    # Nothing to bring back: the old code reads the hashed keys as it read addresses.
    pass
