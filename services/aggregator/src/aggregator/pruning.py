"""Forgetting processed events once Kafka can no longer deliver them again.

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

The consumer prunes between batches (its after_commit hook), never inside a
batch's transaction: a chunk of rows at a time, each chunk its own short
transaction, a few chunks per call so that polling is not held up. A backlog
(the first run after an upgrade) is worked off over the following batches.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from aggregator.metrics import PROCESSED_PRUNED
from aggregator.models import ProcessedEvent
from koe_kit import events
from koe_kit.db import claim, transaction

log = logging.getLogger(__name__)

# Kafka's default segment.ms: how long a record can outlive the topic's retention.
SEGMENT_SLACK_DAYS = 7
# The replacement window and a relay delayed by an outage.
MARGIN_DAYS = 1
_DAY_MS = 24 * 3600 * 1000


def shortest_keep_days(topic: str) -> int:
    """The fewest days a processed event must be remembered: as long as `topic` can hold it."""
    retention_days = math.ceil(events.topics()[topic]["retention_ms"] / _DAY_MS)
    return retention_days + SEGMENT_SLACK_DAYS


def default_keep_days(topic: str) -> int:
    return shortest_keep_days(topic) + MARGIN_DAYS


class ProcessedPruner:
    """Deletes processed_events rows older than `keep_days`, now and then, in chunks.

    Called after every committed batch; it does its work at most once per
    `every_s`, unless the last call left rows behind. Never raises for a
    database outage: the rows wait for the next call.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        keep_days: int,
        *,
        every_s: float = 300.0,
        chunk: int = 1000,
        chunks_per_call: int = 10,
    ):
        self.sessions = sessions
        self.keep = timedelta(days=keep_days)
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
            log.warning("could not prune processed events", extra={"error": str(exc)[:300]})
            return 0
        self._next = 0.0 if more else time.monotonic() + self.every_s
        if pruned:
            log.info("pruned processed events", extra={"rows": pruned, "more": more})
        return pruned

    def prune(self, now: datetime | None = None) -> tuple[int, bool]:
        """Up to `chunks_per_call` chunks of rows past the keep days: (rows deleted,
        whether rows past it may remain)."""
        cutoff = (now or datetime.now(UTC)) - self.keep
        pruned = 0
        for _ in range(self.chunks_per_call):
            with transaction(self.sessions) as session:
                # Oldest first, through the processed_at index (migration 0005); rows
                # another consumer is deleting at the same moment are skipped.
                stale = claim(
                    session,
                    select(ProcessedEvent.event_id)
                    .where(ProcessedEvent.processed_at < cutoff)
                    .order_by(ProcessedEvent.processed_at)
                    .limit(self.chunk),
                )
                deleted = session.execute(
                    delete(ProcessedEvent).where(ProcessedEvent.event_id.in_(stale))
                ).rowcount
            pruned += deleted
            PROCESSED_PRUNED.inc(deleted)
            if deleted < self.chunk:
                return pruned, False
        return pruned, True
