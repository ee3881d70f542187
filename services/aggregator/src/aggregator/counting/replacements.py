"""A response that replaces an earlier one (koe.feedback.submitted.v1 `data.replaces`).

The feedback service folds a second response from the same client to the
same page within its window into the first: the new event names the response
it replaces. Counting it means un-counting the earlier one (its answers on its
own day, and one response) and counting the new one in its place: in the scores
if the earlier one was, as excess if it was excess (counting/source_ledger.py), without
touching its source's count, so a change of mind neither spends nor frees a
slot of the source's cap. Every processed event keeps its day, answers
(migration 0002) and whether it was excess (0006) for this. A page's events arrive
in order (key = page id), so the earlier one was counted before, in an
earlier batch or earlier in this one; the replacing event's id in
processed_events makes the whole step happen once, whatever is redelivered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregator.counting.models import ProcessedEvent
from koe_directory import QUESTION_KEYS
from koe_kit.db import among

log = logging.getLogger(__name__)

_IN_CHUNK = 500


@dataclass(frozen=True)
class Counted:
    """What counting one response added: where, which answers, and whether it was excess
    (beyond its source's cap, counting/source_ledger.py) rather than in the scores."""

    page_id: str
    day: date
    answers: dict[str, str]
    excess: bool = False
    # The language it was given in; None for one counted before migration 0010.
    locale: str | None = None


def remembered(counted: Counted) -> dict[str, Any]:
    """The columns a processed_events row keeps so the response can be un-counted later."""
    answers = counted.answers
    return {
        "day": counted.day,
        **{question: answers.get(question) for question in QUESTION_KEYS},
        "excess": counted.excess,
        "locale": counted.locale,
    }


class Replacements:
    """The counted responses a batch may replace: this batch's own, then the database's."""

    def __init__(self, session: Session, batch: Sequence[dict[str, Any]]):
        """`batch`: the events about to be counted (none counted before)."""
        wanted = list(
            dict.fromkeys(
                event["data"]["replaces"] for event in batch if event["data"].get("replaces")
            )
        )
        self._counted: dict[str, Counted] = {}
        for start in range(0, len(wanted), _IN_CHUNK):
            rows = session.execute(
                select(
                    ProcessedEvent.event_id,
                    ProcessedEvent.page_id,
                    ProcessedEvent.day,
                    ProcessedEvent.excess,
                    ProcessedEvent.locale,
                    *(getattr(ProcessedEvent, question) for question in QUESTION_KEYS),
                ).where(among(session, ProcessedEvent.event_id, wanted[start : start + _IN_CHUNK]))
            )
            for event_id, page_id, day, excess, locale, *answers in rows:
                if day is None:  # counted before migration 0002: nothing to un-count with
                    continue
                given = {q: a for q, a in zip(QUESTION_KEYS, answers, strict=True) if a is not None}
                self._counted[event_id] = Counted(page_id, day, given, excess, locale)

    def note(self, event_id: str, counted: Counted) -> None:
        """A response this batch counted (a later event of the batch may replace it)."""
        self._counted[event_id] = counted

    def take(self, event_id: str, page_id: str, replaces: str | None) -> Counted | None:
        """The counted response `replaces` names, to un-count; None if there is none."""
        if replaces is None:
            return None
        earlier = self._counted.pop(replaces, None)
        if earlier is None or earlier.page_id != page_id:
            log.warning(
                "replaced response not counted here, nothing to un-count",
                extra={"event_id": event_id, "replaces": replaces, "page_id": page_id},
            )
            return None
        return earlier
