"""The batch handler: count each feedback event once, then judge completed days for drops.

Everything a batch changes (processed ids, counts, responses, excess, sources, pages,
detector state, alert outbox) is written in the caller's one transaction, so a crash
leaves either all of it or none; the offsets are committed only afterwards, and
redelivered events are recognised by id. Work per batch is a fixed number of
statements, never one per event, and nothing is kept in memory between batches.

A response counts unless its source already had its cap on the page that day
(counting/source_ledger.py); a replacing one takes the place of the one it names (replacements.py);
what answers may change about a page is in pages/registry.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from aggregator.alerts.crowd import DEFAULT_RULE, CrowdRule
from aggregator.alerts.detector import DetectorSettings
from aggregator.alerts.raising import Alert, raise_alerts
from aggregator.counting import rollups
from aggregator.counting.models import (
    DailyCount,
    DailyExcess,
    DailyLocaleCount,
    DailyLocaleResponse,
    DailyResponse,
    ProcessedEvent,
)
from aggregator.counting.replacements import Counted, Replacements, remembered
from aggregator.counting.source_ledger import DEFAULT_PER_SOURCE_DAY, SlotKey, SourceLedger
from aggregator.edits.records import ModifiedDates
from aggregator.pages.registry import DEFAULT_MIN_SOURCES, PageSightings, shown
from koe_contract import payloads as wire
from koe_directory import Directory
from koe_kit import events
from koe_kit.db import among, bulk_add, bulk_insert, table_of

log = logging.getLogger(__name__)

# Stays well below every database's bound-parameter limit.
_IN_CHUNK = 500


@dataclass(frozen=True)
class BatchResult:
    counted: int
    skipped: int
    alerts: list[Alert]


@dataclass
class _Totals:
    """What a batch adds per page and day: answers per question, responses, excess."""

    counts: dict[tuple[str, date, str], list[int]] = field(default_factory=dict)
    responses: dict[tuple[str, date], int] = field(default_factory=dict)
    excess: dict[tuple[str, date], int] = field(default_factory=dict)
    # The same split by language (a response counted before migration 0010 has none).
    locale_counts: dict[tuple[str, date, str, str], list[int]] = field(default_factory=dict)
    locale_responses: dict[tuple[str, date, str], int] = field(default_factory=dict)

    def add(self, response: Counted, sign: int) -> None:
        """Add (sign +1) or take away (-1) one response: its answers and itself, or, for
        an excess one, only the excess."""
        key = (response.page_id, response.day)
        if response.excess:
            self.excess[key] = self.excess.get(key, 0) + sign
            return
        for question, answer in response.answers.items():
            row = self.counts.setdefault((*key, question), [0, 0, 0])
            row[_ANSWER_INDEX[answer]] += sign
        self.responses[key] = self.responses.get(key, 0) + sign
        if response.locale is None:
            return
        in_locale = (*key, response.locale)
        for question, answer in response.answers.items():
            row = self.locale_counts.setdefault((*in_locale, question), [0, 0, 0])
            row[_ANSWER_INDEX[answer]] += sign
        self.locale_responses[in_locale] = self.locale_responses.get(in_locale, 0) + sign


_ANSWER_INDEX = {"yes": 0, "neutral": 1, "no": 2}

# Alerts about days more than this many days before today are recorded but not emailed
# (KOE_ALERT_MAX_AGE_DAYS): a replay or a long outage's catch-up is not news any more.
DEFAULT_MAX_AGE_DAYS = 3
DEFAULT_DETECTOR = DetectorSettings()


def handle_batch(
    session: Session,
    batch: Sequence[dict[str, Any]],
    *,
    timezone: ZoneInfo,
    directory: Directory,
    per_source_day: int = DEFAULT_PER_SOURCE_DAY,
    page_min_sources: int = DEFAULT_MIN_SOURCES,
    crowd: CrowdRule = DEFAULT_RULE,
    detector: DetectorSettings = DEFAULT_DETECTOR,
    max_age_days: int = DEFAULT_MAX_AGE_DAYS,
    now: datetime | None = None,
) -> BatchResult:
    """Count the events of `batch` not counted before; write alerts to the outbox."""
    now = now or datetime.now(UTC)
    ids = list(dict.fromkeys(event["id"] for event in batch))
    fresh = _first_deliveries(batch, _already_processed(session, ids))
    # The city-local day of each event's own time, never the wall clock.
    dated = [(event, moment, moment.astimezone(timezone).date()) for event, moment in fresh]

    processed: list[dict[str, Any]] = []
    totals = _Totals()
    latest_day: dict[str, date] = {}
    pages = PageSightings(page_min_sources)
    modified = ModifiedDates(page_min_sources)
    replacements = Replacements(session, [event for event, _moment in fresh])
    slots: list[SlotKey] = [
        (event["data"]["page_id"], day, event["data"]["source"])
        for event, _moment, day in dated
        if event["data"].get("source")
    ]
    ledger = SourceLedger(session, slots, per_source_day)
    for event, moment, day in dated:
        event_id = event["id"]
        data: wire.FeedbackSubmitted = event["data"]  # as its schema validated it
        page_id, source, title = data["page_id"], data.get("source"), data.get("page_title")
        pages.seen(page_id, data["page_url"], moment)
        # A replacing response takes the place of the one it names (replacements.py).
        earlier = replacements.take(event_id, page_id, data.get("replaces"))
        if earlier is not None:
            totals.add(earlier, -1)
            excess = earlier.excess
        elif source:
            admitted = ledger.admit((page_id, day, source))
            excess = admitted.excess
            if admitted.new_source:
                pages.new_source(page_id, title)
                modified.vote(page_id, data.get("page_modified"), day)
        else:
            excess = False
            pages.without_source(page_id, title)
        counted_now = Counted(page_id, day, data["answers"], excess, data.get("locale"))
        replacements.note(event_id, counted_now)
        totals.add(counted_now, +1)
        processed.append(
            {
                "event_id": event_id,
                "page_id": page_id,
                "processed_at": now,
                **remembered(counted_now),
            }
        )
        latest_day[page_id] = max(latest_day.get(page_id, day), day)

    if processed:
        # The same deltas to the listing's window rollups, in the same transaction; first,
        # as moving their day to today sums the daily rows without this batch's.
        rollups.add(
            session,
            now.astimezone(timezone).date(),
            totals.counts,
            totals.responses,
            totals.locale_counts,
            totals.locale_responses,
        )
        bulk_insert(session, table_of(ProcessedEvent), processed)
        _add_counts(session, totals.counts)
        _add_per_day(session, table_of(DailyResponse), totals.responses)
        _add_per_day(session, table_of(DailyExcess), totals.excess)
        _add_locale_counts(session, totals)
        ledger.write(session)
        pages.write(session)
        modified.write(session, now)
    today = now.astimezone(timezone).date()
    alerts = _detector_alerts(
        session, latest_day, today, detector, max_age_days, now, timezone, directory, crowd
    )
    return BatchResult(counted=len(processed), skipped=len(batch) - len(processed), alerts=alerts)


def _detector_alerts(
    session: Session,
    latest_day: dict[str, date],
    today: date,
    detector: DetectorSettings,
    max_age_days: int,
    now: datetime,
    timezone: ZoneInfo,
    directory: Directory,
    crowd: CrowdRule,
) -> list[Alert]:
    """The drop detector judges each page's completed days: those before its latest
    answer (a page's events come in order on its partition), never today."""
    through = {page_id: min(day, today) - timedelta(days=1) for page_id, day in latest_day.items()}
    if through:
        visible = shown(session, list(through))
        through = {page_id: day for page_id, day in through.items() if page_id in visible}
    if not through:
        return []
    return raise_alerts(
        session,
        through,
        detector,
        max_age_days=max_age_days,
        now=now,
        timezone=timezone,
        directory=directory,
        crowd=crowd,
    )


def _first_deliveries(
    batch: Sequence[dict[str, Any]], already: set[str]
) -> list[tuple[dict[str, Any], datetime]]:
    """The batch's events not counted before, each once (a duplicate later in the same
    batch is skipped too), with their time."""
    fresh = []
    seen = set(already)
    for event in batch:
        if event["id"] not in seen:
            seen.add(event["id"])
            fresh.append((event, events.parse_time(event["time"])))
    return fresh


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


def _add_counts(session: Session, counts: dict[tuple[str, date, str], list[int]]) -> None:
    rows = [
        {"page_id": p, "day": d, "question": q, "yes": c[0], "neutral": c[1], "no": c[2]}
        for (p, d, q), c in counts.items()
    ]
    keys, added = ["page_id", "day", "question"], ["yes", "neutral", "no"]
    bulk_add(session, table_of(DailyCount), rows, keys, added)


def _add_locale_counts(session: Session, totals: _Totals) -> None:
    answers = ["yes", "neutral", "no"]
    rows = [
        {"page_id": p, "day": d, "locale": lc, "question": q, **dict(zip(answers, c, strict=True))}
        for (p, d, lc, q), c in totals.locale_counts.items()
    ]
    bulk_add(
        session, table_of(DailyLocaleCount), rows, ["page_id", "day", "locale", "question"], answers
    )
    rows = [
        {"page_id": p, "day": d, "locale": lc, "responses": n}
        for (p, d, lc), n in totals.locale_responses.items()
    ]
    bulk_add(
        session, table_of(DailyLocaleResponse), rows, ["page_id", "day", "locale"], ["responses"]
    )


def _add_per_day(session: Session, table: Table, totals: dict[tuple[str, date], int]) -> None:
    """Add responses per page and day to daily_responses or daily_excess."""
    rows = [{"page_id": p, "day": d, "responses": n} for (p, d), n in totals.items()]
    bulk_add(session, table, rows, ["page_id", "day"], ["responses"])
