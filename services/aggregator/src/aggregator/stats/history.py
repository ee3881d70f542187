"""The counts' history as readers see it: the daily rows and the months older days were
folded into (retention.py), one set of rows.

`history(DailyX)` has DailyX's columns, a month being a row of its first day, and
`monthly` saying which rows are months: a sum over it is a sum over every answer kept,
and a series can show a folded month as one point instead of a month of empty days.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Subquery, Table, false, select, true, union_all

from aggregator.counting.models import (
    DailyCount,
    DailyExcess,
    DailyLocaleCount,
    DailyLocaleResponse,
    DailyResponse,
    MonthlyCount,
    MonthlyExcess,
    MonthlyLocaleCount,
    MonthlyLocaleResponse,
    MonthlyResponse,
)
from aggregator.db import Base

# Each daily table and the table its months fold into.
MONTHS_OF: dict[type[Base], type[Base]] = {
    DailyCount: MonthlyCount,
    DailyResponse: MonthlyResponse,
    DailyExcess: MonthlyExcess,
    DailyLocaleCount: MonthlyLocaleCount,
    DailyLocaleResponse: MonthlyLocaleResponse,
}


def month_of(day: date) -> date:
    return day.replace(day=1)


def table_of(model: type[Base]) -> Table:
    return Base.metadata.tables[model.__tablename__]


def history(daily: type[Base]) -> Subquery:
    """`daily`'s rows UNION ALL its monthly rows (see the module's docstring)."""
    table, monthly = table_of(daily), table_of(MONTHS_OF[daily])
    return union_all(
        select(*table.c, false().label("monthly")),
        select(
            *(monthly.c["month" if c.name == "day" else c.name].label(c.name) for c in table.c),
            true().label("monthly"),
        ),
    ).subquery(f"{table.name}_history")
