"""Alerts for the pages a batch touched: drops, and recoveries from earlier drops.

The drop detector (alerts/judging.py) judges the pages' completed days. This runs
inside the batch's transaction (see ingest.py): the detector state and the
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

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aggregator.alerts.crowd import (
    DEFAULT_RULE,
    CrowdRule,
    StandsWithout,
    Verdict,
    evidence_start,
    judge,
)
from aggregator.alerts.crowd_window import window_counts
from aggregator.alerts.detector import DetectorSettings
from aggregator.alerts.judging import judge_pages
from aggregator.alerts.kinds import DropAlert, QuestionDrop, RecoveryAlert
from aggregator.alerts.models import AlertOutbox
from aggregator.counting.models import DailyResponse
from aggregator.pages.models import Page
from aggregator.stats.scoring import Tally, Window, question_score, wilson_interval
from koe_contract import ALERT_DROP, ALERT_RECOVERED
from koe_contract import payloads as wire
from koe_directory import Directory
from koe_kit import events
from koe_kit.db import among, dialect_insert

log = logging.getLogger(__name__)

ALERT_SOURCE = "koe/aggregator"

Alert = DropAlert | RecoveryAlert


def raise_alerts(
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
    (alerts/judging.py). An alert older than max_age_days is recorded, never sent.

    The event's time is the end of the judged day, not the wall clock, so a replay
    records the very alerts a live run did."""
    today = now.astimezone(timezone).date()
    judged = judge_pages(
        session,
        through,
        settings,
        today=today,
        max_age_days=max_age_days,
        verdict=lambda alert, stands_without: crowd_verdict(
            session, alert, crowd, settings, stands_without
        ),
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


def chart_start(alert: Alert) -> date:
    """The first day of the chart the alert was judged on (a drop's, or the earliest of a
    recovery's questions')."""
    if isinstance(alert, DropAlert):
        start = alert.recent.start
    else:
        start = min((q.window.start for q in alert.questions if q.window.start), default=None)
    return start or alert.as_of


def judged_window(alert: Alert, settings: DetectorSettings) -> tuple[date, date]:
    """The days whose answers carry the alert: the last evidence_days of the chart's
    window, up to as_of (crowd.evidence_start may reach further back on a quiet page).

    Not the whole chart window: its older days weigh little in the chart, and a crowd of
    good days there would vouch for one source's week of bad answers (bench_attacks,
    "forged drop over a week from one address")."""
    return settings.evidence_start(alert.as_of, chart_start(alert)), alert.as_of


def crowd_verdict(
    session: Session,
    alert: Alert,
    crowd: CrowdRule,
    settings: DetectorSettings,
    stands_without: StandsWithout | None = None,
) -> Verdict:
    """Whether the alert's evidence may be emailed, or why it is held (crowd.py);
    `stands_without` re-judges a drop without some answers (alerts/judging.py)."""
    first = chart_start(alert)
    start, end = judged_window(alert, settings)
    counts = window_counts(session, alert.page_id, first, end)
    start = evidence_start(crowd, counts, first, start, end)
    usual = usual_per_day(session, alert, settings)
    return judge(crowd, start, end, counts, stands_without, usual)


def usual_per_day(session: Session, alert: Alert, settings: DetectorSettings) -> float:
    """The page's responses a day over the reference window of the alert's day: what a
    burst is measured against (crowd.py)."""
    reference = settings.reference_window(alert.as_of)
    responses = session.scalar(
        select(func.coalesce(func.sum(DailyResponse.responses), 0)).where(
            DailyResponse.page_id == alert.page_id,
            DailyResponse.day.between(reference.start, reference.end),
        )
    )
    return (responses or 0) / settings.reference_days


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
    alerts: list[Alert] = [*drops, *recoveries]
    page_ids = list({a.page_id for a in alerts})
    pages = {
        row.id: row
        for row in session.execute(
            select(Page.id, Page.url, Page.title).where(among(session, Page.id, page_ids))
        )
    }
    outbox_rows = []
    for alert in alerts:
        page = pages[alert.page_id]
        info: wire.Page = {
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


def tally_json(tally: Tally) -> wire.Tally:
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


def _window_json(window: Window) -> wire.Window:
    assert window.start is not None
    return {"start": window.start.isoformat(), "end": window.end.isoformat()}


def alert_event(alert: Alert, page: wire.Page, now: datetime) -> dict[str, Any]:
    """The CloudEvent of an alert: koe.alerts.v1 for a drop, koe.alerts.recovered.v1
    for a recovery. Its id is the deterministic alert id."""
    data: wire.AlertDrop | wire.AlertRecovered
    if isinstance(alert, DropAlert):
        event_type, data = ALERT_DROP, _drop_data(alert, page)
    else:
        event_type, data = ALERT_RECOVERED, _recovery_data(alert, page)
    return events.make_event(
        event_type,
        source=ALERT_SOURCE,
        subject=alert.page_id,
        data=data,
        event_id=alert.alert_id,
        time=now,
    )


def _drop_data(alert: DropAlert, page: wire.Page) -> wire.AlertDrop:
    return {
        "alert_id": alert.alert_id,
        "kind": "drop",
        "page": page,
        "recent": _window_json(alert.recent),
        "baseline": _window_json(alert.baseline),
        "questions": [_dropped_question(q) for q in alert.questions],
    }


def _dropped_question(q: QuestionDrop) -> wire.DroppedQuestion:
    question: wire.DroppedQuestion = {
        "question": q.question,
        "recent": tally_json(q.recent),
        "baseline": tally_json(q.baseline),
        "drop_points": round(q.drop_points, 1),
        "p_value": q.p_value,
    }
    if q.chart:  # last, as it always was: the bytes on the wire stay the same
        question["chart"] = dict(q.chart)
    return question


def _recovery_data(alert: RecoveryAlert, page: wire.Page) -> wire.AlertRecovered:
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
