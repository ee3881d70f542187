"""Retention of the counts: daily rows older than KOE_DAILY_KEEP_YEARS fold into monthly
rows, and readers read both.

A city keeps years of answers. Kept per day, daily_counts grows by pages × days for
ever (2 M rows for 10,000 pages × 2 years), while nobody asks how a page did on one
Tuesday three years ago. Each daily table (counts, responses, excess and their
per-locale splits) has a monthly twin keyed by the month's first day instead of the
day (migration 0015). The fold moves whole months only: every day before the first
day of the month KOE_DAILY_KEEP_YEARS before today's, so every row it moves is older
than that many years.

Numbers do not change:
- A fold deletes a chunk of daily rows (DELETE ... RETURNING) and adds exactly the
  rows it deleted to their months, in one transaction: a reader sees every answer
  either in its day or in its month, never both, never neither. Run twice, the second
  run finds nothing to delete; several replicas claim disjoint rows (SKIP LOCKED on
  PostgreSQL; SQLite lets one writer in at a time) and add only what each deleted.
- Readers sum `history.history(DailyX)`: the daily rows UNION ALL the monthly ones with the
  month's first day as their day. All-time figures, and every window that does not
  start inside a folded month (7 and 28 days ending within the kept years), are
  exactly the daily rows' sums. A window or series over folded months sees each
  month as one point on its first day: charts of old periods go monthly.
- The rollups (rollups.py) hold window sums, not rows: a fold leaves them right as
  long as it moves only days they already counted (before their as_of), which the
  fold checks; a rebuild reads the monthly rows too.

The consumer folds between batches and when idle, like the pruners: a bounded chunk of
rows per table per transaction, a few chunks per call, once an hour unless a call
left rows behind (the first run after an upgrade works off two years over a while).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from aggregator.counting import rollups
from aggregator.counting.pruning import Pruner
from aggregator.db import Base
from aggregator.stats.history import MONTHS_OF, month_of, table_of
from koe_kit.db import among_rows, bulk_add, claim

DEFAULT_KEEP_YEARS = 2


def first_kept_day(today: date, keep_years: int) -> date:
    """The first day not folded: the first of the month `keep_years` before today's."""
    return date(today.year - keep_years, today.month, 1)


def fold(session: Session, daily: type[Base], before: date, limit: int) -> int:
    """Move up to `limit` of `daily`'s rows of days before `before` into their months;
    return how many moved."""
    table, monthly = table_of(daily), table_of(MONTHS_OF[daily])
    keys = [c.name for c in table.primary_key.columns]
    values = [c.name for c in table.c if not c.primary_key]
    key_columns = tuple(table.c[name] for name in keys)
    claimed = [
        tuple(row)
        for row in session.execute(
            claim(
                session,
                select(*key_columns)
                .where(table.c.day < before)  # the day indexes (migrations 0001, 0006, 0015)
                .order_by(table.c.day)
                .limit(limit),
            )
        )
    ]
    if not claimed:
        return 0
    # Only what this transaction deleted is added: a row another replica folded first
    # is not returned here.
    deleted = session.execute(
        delete(table).where(among_rows(session, key_columns, claimed)).returning(*table.c)
    ).all()
    sums: dict[tuple[Any, ...], list[int]] = {}
    for row in deleted:
        cells = row._mapping
        key = tuple(month_of(cells[k]) if k == "day" else cells[k] for k in keys)
        summed = sums.setdefault(key, [0] * len(values))
        for index, name in enumerate(values):
            summed[index] += cells[name]
    monthly_keys = ["month" if k == "day" else k for k in keys]
    # In key order, so two replicas adding to the same months lock them in one order.
    rows = [
        dict(zip(monthly_keys, key, strict=True)) | dict(zip(values, summed, strict=True))
        for key, summed in sorted(sums.items())
    ]
    bulk_add(session, monthly, rows, monthly_keys, values)
    return len(deleted)


def fold_before(session: Session, today: date, keep_years: int) -> date:
    """The day before which rows fold: never a day the rollups have not counted yet."""
    before = first_kept_day(today, keep_years)
    as_of = rollups.current_day(session)
    if as_of is not None:
        before = min(before, as_of + timedelta(days=1))
    return before


class MonthlyFold(Pruner):
    """For the consumer loop: folds the daily rows past `keep_years`, a chunk of each
    table per transaction, never inside a batch's transaction."""

    what = "daily rows folded into months"

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keep_years: int,
        timezone: ZoneInfo,
        **options: Any,
    ):
        options.setdefault("every_s", 3600.0)
        super().__init__(sessions, **options)
        self.keep_years = keep_years
        self.timezone = timezone

    def _delete_chunk(self, session: Session, now: datetime) -> int:
        before = fold_before(session, now.astimezone(self.timezone).date(), self.keep_years)
        # The most any table moved: below a chunk, every table is done.
        return max(fold(session, daily, before, self.chunk) for daily in MONTHS_OF)
