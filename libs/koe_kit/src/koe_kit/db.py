"""Database engine, sessions and migrations, for PostgreSQL and SQLite alike.

No module-level engine: entry points build one from their settings and own the
session (per request in Flask, per batch in a consumer). Domain functions take
a session and never commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, Insert, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from koe_kit.config import ConfigError, EnvReader, exit_on_config_error


def default_database_url(service: str) -> str:
    """The embedded default: each service its own SQLite file under var/."""
    return f"sqlite:///var/{service}.db"


def make_engine(url: str, **options: Any) -> Engine:
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; plain postgresql:// URLs would ask for psycopg2.
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        options.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    options.setdefault("pool_pre_ping", True)
    return create_engine(url, **options)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a consumer writes; busy_timeout makes writers
    # from several processes (gunicorn workers, the relay) wait instead of fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit if the block finishes, roll back if it raises."""
    with factory() as session, session.begin():
        yield session


def dialect_insert(session: Session, table: Any) -> Insert:
    """INSERT that knows ON CONFLICT on both PostgreSQL and SQLite."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database {name!r}: koe runs on PostgreSQL or SQLite")


def upgrade(url: str, migrations_dir: Path) -> None:
    """Apply every Alembic migration of one service to its database."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["engine"] = make_engine(url)
    command.upgrade(config, "head")


def migrate_command(service: str, migrations_dir: Path) -> None:
    """The body of `python -m <service>.migrate`: needs nothing but DATABASE_URL."""
    reader = EnvReader()
    url = reader.str("DATABASE_URL", default_database_url(service))
    try:
        reader.check()
    except ConfigError as exc:
        exit_on_config_error(exc)
    upgrade(url, migrations_dir)
    print(f"koe {service}: database is up to date")


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
