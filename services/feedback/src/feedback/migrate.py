"""`python -m feedback.migrate`: bring the feedback database to the latest schema."""

from __future__ import annotations

from pathlib import Path

from feedback.config import DEFAULT_DATABASE_URL
from koe_kit.config import ConfigError, EnvReader, exit_on_config_error
from koe_kit.db import upgrade

MIGRATIONS = Path(__file__).parent / "migrations"


def main() -> None:
    # Only the database is needed to migrate; not the origins or Kafka.
    reader = EnvReader()
    url = reader.str("DATABASE_URL", DEFAULT_DATABASE_URL)
    try:
        reader.check()
    except ConfigError as exc:
        exit_on_config_error(exc)
    upgrade(url, MIGRATIONS)


if __name__ == "__main__":
    main()
