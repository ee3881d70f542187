"""What the feedback database forgets, and when: nothing it holds is kept for ever.

- responses after KOE_RESPONSE_KEEP_DAYS (400): by then the aggregator has long
  counted them (its counts stay; koe.feedback.submitted.v1 holds 30 days), and a
  response is a citizen's answer with a source, kept no longer than the year-on-year
  look back a division wants;
- source keys after KOE_SOURCE_KEY_KEEP_DAYS (2): from then on no source of those days
  can be traced back to an address, by anyone;
- page views' tokens a day after their window: they decide nothing any more;
- budgets once they have ended: a new answer starts them from one anyway;
- spent proofs of work once expired: challenges.check refuses them on its own.
Outbox rows are the relay's to prune (relay.py), never an unpublished one.

Each worker prunes now and then after answering a request (views.py), a chunk of
rows at a time, each chunk its own short transaction, so no request waits on a
long delete and a backlog (the first run after an upgrade) is worked off over the
following calls.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from feedback import budgets, challenges, tokens
from feedback.models import Response, SourceKey
from feedback.sources import Sources
from koe_kit.db import rows_affected, table_of

log = logging.getLogger(__name__)

EVERY_S = 600
CHUNK = 1000
# A call deletes at most this many chunks of responses; a backlog waits for the next.
CHUNKS_PER_CALL = 5


@dataclass
class Retention:
    response_keep_days: int
    source_key_keep_days: int
    replace_window_s: int
    next_run: float = field(default=0.0)

    def now_and_then(
        self, sessions: sessionmaker[Session], sources: Sources, now: datetime
    ) -> None:
        if time.monotonic() < self.next_run:
            return
        self.next_run = time.monotonic() + EVERY_S
        pruned = self.prune(sessions, sources, now)
        if any(pruned.values()):
            log.info("pruned the feedback database", extra=pruned)

    def prune(self, sessions: sessionmaker[Session], sources: Sources, now: datetime) -> dict:
        pruned = {
            "responses": 0,
            "source_keys": 0,
            "answer_tokens": 0,
            "budgets": 0,
            "used_challenges": 0,
        }
        cutoff = now - timedelta(days=self.response_keep_days)
        for _ in range(CHUNKS_PER_CALL):
            with sessions() as session, session.begin():
                deleted = _prune_responses(session, cutoff)
            pruned["responses"] += deleted
            if deleted < CHUNK:
                break
        with sessions() as session, session.begin():
            oldest_day = sources.today(now) - timedelta(days=self.source_key_keep_days)
            table = table_of(SourceKey)
            pruned["source_keys"] = rows_affected(
                session.execute(delete(table).where(table.c.day < oldest_day))
            )
            pruned["answer_tokens"] = tokens.prune(
                session, now - timedelta(seconds=self.replace_window_s, days=1)
            )
            pruned["budgets"] = budgets.prune(session, now)
            pruned["used_challenges"] = challenges.prune(session, now)
        return pruned


def _prune_responses(session: Session, before: datetime) -> int:
    """The oldest chunk of responses received before `before` (ix_responses_received_at)."""
    table = table_of(Response)
    oldest = (
        select(table.c.id)
        .where(table.c.received_at < before)
        .order_by(table.c.received_at)
        .limit(CHUNK)
    )
    return rows_affected(session.execute(delete(table).where(table.c.id.in_(oldest))))
