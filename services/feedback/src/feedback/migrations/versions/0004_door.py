"""The door (issue 11): source_keys, answer_tokens, budgets and known_pages replace
client_guard; responses gain a source and lose the unique token (a change of mind keeps
its page view's token); received_at is indexed for retention.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("client_guard")
    with op.batch_alter_table("responses") as batch:
        batch.drop_constraint("uq_responses_client_token", type_="unique")
        batch.add_column(sa.Column("source", sa.String(32), nullable=True))
    op.create_index("ix_responses_received_at", "responses", ["received_at"])
    op.create_table(
        "source_keys",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "answer_tokens",
        sa.Column("client_token", sa.String(36), primary_key=True),
        sa.Column("page_id", sa.String(128), nullable=False),
        sa.Column("response_id", sa.String(36), nullable=False),
        sa.Column("answers", sa.String(200), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_answer_tokens_first_at", "answer_tokens", ["first_at"])
    # A token already stored stays a retry of its response (tokens.canonical_answers:
    # the questions' values in survey order, joined by commas).
    op.execute(
        "INSERT INTO answer_tokens (client_token, page_id, response_id, answers, first_at)"
        " SELECT client_token, page_id, id, COALESCE(findability, '') || ','"
        " || COALESCE(clarity, '') || ',' || COALESCE(usefulness, ''), received_at"
        " FROM responses WHERE client_token IS NOT NULL"
    )
    op.create_table(
        "budgets",
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("scope", sa.String(160), primary_key=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.create_index("ix_budgets_ends_at", "budgets", ["ends_at"])
    op.create_table(
        "known_pages",
        sa.Column("page_id", sa.String(128), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Every page answered so far keeps the URL of its first answer.
    op.execute(
        "INSERT INTO known_pages (page_id, url, created_at)"
        " SELECT r.page_id, r.page_url, r.received_at FROM responses r"
        " WHERE r.id = (SELECT f.id FROM responses f WHERE f.page_id = r.page_id"
        " ORDER BY f.received_at, f.id LIMIT 1)"
    )


def downgrade() -> None:
    op.drop_table("known_pages")
    op.drop_index("ix_budgets_ends_at", table_name="budgets")
    op.drop_table("budgets")
    op.drop_index("ix_answer_tokens_first_at", table_name="answer_tokens")
    op.drop_table("answer_tokens")
    op.drop_table("source_keys")
    op.drop_index("ix_responses_received_at", table_name="responses")
    with op.batch_alter_table("responses") as batch:
        batch.drop_column("source")
    # Two responses of one page view (a change of mind) share a token: keep the first's.
    op.execute(
        "UPDATE responses SET client_token = NULL WHERE replaces IS NOT NULL"
        " AND client_token IS NOT NULL"
    )
    with op.batch_alter_table("responses") as batch:
        batch.create_unique_constraint("uq_responses_client_token", ["client_token"])
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
