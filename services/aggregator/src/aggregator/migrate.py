"""`python -m aggregator.migrate`: bring the aggregator database to the latest schema."""

from __future__ import annotations

from pathlib import Path

from koe_kit.db import migrate_command, upgrade

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(database_url: str) -> None:
    upgrade(database_url, MIGRATIONS)


if __name__ == "__main__":
    migrate_command("aggregator", MIGRATIONS)
