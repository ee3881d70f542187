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

from aggregator.drop_rule import DropAlert, DropRule, evaluate_windows
from aggregator.models import (
    AlertOutbox,
    AlertState,
    DailyCount,
    DailyResponse,
    Page,
    ProcessedEvent,
)
from aggregator.scoring import Tally, question_score
from koe_kit import events
from koe_kit.db import among, bulk_insert, dialect_insert

log = logging.getLogger(__name__)

ALERTS_TOPIC = "koe.alerts.v1"
ALERT_SOURCE = "koe/aggregator"
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
    alerts: list[DropAlert]


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
        processed.append({"event_id": event_id, "page_id": page_id, "processed_at": now})
        for question, answer in data["answers"].items():
            row = counts.setdefault((page_id, day, question), [0, 0, 0])
            row[_ANSWER_INDEX[answer]] += 1
        responses[page_id, day] = responses.get((page_id, day), 0) + 1
        _note_page(pages, page_id, data, moment, day)

    counted = len(processed)
    if counted:
        bulk_insert(session, ProcessedEvent.__table__, processed)
        _add_counts(session, counts)
        _add_responses(session, responses)
        _upsert_pages(session, pages)
    today = now.astimezone(timezone).date()
    fresh = {
        page_id: seen for page_id, seen in pages.items() if rule.judges(seen.latest_day, today)
    }
    alerts = _evaluate(session, fresh, rule, now) if fresh else []
    return BatchResult(counted=counted, skipped=len(batch) - counted, alerts=alerts)


_ANSWER_INDEX = {"yes": 0, "neutral": 1, "no": 2}


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


def _evaluate(
    session: Session, pages: dict[str, _PageSeen], rule: DropRule, now: datetime
) -> list[DropAlert]:
    """Run the drop rule for every page the batch touched.

    The database sums the two windows per page and question, so at most
    pages × questions rows come back, not every day of 35. The windows depend on
    a page's as_of: one grouped query per distinct as_of (in live traffic nearly
    every page of a batch has today's) and chunk of pages.
    """
    by_as_of: dict[date, list[str]] = {}
    for page_id, seen in pages.items():
        by_as_of.setdefault(seen.latest_day, []).append(page_id)
    recent: dict[str, dict[str, Tally]] = {}
    baseline: dict[str, dict[str, Tally]] = {}
    answers = (DailyCount.yes, DailyCount.neutral, DailyCount.no)
    n = DailyCount.yes + DailyCount.neutral + DailyCount.no
    for as_of, page_ids in by_as_of.items():
        recent_window, baseline_window = rule.windows(as_of)
        in_recent = DailyCount.day >= recent_window.start
        for start in range(0, len(page_ids), _IN_CHUNK):
            rows = session.execute(
                select(
                    DailyCount.page_id,
                    DailyCount.question,
                    *(func.sum(case((in_recent, column), else_=0)) for column in answers),
                    *(func.sum(case((in_recent, 0), else_=column)) for column in answers),
                )
                .where(
                    among(session, DailyCount.page_id, page_ids[start : start + _IN_CHUNK]),
                    DailyCount.day.between(baseline_window.start, as_of),
                )
                .group_by(DailyCount.page_id, DailyCount.question)
                # The rule's first test, early: most page-questions have too few
                # answers to judge, and need not leave the database.
                .having(
                    func.sum(case((in_recent, n), else_=0)) >= rule.min_n_recent,
                    func.sum(case((in_recent, 0), else_=n)) >= rule.min_n_baseline,
                )
            )
            for page_id, question, r_yes, r_neutral, r_no, b_yes, b_neutral, b_no in rows:
                recent.setdefault(page_id, {})[question] = Tally(r_yes, r_neutral, r_no)
                baseline.setdefault(page_id, {})[question] = Tally(b_yes, b_neutral, b_no)

    # Only pages with a question to judge can fire.
    candidates = [page_id for page_id in pages if page_id in recent]
    cooldown: dict[str, dict[str, date]] = {page_id: {} for page_id in candidates}
    for start in range(0, len(candidates), _IN_CHUNK):
        states = session.execute(
            select(AlertState.page_id, AlertState.question, AlertState.last_alert_day).where(
                among(session, AlertState.page_id, candidates[start : start + _IN_CHUNK])
            )
        )
        for page_id, question, day in states:
            cooldown[page_id][question] = day

    alerts = [
        alert
        for page_id in candidates
        if (
            alert := evaluate_windows(
                page_id,
                recent[page_id],
                baseline[page_id],
                pages[page_id].latest_day,
                rule,
                cooldown[page_id],
            )
        )
    ]
    if alerts:
        _record_alerts(session, alerts, now)
    return alerts


def _record_alerts(session: Session, alerts: list[DropAlert], now: datetime) -> None:
    page_rows = session.execute(
        select(Page.id, Page.url, Page.title, Page.division).where(
            among(session, Page.id, [a.page_id for a in alerts])
        )
    )
    page_info = {row.id: row for row in page_rows}
    outbox_rows = []
    state_rows = []
    for alert in alerts:
        page = page_info[alert.page_id]
        event = make_alert_event(alert, page.url, page.title, page.division, now)
        outbox_rows.append(
            {
                "alert_id": alert.alert_id,
                "page_id": alert.page_id,
                "payload": events.encode(event).decode("utf-8"),
                "created_at": now,
                "sent_at": None,
            }
        )
        state_rows.extend(
            {
                "page_id": alert.page_id,
                "question": q.question,
                "last_alert_day": alert.as_of,
                "last_alert_id": alert.alert_id,
            }
            for q in alert.questions
        )
        log.info(
            "drop alert",
            extra={
                "alert_id": alert.alert_id,
                "page_id": alert.page_id,
                "questions": [q.question for q in alert.questions],
            },
        )
    outbox = dialect_insert(session, AlertOutbox.__table__)
    session.execute(outbox.on_conflict_do_nothing(index_elements=["alert_id"]), outbox_rows)
    state = dialect_insert(session, AlertState.__table__)
    session.execute(
        state.on_conflict_do_update(
            index_elements=["page_id", "question"],
            set_={
                "last_alert_day": state.excluded.last_alert_day,
                "last_alert_id": state.excluded.last_alert_id,
            },
        ),
        state_rows,
    )


def _tally_json(tally: Tally) -> dict[str, Any]:
    score = question_score(tally)
    assert score is not None
    return {
        "yes": tally.yes,
        "neutral": tally.neutral,
        "no": tally.no,
        "n": tally.n,
        "score": round(score, 1),
    }


def make_alert_event(
    alert: DropAlert,
    url: str,
    title: str | None,
    division: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The koe.alerts.v1 CloudEvent; its id is the deterministic alert id."""
    data = {
        "alert_id": alert.alert_id,
        "kind": "drop",
        "page": {"id": alert.page_id, "url": url, "title": title, "division": division},
        "recent": _window_json(alert.recent.start, alert.recent.end),
        "baseline": _window_json(alert.baseline.start, alert.baseline.end),
        "questions": [
            {
                "question": q.question,
                "recent": _tally_json(q.recent),
                "baseline": _tally_json(q.baseline),
                "drop_points": round(q.drop_points, 1),
                "p_value": q.p_value,
            }
            for q in alert.questions
        ],
    }
    return events.make_event(
        ALERTS_TOPIC,
        source=ALERT_SOURCE,
        subject=alert.page_id,
        data=data,
        event_id=alert.alert_id,
        time=now,
    )


def _window_json(start: date | None, end: date) -> dict[str, str]:
    assert start is not None
    return {"start": start.isoformat(), "end": end.isoformat()}
