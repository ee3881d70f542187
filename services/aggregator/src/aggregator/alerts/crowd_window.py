"""What crowd.py judges, read from the database: a page's counted responses per source
and day over a window (source_counts), and those without a source (daily_responses
minus what the sources counted that day; counting never caps them).

Only pages with an alert are read, a handful a batch, so two small queries each.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregator.alerts.crowd import SourceDay
from aggregator.counting.models import DailyResponse, SourceCount


def window_counts(session: Session, page_id: str, start: date, end: date) -> list[SourceDay]:
    rows = [
        SourceDay(day, source, counted)
        for day, source, counted in session.execute(
            select(SourceCount.day, SourceCount.source, SourceCount.counted).where(
                SourceCount.page_id == page_id,
                SourceCount.day.between(start, end),
                SourceCount.counted > 0,
            )
        )
    ]
    by_sources: dict[date, int] = {}
    for row in rows:
        by_sources[row.day] = by_sources.get(row.day, 0) + row.counted
    for day, responses in session.execute(
        select(DailyResponse.day, DailyResponse.responses).where(
            DailyResponse.page_id == page_id, DailyResponse.day.between(start, end)
        )
    ):
        # A response replaced by one on another day moves its day's count but not its
        # source's row: never fewer than nothing.
        unsourced = responses - by_sources.get(day, 0)
        if unsourced > 0:
            rows.append(SourceDay(day, None, unsourced))
    return rows
