"""Counting that one source cannot dominate (DESIGN.md, "Trustworthy numbers").

A source is a keyed hash of the client's address under a key of the city-local day
(koe.feedback.submitted.v1 `data.source`). Per page, city-local day and source, the
first `per_source_day` responses count; the rest are excess: kept in source_counts
and daily_excess for admins, never in daily_counts, daily_responses, scores, CSV
scores or alerts. Whether a response counts depends only on the responses of its
page before it, so the same events in a page's order give the same counts, however
they are cut into batches and whatever is delivered twice (processed_events skips it).

The source_counts rows a batch touches are read in one query (per chunk of keys)
and written in one upsert that adds what the batch added.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregator.counting.models import SourceCount
from koe_kit.db import among_rows, bulk_add, table_of

# Two or three people behind one address (a mobile carrier's NAT, a city hall's proxy)
# answering the same page on one day all count; README, "Counting", has the numbers.
DEFAULT_PER_SOURCE_DAY = 3

_IN_CHUNK = 500

SlotKey = tuple[str, date, str]  # page id, city-local day, source


@dataclass(frozen=True)
class Admitted:
    excess: bool  # beyond the source's cap: not counted
    new_source: bool  # the source's first response on the page that day


class SourceLedger:
    """The source_counts rows of a batch: read once, changed in event order, written once."""

    def __init__(self, session: Session, keys: list[SlotKey], per_source_day: int):
        self.per_source_day = per_source_day
        # [counted, excess]: as stored, then as the batch leaves them.
        self._rows: dict[SlotKey, list[int]] = {}
        self._added: dict[SlotKey, list[int]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _IN_CHUNK):
            rows = session.execute(
                select(
                    SourceCount.page_id,
                    SourceCount.day,
                    SourceCount.source,
                    SourceCount.counted,
                    SourceCount.excess,
                ).where(
                    among_rows(
                        session,
                        (SourceCount.page_id, SourceCount.day, SourceCount.source),
                        unique[start : start + _IN_CHUNK],
                    )
                )
            )
            for page_id, day, source, counted, excess in rows:
                self._rows[page_id, day, source] = [counted, excess]

    def admit(self, key: SlotKey) -> Admitted:
        """Count one more response of the source on the page and day, or call it excess."""
        row = self._rows.get(key)
        new_source = row is None
        if row is None:
            row = self._rows[key] = [0, 0]
        added = self._added.setdefault(key, [0, 0])
        excess = row[0] >= self.per_source_day
        slot = 1 if excess else 0
        row[slot] += 1
        added[slot] += 1
        return Admitted(excess=excess, new_source=new_source)

    def write(self, session: Session) -> None:
        rows = [
            {"page_id": p, "day": d, "source": s, "counted": c, "excess": e}
            for (p, d, s), (c, e) in self._added.items()
        ]
        keys = ["page_id", "day", "source"]
        bulk_add(session, table_of(SourceCount), rows, keys, ["counted", "excess"])
