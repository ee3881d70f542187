"""The body of every service's Alembic env.py: run migrations on the engine
handed over by `koe_kit.db.upgrade` (online mode only; koe never emits SQL files).
"""

from __future__ import annotations

from alembic import context


def run_migrations() -> None:
    engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(connection=connection, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
