"""`python -m notifier.migrate`: bring the notifier's database to the latest schema."""

from __future__ import annotations

from pathlib import Path

from koe_kit.config import ConfigError, exit_on_config_error
from koe_kit.db import upgrade
from notifier.config import load_database_url

MIGRATIONS = Path(__file__).parent / "migrations"


def migrate(database_url: str) -> None:
    upgrade(database_url, MIGRATIONS)


def main() -> None:
    try:
        database_url = load_database_url()
    except ConfigError as exc:
        exit_on_config_error(exc)
    migrate(database_url)
    print("koe notifier: database is up to date")


if __name__ == "__main__":
    main()
