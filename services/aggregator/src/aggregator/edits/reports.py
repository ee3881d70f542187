"""The four-week report on an edit: written once to the alert outbox, as alerts are.

An edit's after-window (verdict.after_window) is over on verdict.report_day; from then,
the consumer's next idle moment (EditReports) writes a koe.alerts.edit.reviewed.v1 event
to the alert outbox, in the same transaction that marks the edit reported, so it is
written exactly once. Idle, not after a batch: a consumer with nothing to read has
counted everything on the topic, so a backlog being worked through (an outage's
catch-up, events published late) is in the numbers before they are judged. The outbox
publisher sends it on topic koe.alerts.v1 (key = page id), and the notifier emails the
division once per id (uuid5 of the page and the edit's day, so a
replay into a new database makes the same id). A report more than max_age_days late (a
consumer back from a long outage, a replay) is recorded but not sent, as old alerts are.
Pages not shown yet (pages/registry.py) wait: no division is told about a page it
cannot see.
"""

from __future__ import annotations

import logging
import time as clock
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from aggregator.alerts.kinds import ALERT_NAMESPACE
from aggregator.alerts.models import AlertOutbox
from aggregator.alerts.raising import ALERT_SOURCE
from aggregator.counting.models import DailyCount
from aggregator.edits import verdict
from aggregator.edits.models import PageEdit
from aggregator.pages.models import Page
from aggregator.stats.scoring import Tally, Window, question_score, rounded, wilson_interval
from koe_contract import EDIT_REVIEWED
from koe_contract import payloads as wire
from koe_directory import QUESTION_KEYS, Directory
from koe_kit import events
from koe_kit.db import dialect_insert, transaction

log = logging.getLogger(__name__)

# Reports written per call: a backlog (a replay) is worked through batch after batch.
_LIMIT = 200


def report_id_for(page_id: str, day: date) -> str:
    return str(uuid.uuid5(ALERT_NAMESPACE, f"edit|{page_id}|{day.isoformat()}"))


def window_tallies(session: Session, page_id: str, window: Window) -> dict[str, Tally]:
    """The page's counted answers per question over the window's days."""
    rows = session.execute(
        select(
            DailyCount.question,
            func.sum(DailyCount.yes),
            func.sum(DailyCount.neutral),
            func.sum(DailyCount.no),
        )
        .where(DailyCount.page_id == page_id, DailyCount.day.between(window.start, window.end))
        .group_by(DailyCount.question)
    )
    return {q: Tally(int(y), int(n), int(no)) for q, y, n, no in rows}


def comparisons(
    session: Session, page_id: str, day: date, through: date | None = None
) -> list[verdict.Comparison]:
    """Before and after the edit of `day`; the after side no later than `through` (a view
    as of a day within the four weeks shows the figures up to it)."""
    before = window_tallies(session, page_id, verdict.before_window(day))
    whole = verdict.after_window(day)
    end = whole.end if through is None else min(whole.end, through)
    after = window_tallies(session, page_id, Window(whole.start, end))
    return verdict.compare_all(list(QUESTION_KEYS), before, after)


def write_due(
    session: Session,
    *,
    now: datetime,
    timezone: ZoneInfo,
    max_age_days: int,
    directory: Directory,
) -> int:
    """Write the report of every edit whose four weeks are over; how many to send."""
    today = now.astimezone(timezone).date()
    # report_day(day) <= today
    last_day = today - timedelta(days=verdict.SIDE_DAYS + 1)
    due = session.execute(
        select(PageEdit, Page.url, Page.title)
        .join(Page, Page.id == PageEdit.page_id)
        .where(PageEdit.report_id.is_(None), PageEdit.day <= last_day, Page.visible)
        .order_by(PageEdit.day, PageEdit.page_id)
        .limit(_LIMIT)
    ).all()
    to_send = 0
    for edit, url, title in due:
        report_id = report_id_for(edit.page_id, edit.day)
        old = (today - verdict.report_day(edit.day)).days > max_age_days
        page: wire.Page = {
            "id": edit.page_id,
            "url": url,
            "title": title,
            "division": directory.prefix_code(url),
        }
        due_at = datetime.combine(verdict.report_day(edit.day), time(), timezone).astimezone(UTC)
        event = events.make_event(
            EDIT_REVIEWED,
            source=ALERT_SOURCE,
            subject=edit.page_id,
            data=report_data(report_id, page, edit, comparisons(session, edit.page_id, edit.day)),
            event_id=report_id,
            # When the four weeks were over, not the wall clock: a replay makes the same event.
            time=due_at,
        )
        insert = dialect_insert(session, AlertOutbox.__table__).on_conflict_do_nothing(
            index_elements=["alert_id"]
        )
        session.execute(
            insert,
            {
                "alert_id": report_id,
                "page_id": edit.page_id,
                "payload": events.encode(event).decode("utf-8"),
                "created_at": now,
                "sent_at": now if old else None,
                "edit_report": True,
            },
        )
        session.execute(
            update(PageEdit)
            .where(PageEdit.page_id == edit.page_id, PageEdit.day == edit.day)
            .values(report_id=report_id)
        )
        to_send += not old
    return to_send


class EditReports:
    """The consumer loop's idle hook: writes the due reports, looking at most once every
    `every_s` seconds (one indexed query), in a transaction of its own."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        timezone: ZoneInfo,
        max_age_days: int,
        directory: Directory,
        every_s: float = 5.0,
    ):
        self.sessions = sessions
        self.timezone = timezone
        self.max_age_days = max_age_days
        self.directory = directory
        self.every_s = every_s
        self._looked_at: float | None = None

    def __call__(self) -> int:
        """How many reports to send were written (the publisher then has work)."""
        if self._looked_at is not None and clock.monotonic() - self._looked_at < self.every_s:
            return 0
        self._looked_at = clock.monotonic()
        try:
            with transaction(self.sessions) as session:
                return write_due(
                    session,
                    now=datetime.now(UTC),
                    timezone=self.timezone,
                    max_age_days=self.max_age_days,
                    directory=self.directory,
                )
        except OperationalError as exc:
            # The database is away: the reports wait for a later idle moment.
            log.warning("edit reports not written, will retry", extra={"error": str(exc)[:300]})
            return 0


def _tally(tally: Tally) -> wire.EditTally:
    interval = wilson_interval(tally)
    return {
        "yes": tally.yes,
        "neutral": tally.neutral,
        "no": tally.no,
        "n": tally.n,
        "score": rounded(question_score(tally)),
        "interval": None
        if interval is None
        else {"low": round(interval[0], 1), "high": round(interval[1], 1)},
    }


def window_json(window: Window) -> wire.Window:
    assert window.start is not None
    return {"start": window.start.isoformat(), "end": window.end.isoformat()}


def report_data(
    report_id: str, page: wire.Page, edit: PageEdit, compared: list[verdict.Comparison]
) -> dict[str, Any]:
    return {
        "alert_id": report_id,
        "page": page,
        "edit": {
            "day": edit.day.isoformat(),
            "previous": edit.previous.isoformat(),
            "confirmed_by": edit.confirmed_by,
        },
        "before": window_json(verdict.before_window(edit.day)),
        "after": window_json(verdict.after_window(edit.day)),
        "outcome": verdict.overall(compared),
        "questions": questions_json(compared),
    }


def questions_json(compared: list[verdict.Comparison], judged: bool = True) -> list[dict[str, Any]]:
    """Each question's before, after, change and outcome (None until `judged`), as the
    report event and the stats API give them."""
    return [
        {
            "question": c.question,
            "outcome": c.outcome if judged else None,
            "before": _tally(c.before),
            "after": _tally(c.after),
            "change": None
            if c.change is None
            else {"points": rounded(c.change), "low": rounded(c.low), "high": rounded(c.high)},
        }
        for c in compared
    ]
