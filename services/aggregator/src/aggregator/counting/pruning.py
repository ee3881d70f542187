"""Forgetting processed events once Kafka can no longer deliver them again, and
sources once no alert reads them.

processed_events holds a row per response counted. A row is needed while its event
can come again (a crash between the database commit and the offset commit; the
whole topic read again after the group's committed offsets expired, which Kafka
does to a group idle for a week) and while a later response may replace it
(replacements.py). Both end a known time after the event was written to
koe.feedback.submitted.v1, and it was counted (processed_at) after it was written:

- Kafka deletes records by whole log segments, once a segment's newest record is
  older than the topic's `retention_ms` (schemas/topics.yaml: 30 days). A segment
  is rolled after `segment.ms` (Kafka's default, 7 days; topics.yaml sets none),
  so a record can be read up to retention + 7 days after it was written.
- A replacing response names one from at most KOE_REPLACE_WINDOW_MINUTES (30)
  before it, and is itself read from the topic at most retention + 7 days after
  the relay wrote it: its counting is at most retention + 7 days + the window +
  the relay's delay after the replaced one's.

So KOE_PROCESSED_KEEP_DAYS may not be shorter than retention + 7 days (start-up
refuses it), and defaults to one day more, for the window and a relay held up by
an outage. A rebuild by replay (docs/operations.md) starts from an empty
database: every row it writes is new, so pruning has nothing of it to forget.

source_counts holds a row per page, day and source answering it (counting/source_ledger.py): what
alerts read to ask for a crowd. Its rows go KOE_SOURCE_KEEP_DAYS (default 100) after
their day; the counts, daily_excess and pages.sources stay. 100 days covers the
alerts' windows: the drop rule reads 35 days (7 recent after 28 of baseline), and a
detector with an 84-day reference ending 14 days back reads 98; start-up refuses
fewer days than the drop rule's windows.

sign_in_failures holds a row per failed dashboard sign-in (auth.py), read by the
throttle for THROTTLE_WINDOW (15 minutes); the web app deletes older ones only when
another sign-in fails, so the consumer prunes them too.

The consumer prunes between batches (its after_commit hook), never inside a
batch's transaction: a chunk of rows at a time, each chunk its own short
transaction, a few chunks per call so that polling is not held up. A backlog
(the first run after an upgrade) is worked off over the following batches.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, delete, select, tuple_
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from aggregator.accounts.auth import THROTTLE_WINDOW
from aggregator.accounts.models import SignInFailure
from aggregator.counting.models import ProcessedEvent, SourceCount
from aggregator.metrics import PROCESSED_PRUNED, SOURCES_PRUNED
from koe_kit import events
from koe_kit.db import claim, rows_affected, transaction

log = logging.getLogger(__name__)

# Kafka's default segment.ms: how long a record can outlive the topic's retention.
SEGMENT_SLACK_DAYS = 7
# The replacement window and a relay delayed by an outage.
MARGIN_DAYS = 1
# The alerts' longest window back (98 days) and a margin.
DEFAULT_SOURCE_KEEP_DAYS = 100
_DAY_MS = 24 * 3600 * 1000


def shortest_keep_days(topic: str) -> int:
    """The fewest days a processed event must be remembered: as long as `topic` can hold it."""
    retention_days = math.ceil(events.topics()[topic]["retention_ms"] / _DAY_MS)
    return retention_days + SEGMENT_SLACK_DAYS


def default_keep_days(topic: str) -> int:
    return shortest_keep_days(topic) + MARGIN_DAYS


class Pruner:
    """Deletes rows past their keep days, now and then, in chunks.

    Called after every committed batch; it does its work at most once per
    `every_s`, unless the last call left rows behind. Never raises for a
    database outage: the rows wait for the next call. A subclass says which rows.
    """

    what = "rows"

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        every_s: float = 300.0,
        chunk: int = 1000,
        chunks_per_call: int = 10,
    ):
        self.sessions = sessions
        self.every_s = every_s
        self.chunk = chunk
        self.chunks_per_call = chunks_per_call
        self._next = 0.0

    def __call__(self) -> int:
        """Prune if it is time; return how many rows went."""
        if time.monotonic() < self._next:
            return 0
        try:
            pruned, more = self.prune()
        except OperationalError as exc:
            log.warning(f"could not prune {self.what}", extra={"error": str(exc)[:300]})
            return 0
        self._next = 0.0 if more else time.monotonic() + self.every_s
        if pruned:
            log.info(f"pruned {self.what}", extra={"rows": pruned, "more": more})
        return pruned

    def prune(self, now: datetime | None = None) -> tuple[int, bool]:
        """Up to `chunks_per_call` chunks of rows past the keep days: (rows deleted,
        whether rows past it may remain)."""
        now = now or datetime.now(UTC)
        pruned = 0
        for _ in range(self.chunks_per_call):
            with transaction(self.sessions) as session:
                deleted = self._delete_chunk(session, now)
            pruned += deleted
            if deleted < self.chunk:
                return pruned, False
        return pruned, True

    def _delete_chunk(self, session: Session, now: datetime) -> int:
        raise NotImplementedError


class ProcessedPruner(Pruner):
    """processed_events rows counted more than `keep_days` ago."""

    what = "processed events"

    def __init__(self, sessions: sessionmaker[Session], keep_days: int, **options: Any):
        super().__init__(sessions, **options)
        self.keep = timedelta(days=keep_days)

    def _delete_chunk(self, session: Session, now: datetime) -> int:
        # Oldest first, through the processed_at index (migration 0005); rows
        # another consumer is deleting at the same moment are skipped.
        stale = claim(
            session,
            select(ProcessedEvent.event_id)
            .where(ProcessedEvent.processed_at < now - self.keep)
            .order_by(ProcessedEvent.processed_at)
            .limit(self.chunk),
        )
        deleted = rows_affected(
            session.execute(delete(ProcessedEvent).where(ProcessedEvent.event_id.in_(stale)))
        )
        PROCESSED_PRUNED.inc(deleted)
        return deleted


class SourcePruner(Pruner):
    """source_counts rows of city-local days more than `keep_days` before today."""

    what = "sources"

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keep_days: int,
        timezone: ZoneInfo,
        **options: Any,
    ):
        super().__init__(sessions, **options)
        self.keep = timedelta(days=keep_days)
        self.timezone = timezone

    def _delete_chunk(self, session: Session, now: datetime) -> int:
        cutoff: date = now.astimezone(self.timezone).date() - self.keep
        key: ColumnElement = tuple_(SourceCount.page_id, SourceCount.day, SourceCount.source)
        stale = [
            tuple(row)
            for row in session.execute(
                claim(
                    session,
                    select(SourceCount.page_id, SourceCount.day, SourceCount.source)
                    .where(SourceCount.day < cutoff)  # ix_source_counts_day (migration 0006)
                    .order_by(SourceCount.day)
                    .limit(self.chunk),
                )
            )
        ]
        if not stale:
            return 0
        deleted = rows_affected(session.execute(delete(SourceCount).where(key.in_(stale))))
        SOURCES_PRUNED.inc(deleted)
        return deleted


class SignInFailurePruner(Pruner):
    """sign_in_failures rows the throttle no longer reads (auth.THROTTLE_WINDOW)."""

    what = "sign-in failures"

    def _delete_chunk(self, session: Session, now: datetime) -> int:
        stale = claim(
            session,
            select(SignInFailure.id)
            .where(SignInFailure.at <= now - THROTTLE_WINDOW)
            .order_by(SignInFailure.id)
            .limit(self.chunk),
        )
        return rows_affected(
            session.execute(delete(SignInFailure).where(SignInFailure.id.in_(stale)))
        )
