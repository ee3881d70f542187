"""The batch handler: count each feedback event once, then evaluate the drop rule.

Everything a batch changes (processed ids, counts, responses, pages, alert
state, alert outbox) is written in the caller's one transaction, so a crash leaves either
all of it or none; the offsets are committed only afterwards, and redelivered
events are recognised by id. Work per batch is a fixed number of statements,
never one per event, and nothing is kept in memory between batches.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Insert,
    case,
    func,
    select,
)
from sqlalchemy.orm import Session

from aggregator.alerting import Alert, raise_alerts
from aggregator.drop_rule import DropRule
from aggregator.models import (
    DailyCount,
    DailyResponse,
    Page,
    ProcessedEvent,
)
from aggregator.replacements import Counted, Replacements, remembered
from koe_kit import events
from koe_kit.db import among, bulk_insert

log = logging.getLogger(__name__)

# Stays well below every database's bound-parameter limit.
_IN_CHUNK = 500


@dataclass
class _PageSeen:
    url: str
    title: str | None
    division: str | None
    first_seen: datetime
    last_seen: datetime
    latest_day: date


@dataclass(frozen=True)
class BatchResult:
    counted: int
    skipped: int
    alerts: list[Alert]


def handle_batch(
    session: Session,
    batch: Sequence[dict[str, Any]],
    *,
    timezone: ZoneInfo,
    rule: DropRule,
    now: datetime | None = None,
) -> BatchResult:
    """Count the events of `batch` not counted before; write alerts to the outbox."""
    now = now or datetime.now(UTC)
    ids = list(dict.fromkeys(event["id"] for event in batch))
    already = _already_processed(session, ids)

    processed: list[dict[str, Any]] = []
    counts: dict[tuple[str, date, str], list[int]] = {}
    responses: dict[tuple[str, date], int] = {}
    pages: dict[str, _PageSeen] = {}
    replacements = Replacements(session, batch, already)
    for event in batch:
        event_id = event["id"]
        if event_id in already:
            continue
        already.add(event_id)  # a duplicate later in this same batch is skipped too
        data = event["data"]
        page_id = data["page_id"]
        moment = events.parse_time(event["time"])
        # The city-local day of the event's own time, never the wall clock.
        day = moment.astimezone(timezone).date()
        processed.append(
            {
                "event_id": event_id,
                "page_id": page_id,
                "processed_at": now,
                **remembered(day, data["answers"]),
            }
        )
        # A replacing response takes the place of the one it names (replacements.py).
        earlier = replacements.take(event_id, page_id, data.get("replaces"))
        if earlier is not None:
            _tally(counts, responses, earlier, -1)
        counted_now = Counted(page_id, day, data["answers"])
        replacements.note(event_id, counted_now)
        _tally(counts, responses, counted_now, +1)
        _note_page(pages, page_id, data, moment, day)

    counted = len(processed)
    if counted:
        bulk_insert(session, ProcessedEvent.__table__, processed)
        _add_counts(session, counts)
        _add_responses(session, responses)
        _upsert_pages(session, pages)
    today = now.astimezone(timezone).date()
    fresh = {
        page_id: seen.latest_day
        for page_id, seen in pages.items()
        if rule.judges(seen.latest_day, today)
    }
    alerts = raise_alerts(session, fresh, rule, now) if fresh else []
    return BatchResult(counted=counted, skipped=len(batch) - counted, alerts=alerts)


_ANSWER_INDEX = {"yes": 0, "neutral": 1, "no": 2}


def _tally(
    counts: dict[tuple[str, date, str], list[int]],
    responses: dict[tuple[str, date], int],
    response: Counted,
    sign: int,
) -> None:
    """Add (sign +1) or take away (-1) one response's answers and the response itself."""
    page_id, day = response.page_id, response.day
    for question, answer in response.answers.items():
        row = counts.setdefault((page_id, day, question), [0, 0, 0])
        row[_ANSWER_INDEX[answer]] += sign
    responses[page_id, day] = responses.get((page_id, day), 0) + sign


def _already_processed(session: Session, ids: list[str]) -> set[str]:
    seen: set[str] = set()
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        seen.update(
            session.scalars(
                select(ProcessedEvent.event_id).where(
                    among(session, ProcessedEvent.event_id, chunk)
                )
            )
        )
    return seen


def _note_page(
    pages: dict[str, _PageSeen], page_id: str, data: dict[str, Any], moment: datetime, day: date
) -> None:
    title, division = data.get("page_title"), data.get("division")
    seen = pages.get(page_id)
    if seen is None:
        pages[page_id] = _PageSeen(data["page_url"], title, division, moment, moment, day)
        return
    # Events of one page arrive in order (key = page id): the latest non-null values win.
    if moment >= seen.last_seen:
        seen.url = data["page_url"]
        seen.title = title if title is not None else seen.title
        seen.division = division if division is not None else seen.division
    seen.first_seen = min(seen.first_seen, moment)
    seen.last_seen = max(seen.last_seen, moment)
    seen.latest_day = max(seen.latest_day, day)


def _add_counts(session: Session, counts: dict[tuple[str, date, str], list[int]]) -> None:
    table = DailyCount.__table__

    def add(insert: Insert) -> Insert:
        return insert.on_conflict_do_update(
            index_elements=["page_id", "day", "question"],
            set_={
                "yes": table.c.yes + insert.excluded.yes,
                "neutral": table.c.neutral + insert.excluded.neutral,
                "no": table.c.no + insert.excluded.no,
            },
        )

    rows = [
        {"page_id": p, "day": d, "question": q, "yes": c[0], "neutral": c[1], "no": c[2]}
        for (p, d, q), c in counts.items()
    ]
    bulk_insert(session, table, rows, add)


def _add_responses(session: Session, responses: dict[tuple[str, date], int]) -> None:
    table = DailyResponse.__table__

    def add(insert: Insert) -> Insert:
        return insert.on_conflict_do_update(
            index_elements=["page_id", "day"],
            set_={"responses": table.c.responses + insert.excluded.responses},
        )

    rows = [{"page_id": p, "day": d, "responses": n} for (p, d), n in responses.items()]
    bulk_insert(session, table, rows, add)


def _upsert_pages(session: Session, pages: dict[str, _PageSeen]) -> None:
    table = Page.__table__

    def merge(insert: Insert) -> Insert:
        excluded = insert.excluded
        return insert.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "url": excluded.url,
                "title": func.coalesce(excluded.title, table.c.title),
                "division": func.coalesce(excluded.division, table.c.division),
                "first_seen": case(
                    (excluded.first_seen < table.c.first_seen, excluded.first_seen),
                    else_=table.c.first_seen,
                ),
                "last_seen": case(
                    (excluded.last_seen > table.c.last_seen, excluded.last_seen),
                    else_=table.c.last_seen,
                ),
            },
        )

    rows = [
        {
            "id": page_id,
            "url": seen.url,
            "title": seen.title,
            "division": seen.division,
            "first_seen": seen.first_seen,
            "last_seen": seen.last_seen,
        }
        for page_id, seen in pages.items()
    ]
    bulk_insert(session, table, rows, merge)
