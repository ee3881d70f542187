"""`python -m aggregator.migrate`: bring the aggregator's database to the latest schema."""

from __future__ import annotations

from pathlib import Path

from aggregator.config import load_settings
from koe_kit.config import ConfigError, exit_on_config_error
from koe_kit.db import upgrade

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def migrate(database_url: str) -> None:
    upgrade(database_url, MIGRATIONS_DIR)


def main() -> None:
    try:
        settings = load_settings()
    except ConfigError as exc:
        exit_on_config_error(exc)
    migrate(settings.database_url)
    print("koe aggregator: database is up to date")


if __name__ == "__main__":
    main()
