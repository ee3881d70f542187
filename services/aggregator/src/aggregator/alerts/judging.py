"""The drop detector in the service: each page's completed days judged once, in order.

For the pages a batch brought answers for, every city day from the day after the last
one judged up to `through` (the day before the page's latest answer, and never today:
a page's events arrive in order on its partition, so a later day's answer means the
earlier days are complete) is judged by detector.judge_page, and the state is kept in
detector_state. So a consumer that was down, or a replay from offset 0, catches up day
by day with exactly the judgements a live run made, and the alert ids (uuid5 over the
page, questions and judged window) come out the same.

Emails: a page's drop or recovery becomes a DropAlert / RecoveryAlert (alerts/kinds.py),
which alerts/raising.py records, asks crowd.py about and publishes. An alert
whose day is more than max_age_days before today is old news: recorded (the same
record a live run made) but never published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aggregator.alerts import detector
from aggregator.alerts.crowd import StandsWithout, Verdict
from aggregator.alerts.detector import DetectorSettings, PageJudgement, State
from aggregator.alerts.kinds import (
    DropAlert,
    OpenDrop,
    QuestionDrop,
    QuestionRecovery,
    RecoveryAlert,
    alert_id_for,
    recovery_id_for,
)
from aggregator.alerts.models import AlertOutbox, DetectorState, publishable
from aggregator.counting.models import DailyCount
from aggregator.stats.scoring import Tally
from koe_directory import QUESTION_KEYS
from koe_kit.db import Upsert, among, bulk_insert, table_of

_IN_CHUNK = 500


@dataclass
class _Row:
    """A detector_state row in memory: the pure state and what the service adds."""

    state: State
    dropped: Tally | None = None  # the chart's answers when the open drop alarmed
    drop_alert_id: str | None = None


@dataclass
class Judged:
    drops: list[DropAlert] = field(default_factory=list)
    recoveries: list[RecoveryAlert] = field(default_factory=list)
    old: set[str] = field(default_factory=set)  # ids of alerts too old to email
    # crowd.py's verdict on each alert, asked as it is made: a recovery later in the
    # same catch-up must know whether its drop was held.
    verdicts: dict[str, Verdict] = field(default_factory=dict)


def judge_pages(
    session: Session,
    through: Mapping[str, date],
    settings: DetectorSettings,
    *,
    today: date,
    max_age_days: int,
    verdict: Callable[[DropAlert | RecoveryAlert, StandsWithout | None], Verdict],
) -> Judged:
    rows = _load(session, list(through))
    starts = _starts(session, through, rows)
    todo = {p: (start, through[p]) for p, start in starts.items() if start <= through[p]}
    judged = Judged()
    if not todo:
        return judged
    first = min(settings.first_day(start) for start, _ in todo.values())
    daily = _daily(session, list(todo), first, max(end for _, end in todo.values()))
    for page_id, (start, end) in todo.items():
        page_rows = {q: rows.get((page_id, q)) or _Row(State()) for q in QUESTION_KEYS}
        day = start
        while day <= end:
            inputs = {q: _inputs(daily.get((page_id, q), {}), day, settings) for q in QUESTION_KEYS}
            before = {q: r.state for q, r in page_rows.items()}
            states, page = detector.judge_page(before, day, inputs, settings)
            alert = _alerts(
                session, page_id, page, inputs, page_rows, states, judged, settings, verdict
            )
            if alert and max_age_days and day < today - timedelta(days=max_age_days):
                judged.old.add(alert)
            day += timedelta(days=1)
        for question, row in page_rows.items():
            rows[(page_id, question)] = row
    _save(session, {key: row for key, row in rows.items() if key[0] in todo})
    return judged


def _inputs(days: dict[date, Tally], day: date, settings: DetectorSettings):
    ref = settings.reference_window(day)
    assert ref.start is not None
    reference = Tally()
    for d, tally in days.items():
        if ref.start <= d <= ref.end:
            reference = reference + tally
    return reference, days.items()


def _alerts(
    session: Session,
    page_id: str,
    page: PageJudgement,
    inputs: Mapping[str, tuple[Tally, Iterable[tuple[date, Tally]]]],
    rows: dict[str, _Row],
    states: dict[str, State],
    judged: Judged,
    settings: DetectorSettings,
    verdict: Callable[[DropAlert | RecoveryAlert, StandsWithout | None], Verdict],
) -> str | None:
    """Turn the page's day into alerts, note in its rows what a recovery needs, and
    return the id of the alert it made, if any."""
    before = {q: _Row(r.state, r.dropped, r.drop_alert_id) for q, r in rows.items()}
    for question, state in states.items():
        rows[question] = _Row(state, rows[question].dropped, rows[question].drop_alert_id)
        if not state.open:  # recovered, or closed as the new normal
            rows[question] = _Row(state)
    made = None
    if page.email == detector.RECOVERY:
        drops = [
            OpenDrop(
                question=q,
                alert_id=before[q].drop_alert_id or "",
                alert_day=before[q].state.dropped_day or page.day,
                baseline=before[q].state.dropped_from or Tally(),
                dropped=before[q].dropped or Tally(),
            )
            for q in page.emailed
        ]
        # A drop held for review or dismissed was never emailed: no recovery of it.
        if all(d.alert_id and _emailed(session, judged, d.alert_id) for d in drops):
            recovery = RecoveryAlert(
                alert_id=recovery_id_for(page_id, drops),
                page_id=page_id,
                as_of=page.day,
                questions=[
                    QuestionRecovery(
                        d,
                        page.questions[d.question].chart.window,
                        page.questions[d.question].chart.answers,
                    )
                    for d in drops
                ],
            )
            judged.recoveries.append(recovery)
            judged.verdicts[recovery.alert_id] = verdict(recovery, None)
            made = recovery.alert_id
    fired = {q: j for q, j in page.questions.items() if j.fired == detector.DROP}
    if not fired:
        return made
    alert_id: str | None
    if page.email == detector.DROP:
        emailed = [page.questions[q] for q in page.emailed]
        recent = emailed[0].chart.window
        alert = DropAlert(
            alert_id=alert_id_for(page_id, page.emailed, recent),
            page_id=page_id,
            as_of=page.day,
            recent=recent,
            baseline=emailed[0].reference,
            questions=[
                QuestionDrop(
                    question=q,
                    recent=j.chart.answers,
                    baseline=j.reference_answers,
                    drop_points=max(0.0, min(100.0, j.drop_points or 0.0)),
                    p_value=detector.p_value(j, settings),
                    chart={
                        "weighted_score": round(j.decided_score or 0.0, 1),
                        "effective_n": round(j.decided.effective_n, 1),
                        "limit_points": round(j.limit_points or 0.0, 1),
                        "half_life_days": settings.half_life_days,
                    },
                )
                for q, j in zip(page.emailed, emailed, strict=True)
            ],
        )
        judged.drops.append(alert)

        def stands_without(removed: Mapping[date, int]) -> bool:
            """Whether an emailed question still alarms with removed[day] of each day's
            lowest answers taken out (judged from the same state, on the same day)."""
            return any(
                detector.judge(
                    before[q].state,
                    page.day,
                    inputs[q][0],
                    detector.without_lowest(inputs[q][1], removed),
                    settings,
                )[1].fired
                == detector.DROP
                for q in page.emailed
            )

        judged.verdicts[alert.alert_id] = verdict(alert, stands_without)
        alert_id = alert.alert_id
    else:
        # Joined to the page's open drop of the last cooldown (detector.judge_page).
        alert_id = next(
            (r.drop_alert_id for q, r in before.items() if q not in fired and r.drop_alert_id),
            None,
        )
    for question, j in fired.items():
        rows[question].dropped = j.chart.answers
        rows[question].drop_alert_id = alert_id
    return alert_id if page.email == detector.DROP else made


def _emailed(session: Session, judged: Judged, alert_id: str) -> bool:
    """Whether a drop alert was (or will be) published: not held, or released."""
    if alert_id in judged.verdicts:
        return judged.verdicts[alert_id].email
    published = session.scalar(
        select(func.count()).where(AlertOutbox.alert_id == alert_id, publishable())
    )
    return bool(published)


def _load(session: Session, page_ids: list[str]) -> dict[tuple[str, str], _Row]:
    rows: dict[tuple[str, str], _Row] = {}
    for start in range(0, len(page_ids), _IN_CHUNK):
        chunk = page_ids[start : start + _IN_CHUNK]
        # Plain rows, not ORM objects: a batch loads three per page it touched, and
        # building tracked instances was most of this step's time (bench_aggregator.py).
        for r in session.execute(
            select(*DetectorState.__table__.c).where(among(session, DetectorState.page_id, chunk))
        ):
            dropped_from = (
                Tally(r.dropped_from_yes, r.dropped_from_neutral or 0, r.dropped_from_no or 0)
                if r.dropped_from_yes is not None
                else None
            )
            dropped = (
                Tally(r.dropped_yes, r.dropped_neutral or 0, r.dropped_no or 0)
                if r.dropped_yes is not None
                else None
            )
            state = State(
                last_day=r.last_day,
                restart=r.restart,
                quiet_until=r.quiet_until,
                dropped_day=r.dropped_day,
                dropped_from=dropped_from,
                streak=r.streak,
            )
            rows[(r.page_id, r.question)] = _Row(state, dropped, r.drop_alert_id)
    return rows


def _starts(
    session: Session, through: Mapping[str, date], rows: dict[tuple[str, str], _Row]
) -> dict[str, date]:
    """The first day to judge per page: the day after the last judged, or, for a page
    never judged, its first day with answers."""
    starts: dict[str, date] = {}
    new = []
    for page_id in through:
        judged = [
            r.state.last_day
            for q in QUESTION_KEYS
            if (r := rows.get((page_id, q))) and r.state.last_day
        ]
        if judged:
            starts[page_id] = max(judged) + timedelta(days=1)
        else:
            new.append(page_id)
    for start in range(0, len(new), _IN_CHUNK):
        chunk = new[start : start + _IN_CHUNK]
        for page_id, first in session.execute(
            select(DailyCount.page_id, func.min(DailyCount.day))
            .where(among(session, DailyCount.page_id, chunk))
            .group_by(DailyCount.page_id)
        ):
            starts[page_id] = first
    return starts


def _daily(
    session: Session, page_ids: list[str], first: date, last: date
) -> dict[tuple[str, str], dict[date, Tally]]:
    daily: dict[tuple[str, str], dict[date, Tally]] = {}
    c = DailyCount.__table__.c
    for start in range(0, len(page_ids), _IN_CHUNK):
        chunk = page_ids[start : start + _IN_CHUNK]
        # Core columns, not the ORM's: a sweep reads 126 days of rows for every page
        # with answers, and the ORM's row processing was a quarter of that read.
        for page_id, day, question, yes, neutral, no in session.execute(
            select(c.page_id, c.day, c.question, c.yes, c.neutral, c.no).where(
                among(session, c.page_id, chunk), c.day.between(first, last)
            )
        ):
            daily.setdefault((page_id, question), {})[day] = Tally(yes, neutral, no)
    return daily


def _save(session: Session, rows: dict[tuple[str, str], _Row]) -> None:
    values = []
    for (page_id, question), row in rows.items():
        s, dropped_from, dropped = row.state, row.state.dropped_from, row.dropped
        if s.last_day is None:
            continue
        is_open = s.dropped_day is not None
        values.append(
            {
                "page_id": page_id,
                "question": question,
                "last_day": s.last_day,
                "restart": s.restart,
                "quiet_until": s.quiet_until,
                "streak": s.streak,
                "dropped_day": s.dropped_day,
                "dropped_from_yes": dropped_from.yes if dropped_from else None,
                "dropped_from_neutral": dropped_from.neutral if dropped_from else None,
                "dropped_from_no": dropped_from.no if dropped_from else None,
                "dropped_yes": dropped.yes if dropped and is_open else None,
                "dropped_neutral": dropped.neutral if dropped and is_open else None,
                "dropped_no": dropped.no if dropped and is_open else None,
                "drop_alert_id": row.drop_alert_id if is_open else None,
            }
        )
    if not values:
        return
    columns = [c for c in values[0] if c not in ("page_id", "question")]

    def replace(insert: Upsert) -> Upsert:
        return insert.on_conflict_do_update(
            index_elements=["page_id", "question"],
            set_={c: insert.excluded[c] for c in columns},
        )

    # One statement for all rows (a daily sweep saves three per page of the city: an
    # executemany of 30,000 rows was a sixth of the sweep's time, bench_aggregator.py).
    bulk_insert(session, table_of(DetectorState), values, replace)
