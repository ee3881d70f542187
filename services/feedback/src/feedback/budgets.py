"""Budgets per source: how many answers one network may send, per page and across pages,
and how many new pages it may bring to koe.

A budget is a row per (source, scope): a count that runs until ends_at, then starts
again from one. A request spends from all its scopes in one upsert (upsert(), then
check()), in its own transaction; over any of them it is refused (429 + Retry-After)
and its rollback takes the spending back with everything else: a refusal stores
nothing.

README, "Spam and abuse", sizes the defaults: they are far above what a whole page
gets from everyone (so a city-hall PC pool or a carrier NAT never meets them), and
the aggregator counts only a few answers per page, day and source anyway; budgets
bound the work and the rows one source can make, they do not decide the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Insert, bindparam, case, delete, literal, select, union_all
from sqlalchemy.orm import Session

from feedback.models import Budget
from koe_kit.db import dialect_insert, rows_affected, table_of

HOUR_S = 3600
DAY_S = 24 * HOUR_S


@dataclass(frozen=True)
class Budgets:
    """Answers per source (KOE_BUDGET_*, KOE_FORM_BUDGET_*): per page and across pages an
    hour, for the widget's JSON and for the plain form; new pages a day."""

    one_page: int
    all_pages: int
    form_one_page: int
    form_all_pages: int
    new_pages: int


class Scope(NamedTuple):
    name: str  # names the budget in a refusal
    key: str  # budgets.scope
    limit: int
    period_s: int
    what: str  # the budget in words, for the refusal


def answer_scopes(budgets: Budgets, page_id: str, form: bool) -> list[Scope]:
    """The budgets one answer spends from: the form's own, tighter ones without JavaScript."""
    if form:
        return [
            Scope(
                "form_one_page",
                f"form-page:{page_id}",
                budgets.form_one_page,
                HOUR_S,
                f"{budgets.form_one_page} answers an hour to one page from one network"
                " without JavaScript",
            ),
            Scope(
                "form_all_pages",
                "form-pages",
                budgets.form_all_pages,
                HOUR_S,
                f"{budgets.form_all_pages} answers an hour from one network without JavaScript",
            ),
        ]
    return [
        Scope(
            "one_page",
            f"page:{page_id}",
            budgets.one_page,
            HOUR_S,
            f"{budgets.one_page} answers an hour to one page from one network",
        ),
        Scope(
            "all_pages",
            "pages",
            budgets.all_pages,
            HOUR_S,
            f"{budgets.all_pages} answers an hour from one network",
        ),
    ]


def new_page_scope(budgets: Budgets) -> Scope:
    return Scope(
        "new_pages",
        "new-pages",
        budgets.new_pages,
        DAY_S,
        f"{budgets.new_pages} new pages a day from one network",
    )


class OverBudget(Exception):
    """A source spent a budget; the caller rolls back and nothing is kept."""

    def __init__(self, scope: Scope, retry_after_s: int):
        super().__init__(f"{scope.name}: {scope.what}")
        self.scope = scope
        self.retry_after_s = retry_after_s


def upsert(session: Session, scopes: int) -> Insert:
    """One statement for all of a request's `scopes` (run with params()): an upsert whose
    SET reads the row as it was, so a budget past its end starts again at 1 and a
    running one counts on, atomically (concurrent requests of one source wait for each
    other's row locks on PostgreSQL; SQLite lets one writer in at a time). It returns
    each scope's count and end, for check(). Built once per dialect and number of
    scopes, all values bound: SQLAlchemy compiles it once (with the values in the
    statement it compiled it for every request, 7 ms of CPU each)."""
    dialect = session.get_bind().dialect.name
    statement = _UPSERTS.get((dialect, scopes))
    if statement is None:
        table = table_of(Budget)
        ends_type = table.c.ends_at.type
        # INSERT … SELECT of bound rows: a multi-row VALUES would not be cached.
        rows = union_all(
            *(
                select(
                    bindparam("b_source", type_=table.c.source.type),
                    bindparam(f"b_scope_{i}", type_=table.c.scope.type),
                    bindparam(f"b_ends_at_{i}", type_=ends_type),
                    literal(1),
                )
                for i in range(scopes)
            )
        )
        insert = dialect_insert(session, table).from_select(
            ["source", "scope", "ends_at", "count"], rows if scopes > 1 else rows.selects[0]
        )
        running = table.c.ends_at > bindparam("b_now", type_=ends_type)
        statement = insert.on_conflict_do_update(
            index_elements=["source", "scope"],
            set_={
                "count": case((running, table.c.count + 1), else_=1),
                "ends_at": case((running, table.c.ends_at), else_=insert.excluded.ends_at),
            },
        ).returning(table.c.scope, table.c.count, table.c.ends_at)
        _UPSERTS[(dialect, scopes)] = statement
    return statement


_UPSERTS: dict[tuple[str, int], Insert] = {}


def params(source: str, scopes: list[Scope], now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {"b_source": source, "b_now": now}
    for i, scope in enumerate(scopes):
        values[f"b_scope_{i}"] = scope.key
        values[f"b_ends_at_{i}"] = now + timedelta(seconds=scope.period_s)
    return values


def check(spent_rows: Iterable[Any], scopes: list[Scope], now: datetime) -> None:
    """Raise OverBudget if upsert()'s rows (scope, count, ends_at) exceed a scope's limit."""
    spent = {scope: (count, ends_at) for scope, count, ends_at in spent_rows}
    over = [(s, spent[s.key][1]) for s in scopes if spent[s.key][0] > s.limit]
    if over:
        # Retry-After: when the last of the spent budgets starts again.
        ends_at = max(_aware(ends_at) for _, ends_at in over)
        seconds = math.ceil((ends_at - now).total_seconds())
        raise OverBudget(over[0][0], max(1, seconds))


def _aware(moment: datetime) -> datetime:
    # SQLite keeps UTC without the zone.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def prune(session: Session, now: datetime) -> int:
    """Forget budgets that have ended: a new answer starts them again from one anyway."""
    table = table_of(Budget)
    return rows_affected(session.execute(delete(table).where(table.c.ends_at <= now)))
