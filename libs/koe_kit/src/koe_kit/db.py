"""Database engine, sessions and migrations, for PostgreSQL and SQLite alike.

No module-level engine: entry points build one from their settings and own the
session (per request in Flask, per batch in a consumer). Domain functions take
a session and never commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    column,
    create_engine,
    event,
    func,
    literal,
    make_url,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY, JSON
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql import Subquery

from koe_kit.config import EnvReader, load_or_exit

# psycopg waits 130 s for a new connection by default. A database cut off by the
# network drops packets instead of refusing them, so every request (and the relay)
# would hang that long; after this many seconds it is a 503 or a retry instead.
# A DATABASE_URL may name its own: ...?connect_timeout=N.
PG_CONNECT_TIMEOUT_S = 5


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
    if "connect_timeout" not in make_url(url).query:
        options.setdefault("connect_args", {}).setdefault("connect_timeout", PG_CONNECT_TIMEOUT_S)
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


def on_postgresql(session: Session) -> bool:
    name = session.get_bind().dialect.name
    if name not in ("postgresql", "sqlite"):
        raise RuntimeError(f"unsupported database {name!r}: koe runs on PostgreSQL or SQLite")
    return name == "postgresql"


# Any SELECT, of any columns (Select is generic over each column's type).
AnySelect = TypeVar("AnySelect", bound=Select[*tuple[Any, ...]])


def claim(session: Session, query: AnySelect) -> AnySelect:
    """`query` as a claim on its rows until the transaction ends.

    On PostgreSQL FOR UPDATE SKIP LOCKED: processes sharing a table (outbox
    publishers, pruners) each take rows no other one holds, and none waits for
    another. SQLite lets one writer in at a time; the query stays as it is.
    """
    if on_postgresql(session):
        return query.with_for_update(skip_locked=True)
    return query


# The INSERT of either dialect: both know ON CONFLICT (on_conflict_do_nothing/update, excluded).
Upsert = postgresql.Insert | sqlite.Insert


def dialect_insert(session: Session, table: Any) -> Upsert:
    """INSERT that knows ON CONFLICT on both PostgreSQL and SQLite."""
    return postgresql.insert(table) if on_postgresql(session) else sqlite.insert(table)


def table_of(model: type[DeclarativeBase]) -> Table:
    """A mapped class's Table (SQLAlchemy types `__table__` as any FROM clause)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def rows_affected(result: object) -> int:
    """The rows an UPDATE or DELETE touched (`session.execute` types its result as a plain
    Result, which has no rowcount; a DML statement's is a CursorResult)."""
    assert isinstance(result, CursorResult)
    return result.rowcount


def bulk_insert(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    on_conflict: Callable[[Upsert], Upsert] | None = None,
) -> None:
    """INSERT `rows` (all with the same keys), through `on_conflict` if given.

    On PostgreSQL it is one statement over one JSON parameter: psycopg's
    executemany sends one statement per row, which made up most of an aggregator
    batch's time, and json.dumps is several times cheaper than psycopg's
    adaptation of one array per column. SQLite runs executemany in-process,
    cheap enough.
    """
    insert = dialect_insert(session, table)
    statement: Upsert
    parameters: Any
    if not on_postgresql(session):
        statement, parameters = insert, rows
    else:
        names = list(rows[0])
        recordset = (
            func.json_to_recordset(cast(bindparam("rows", type_=Text), JSON))
            .table_valued(*(column(name, table.c[name].type) for name in names))
            .render_derived(with_types=True)
        )
        statement = insert.from_select(names, select(*recordset.c))
        parameters = {"rows": json.dumps(rows, ensure_ascii=False, default=_isoformat)}
    if on_conflict is not None:
        statement = on_conflict(statement)
    session.execute(statement, parameters)


def bulk_add(
    session: Session, table: Table, rows: list[dict[str, Any]], keys: list[str], added: list[str]
) -> None:
    """INSERT `rows`; a row whose `keys` exist already adds its `added` columns to the
    stored ones instead (counters kept by many batches). Nothing to do for no rows."""
    if not rows:
        return

    def add(insert: Upsert) -> Upsert:  # the dialect's INSERT, with ON CONFLICT
        return insert.on_conflict_do_update(
            index_elements=keys,
            set_={name: table.c[name] + insert.excluded[name] for name in added},
        )

    bulk_insert(session, table, rows, add)


def _isoformat(value: date | datetime) -> str:
    return value.isoformat()


def among(session: Session, column_: Any, values: list[Any]) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `= ANY(array)`, one parameter instead of one
    per value, so the statement text (parsed and prepared once) does not vary with
    the number of values."""
    if on_postgresql(session):
        array = ARRAY(column_.type)
        return column_ == any_(cast(bindparam(None, values, type_=array), array))
    return column_.in_(values)


def among_rows(
    session: Session, columns: tuple[Any, ...], rows: list[tuple[Any, ...]]
) -> ColumnElement[bool]:
    """`(columns) IN rows`: exactly these combinations of values (a composite key).

    On PostgreSQL the rows arrive as one array per column and are unnested into a
    semi-join, which finds each row through the key's index; `a = ANY(..) AND b = ANY(..)`
    would instead test every candidate row against whole arrays. SQLite compares row
    values against the list itself.
    """
    if not on_postgresql(session):
        return tuple_(*columns).in_(rows)
    names = [f"k{index}" for index in range(len(columns))]
    arrays = [
        cast(bindparam(None, [row[index] for row in rows], type_=ARRAY(c.type)), ARRAY(c.type))
        for index, c in enumerate(columns)
    ]
    keys = func.unnest(*arrays).table_valued(*names).render_derived()
    return tuple_(*columns).in_(select(*keys.c))


def keyed_range(
    session: Session, table: Table, key: Any, ranged: Any, keys: list[Any], first: Any, last: Any
) -> Subquery:
    """The rows of `table` whose `key` is among `keys` and whose `ranged` column is from
    `first` to `last`, each key's rows found through a (key, ranged, ...) index.

    On PostgreSQL, `key = ANY(..) AND ranged BETWEEN ..` let the planner read every key's
    range through an index on `ranged` alone and filter out all but a few keys (the
    last 84 days of 10,000 pages for a screen's 100); as a join on the unnested keys it
    hashed them against the whole table. Here each key's rows are a LATERAL subquery
    whose range is a row comparison, which only the composite index answers, and which
    OFFSET 0 keeps from being flattened into that join: one short index scan per key,
    a cost bounded by the keys asked. SQLite finds them through the composite index from
    `key IN (..)` already.
    """
    if not on_postgresql(session):
        return select(table).where(key.in_(keys), ranged.between(first, last)).subquery("keyed")
    array = ARRAY(key.type)
    asked = (
        func.unnest(cast(bindparam(None, keys, type_=array), array))
        .table_valued("k")
        .render_derived("asked")
    )
    rows = (
        select(table)
        .where(
            key == asked.c.k,
            tuple_(key, ranged) >= tuple_(asked.c.k, literal(first, ranged.type)),
            tuple_(key, ranged) <= tuple_(asked.c.k, literal(last, ranged.type)),
        )
        .offset(0)
        .lateral("keyed_rows")
    )
    return select(rows).select_from(asked.join(rows, true())).subquery("keyed")


def upgrade(url: str, migrations_dir: Path) -> None:
    """Apply every Alembic migration of one service to its database."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["engine"] = make_engine(url)
    command.upgrade(config, "head")


@dataclass(frozen=True)
class MigrateSettings:
    """`python -m <service>.migrate` needs nothing but DATABASE_URL."""

    database_url: str


def migrate_command(service: str, migrations_dir: Path) -> None:
    """The body of `python -m <service>.migrate`."""

    def read(reader: EnvReader) -> MigrateSettings:
        return MigrateSettings(reader.str("DATABASE_URL", default_database_url(service)))

    upgrade(load_or_exit(read).database_url, migrations_dir)
    print(f"koe {service}: database is up to date")


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
