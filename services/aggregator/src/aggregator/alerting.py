"""Alerts for the pages a batch touched: drops, and recoveries from earlier drops.

Runs inside the batch's transaction (see ingest.py): the alert state and the
outbox rows commit with the counts that caused them, and OutboxPublisher sends
them after the commit. A drop is a koe.alerts.v1 event, a recovery a
koe.alerts.recovered.v1 event; both go on topic koe.alerts.v1 with key = page
id, so a page's recovery always follows its drop (docs/alerts.md says why it is
a new event type rather than a new `kind`).

Before an alert is written, `crowd_verdict` asks crowd.py whether the counted
responses of the window it was judged on come from a crowd; one that does not is
recorded the same way (same id, payload, alert state and cooldown: one problem,
one record) but held for review, and the outbox does not publish it until an admin
releases it. A held drop gets no recovery until it is released: a division is never
told a page recovered from a drop it was not told of.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from aggregator.crowd import DEFAULT_RULE, CrowdRule, Verdict, judge
from aggregator.crowd_window import window_counts
from aggregator.detector import DetectorSettings
from aggregator.detector_alerts import judge_pages
from aggregator.drop_rule import (
    DropAlert,
    DropRule,
    OpenDrop,
    RecoveryAlert,
    evaluate_recovery,
    evaluate_windows,
)
from aggregator.models import AlertOutbox, AlertState, DailyCount, Page, publishable
from aggregator.scoring import Tally, Window, question_score, wilson_interval
from koe_directory import Directory
from koe_kit import events
from koe_kit.db import among, dialect_insert

log = logging.getLogger(__name__)

ALERTS_TOPIC = "koe.alerts.v1"
RECOVERED_TYPE = "koe.alerts.recovered.v1"
ALERT_SOURCE = "koe/aggregator"
# Stays well below every database's bound-parameter limit.
_IN_CHUNK = 500

Alert = DropAlert | RecoveryAlert


def raise_alerts(
    session: Session,
    as_of: Mapping[str, date],
    rule: DropRule,
    now: datetime,
    directory: Directory,
    crowd: CrowdRule = DEFAULT_RULE,
) -> list[Alert]:
    """Judge each page at its as_of (the latest event day the batch brought for it)."""
    drops = _drops(session, as_of, rule)
    # After the drops: a question that dropped just now has an empty recovery window.
    recoveries = _recoveries(session, as_of, rule)
    alerts: list[Alert] = [*drops, *recoveries]
    if alerts:
        verdicts = {alert.alert_id: crowd_verdict(session, alert, crowd) for alert in alerts}
        _record(session, drops, recoveries, now, directory, verdicts)
        _note_rule_state(session, drops, recoveries)
    return alerts


def raise_detector_alerts(
    session: Session,
    through: Mapping[str, date],
    settings: DetectorSettings,
    *,
    max_age_days: int,
    now: datetime,
    timezone: ZoneInfo,
    directory: Directory,
    crowd: CrowdRule = DEFAULT_RULE,
) -> list[Alert]:
    """Judge each page's completed days up to through[page] with the drop detector
    (detector_alerts.py). An alert older than max_age_days is recorded, never sent.

    The event's time is the end of the judged day, not the wall clock, so a replay
    records the very alerts a live run did."""
    today = now.astimezone(timezone).date()
    judged = judge_pages(
        session,
        through,
        settings,
        today=today,
        max_age_days=max_age_days,
        verdict=lambda alert: crowd_verdict(session, alert, crowd),
    )
    alerts: list[Alert] = [*judged.drops, *judged.recoveries]
    if alerts:

        def day_end(alert: Alert) -> datetime:
            end = datetime.combine(alert.as_of + timedelta(days=1), time(), timezone)
            return end.astimezone(UTC)

        _record(
            session,
            judged.drops,
            judged.recoveries,
            now,
            directory,
            judged.verdicts,
            old=judged.old,
            moment=day_end,
        )
    return [a for a in alerts if a.alert_id not in judged.old]


def judged_window(alert: Alert) -> tuple[date, date]:
    """The days whose answers made the alert: a drop's recent window, a recovery's
    recovery windows (from the earliest of its questions' to as_of)."""
    if isinstance(alert, DropAlert):
        assert alert.recent.start is not None
        return alert.recent.start, alert.recent.end
    starts = [q.window.start for q in alert.questions if q.window.start is not None]
    return min(starts, default=alert.as_of), alert.as_of


def crowd_verdict(session: Session, alert: Alert, crowd: CrowdRule) -> Verdict:
    """Whether the alert's evidence may be emailed, or why it is held (crowd.py)."""
    start, end = judged_window(alert)
    return judge(crowd, start, end, window_counts(session, alert.page_id, start, end))


def _chunks(values: list[str]):
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _drops(session: Session, as_of: Mapping[str, date], rule: DropRule) -> list[DropAlert]:
    """Run the drop rule for every page.

    The database sums the two windows per page and question, so at most
    pages × questions rows come back, not every day of 35. The windows depend on
    a page's as_of: one grouped query per distinct as_of (in live traffic nearly
    every page of a batch has today's) and chunk of pages.
    """
    by_as_of: dict[date, list[str]] = {}
    for page_id, day in as_of.items():
        by_as_of.setdefault(day, []).append(page_id)
    recent: dict[str, dict[str, Tally]] = {}
    baseline: dict[str, dict[str, Tally]] = {}
    answers = (DailyCount.yes, DailyCount.neutral, DailyCount.no)
    n = DailyCount.yes + DailyCount.neutral + DailyCount.no
    for day, page_ids in by_as_of.items():
        recent_window, baseline_window = rule.windows(day)
        in_recent = DailyCount.day >= recent_window.start
        for chunk in _chunks(page_ids):
            rows = session.execute(
                select(
                    DailyCount.page_id,
                    DailyCount.question,
                    *(func.sum(case((in_recent, column), else_=0)) for column in answers),
                    *(func.sum(case((in_recent, 0), else_=column)) for column in answers),
                )
                .where(
                    among(session, DailyCount.page_id, chunk),
                    DailyCount.day.between(baseline_window.start, day),
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
    candidates = [page_id for page_id in as_of if page_id in recent]
    cooldown: dict[str, dict[str, date]] = {page_id: {} for page_id in candidates}
    for chunk in _chunks(candidates):
        states = session.execute(
            select(AlertState.page_id, AlertState.question, AlertState.last_alert_day).where(
                among(session, AlertState.page_id, chunk)
            )
        )
        for page_id, question, day in states:
            cooldown[page_id][question] = day
    return [
        alert
        for page_id in candidates
        if (
            alert := evaluate_windows(
                page_id, recent[page_id], baseline[page_id], as_of[page_id], rule, cooldown[page_id]
            )
        )
    ]


def _recoveries(session: Session, as_of: Mapping[str, date], rule: DropRule) -> list[RecoveryAlert]:
    """Judge the open drops of the pages. Open drops are few (a handful per city),
    so their last recent_days of daily rows are read as they are."""
    open_drops: dict[str, dict[str, OpenDrop]] = {}
    for chunk in _chunks(list(as_of)):
        states = session.scalars(
            select(AlertState)
            .outerjoin(AlertOutbox, AlertOutbox.alert_id == AlertState.last_alert_id)
            .where(
                among(session, AlertState.page_id, chunk),
                AlertState.baseline_yes.is_not(None),
                AlertState.recovery_alert_id.is_(None),
                # A drop held for review (or dismissed) was never emailed.
                AlertOutbox.alert_id.is_(None) | publishable(),
            )
        )
        for s in states:
            assert None not in (s.baseline_yes, s.baseline_neutral, s.baseline_no)
            open_drops.setdefault(s.page_id, {})[s.question] = OpenDrop(
                question=s.question,
                alert_id=s.last_alert_id,
                alert_day=s.last_alert_day,
                baseline=Tally(s.baseline_yes, s.baseline_neutral, s.baseline_no),
                dropped=Tally(s.dropped_yes or 0, s.dropped_neutral or 0, s.dropped_no or 0),
            )
    if not open_drops:
        return []
    page_ids = list(open_drops)
    first = min(as_of[p] for p in page_ids) - timedelta(days=rule.recent_days - 1)
    daily = daily_tallies(session, page_ids, first, max(as_of.values()))
    return [
        alert
        for page_id in page_ids
        if (
            alert := evaluate_recovery(
                page_id, daily[page_id], as_of[page_id], rule, open_drops[page_id]
            )
        )
    ]


def daily_tallies(
    session: Session, page_ids: list[str], first: date, last: date
) -> dict[str, list[tuple[date, str, Tally]]]:
    """Each page's (day, question, tally) rows from `first` to `last`, as the drop rule
    reads them; a page without rows gets an empty list."""
    daily: dict[str, list[tuple[date, str, Tally]]] = {p: [] for p in page_ids}
    for chunk in _chunks(page_ids):
        rows = session.execute(
            select(
                DailyCount.page_id,
                DailyCount.day,
                DailyCount.question,
                DailyCount.yes,
                DailyCount.neutral,
                DailyCount.no,
            ).where(
                among(session, DailyCount.page_id, chunk),
                DailyCount.day.between(first, last),
            )
        )
        for page_id, day, question, yes, neutral, no in rows:
            daily[page_id].append((day, question, Tally(yes, neutral, no)))
    return daily


def _record(
    session: Session,
    drops: list[DropAlert],
    recoveries: list[RecoveryAlert],
    now: datetime,
    directory: Directory,
    verdicts: Mapping[str, Verdict],
    *,
    old: Collection[str] = (),
    moment: Callable[[Alert], datetime] | None = None,
) -> None:
    """Write the alerts to the outbox, held ones with crowd.py's reason. `old` alerts
    are marked sent without being sent (old news); `moment` gives an alert's event
    time (default: now)."""
    page_ids = list({a.page_id for a in [*drops, *recoveries]})
    pages = {
        row.id: row
        for row in session.execute(
            select(Page.id, Page.url, Page.title).where(among(session, Page.id, page_ids))
        )
    }
    outbox_rows = []
    for alert in [*drops, *recoveries]:
        page = pages[alert.page_id]
        info = {
            "id": alert.page_id,
            "url": page.url,
            "title": page.title,
            # divisions.yaml's for the URL, never a code an answer named.
            "division": directory.prefix_code(page.url),
        }
        event = alert_event(alert, info, moment(alert) if moment else now)
        verdict = verdicts[alert.alert_id]
        outbox_rows.append(
            {
                "alert_id": alert.alert_id,
                "page_id": alert.page_id,
                "payload": events.encode(event).decode("utf-8"),
                "created_at": now,
                "sent_at": now if alert.alert_id in old else None,
                "held_reason": verdict.held,
                "held_evidence": None if verdict.email else json.dumps(verdict.as_json()),
            }
        )
        log.info(
            ("drop alert" if isinstance(alert, DropAlert) else "recovery alert")
            + ("" if verdict.email else " held for review"),
            extra={"alert_id": alert.alert_id, "page_id": alert.page_id, "held": verdict.held},
        )
    outbox = dialect_insert(session, AlertOutbox.__table__)
    session.execute(outbox.on_conflict_do_nothing(index_elements=["alert_id"]), outbox_rows)


def _note_rule_state(
    session: Session, drops: list[DropAlert], recoveries: list[RecoveryAlert]
) -> None:
    """The drop rule's cooldown and recovery state (alert_state)."""
    if drops:
        _open(session, drops)
    for recovery in recoveries:
        for q in recovery.questions:
            session.execute(
                update(AlertState)
                .where(
                    AlertState.page_id == recovery.page_id,
                    AlertState.question == q.drop.question,
                )
                .values(recovery_alert_id=recovery.alert_id, recovered_day=recovery.as_of)
            )


def _open(session: Session, drops: list[DropAlert]) -> None:
    """Note each dropped question for the cooldown and the recovery.

    A drop that alerts again before it recovered (after the cooldown) keeps the
    baseline it first dropped from: the recovery is back to where the page was
    before the problem, not to a baseline the problem already pulled down.
    """
    table = AlertState.__table__
    rows = [
        {
            "page_id": alert.page_id,
            "question": q.question,
            "last_alert_day": alert.as_of,
            "last_alert_id": alert.alert_id,
            "baseline_yes": q.baseline.yes,
            "baseline_neutral": q.baseline.neutral,
            "baseline_no": q.baseline.no,
            "dropped_yes": q.recent.yes,
            "dropped_neutral": q.recent.neutral,
            "dropped_no": q.recent.no,
            "recovery_alert_id": None,
            "recovered_day": None,
        }
        for alert in drops
        for q in alert.questions
    ]
    insert = dialect_insert(session, table)
    still_open = (table.c.baseline_yes.is_not(None)) & (table.c.recovery_alert_id.is_(None))

    def kept(column: str):
        return case((still_open, table.c[column]), else_=insert.excluded[column])

    session.execute(
        insert.on_conflict_do_update(
            index_elements=["page_id", "question"],
            set_={
                "last_alert_day": insert.excluded.last_alert_day,
                "last_alert_id": insert.excluded.last_alert_id,
                "baseline_yes": kept("baseline_yes"),
                "baseline_neutral": kept("baseline_neutral"),
                "baseline_no": kept("baseline_no"),
                "dropped_yes": insert.excluded.dropped_yes,
                "dropped_neutral": insert.excluded.dropped_neutral,
                "dropped_no": insert.excluded.dropped_no,
                "recovery_alert_id": None,
                "recovered_day": None,
            },
        ),
        rows,
    )


def tally_json(tally: Tally) -> dict[str, Any]:
    score, interval = question_score(tally), wilson_interval(tally)
    assert score is not None and interval is not None
    return {
        "yes": tally.yes,
        "neutral": tally.neutral,
        "no": tally.no,
        "n": tally.n,
        "score": round(score, 1),
        "interval": {"low": round(interval[0], 1), "high": round(interval[1], 1)},
    }


def _window_json(window: Window) -> dict[str, str]:
    assert window.start is not None
    return {"start": window.start.isoformat(), "end": window.end.isoformat()}


def alert_event(alert: Alert, page: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The CloudEvent of an alert: koe.alerts.v1 for a drop, koe.alerts.recovered.v1
    for a recovery. Its id is the deterministic alert id."""
    if isinstance(alert, DropAlert):
        event_type, data = ALERTS_TOPIC, _drop_data(alert, page)
    else:
        event_type, data = RECOVERED_TYPE, _recovery_data(alert, page)
    return events.make_event(
        event_type,
        source=ALERT_SOURCE,
        subject=alert.page_id,
        data=data,
        event_id=alert.alert_id,
        time=now,
    )


def _drop_data(alert: DropAlert, page: dict[str, Any]) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "kind": "drop",
        "page": page,
        "recent": _window_json(alert.recent),
        "baseline": _window_json(alert.baseline),
        "questions": [
            {
                "question": q.question,
                "recent": tally_json(q.recent),
                "baseline": tally_json(q.baseline),
                "drop_points": round(q.drop_points, 1),
                "p_value": q.p_value,
                **({"chart": dict(q.chart)} if q.chart else {}),
            }
            for q in alert.questions
        ],
    }


def _recovery_data(alert: RecoveryAlert, page: dict[str, Any]) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "page": page,
        "as_of": alert.as_of.isoformat(),
        "questions": [
            {
                "question": q.drop.question,
                "drop_alert_id": q.drop.alert_id,
                "baseline": tally_json(q.drop.baseline),
                "dropped": tally_json(q.drop.dropped),
                "recent": tally_json(q.recent),
                "window": _window_json(q.window),
            }
            for q in alert.questions
        ],
    }
