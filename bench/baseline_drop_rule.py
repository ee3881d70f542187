"""The baseline for the benches: drop rule v1, which the aggregator ran before the drop
detector (issue 12). The service no longer uses it; bench_detector.py and
bench_drop_rule.py print its numbers side by side with the detector's.

Drop rule v1: did a page's satisfaction drop, per question? Pure, no I/O.

For a page, as_of is the latest event day the batch brought for it. The recent
window is the `recent_days` days ending at as_of; the baseline window is the
`baseline_days` days just before it. A question fires when all hold:

- n_recent ≥ min_n_recent (20) and n_baseline ≥ min_n_baseline (40): below
  that, a few unhappy visitors on a quiet page would look like a collapse.
- the score fell by at least min_drop_points (15 points, on 0–100): smaller
  moves are within what divisions can act on and would make the email noise.
- a one-sided two-proportion score test (pooled z test on the satisfaction
  proportion p = (yes + 0.5·neutral) / n) says recent < baseline with
  p-value < alpha (0.01). The pooled standard error is the score test's, which
  behaves on small samples; the minimum n keeps the normal approximation honest.
- the question did not alert for this page in the last cooldown_days (7)
  event days: one problem, one email, not one per response. 7 days is one
  recent window, so a persisting drop is reported again at most weekly.
- the recent window ends no more than max_age_days (KOE_ALERT_MAX_AGE_DAYS, 3)
  before today: stale news is no news, and replaying a topic stays quiet.

Questions that fire together make one alert for the page. The alert id is a
uuid5 over (page, sorted questions, recent window), so replaying the same
events yields the same id and the notifier emails once.

Recovery: a question whose drop alert is still open has recovered at as_of when
the recovery window (the recent window, cut to the days *after* the alert's
own recent window, so not one answer that caused the alert counts again) has
at least min_n_recent answers and a score of at least the baseline score the
drop was measured against minus recovery_tolerance_points (5). Questions that
recover together make one recovery alert, with a uuid5 over (page, each
question's drop alert id): one recovery per drop, whatever the batching.
docs/alerts.md gives the numbers behind every default.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from aggregator.alerts.kinds import (
    DropAlert,
    OpenDrop,
    QuestionDrop,
    QuestionRecovery,
    RecoveryAlert,
    alert_id_for,
    recovery_id_for,
)
from aggregator.stats.scoring import Tally, Window, question_score, total
from koe_directory import QUESTION_KEYS


@dataclass(frozen=True)
class DropRule:
    recent_days: int = 7
    baseline_days: int = 28
    # Stricter than a single test would need: the rule looks every day, and with
    # 10 / 20 and 0.05 a steady page of 10-20 answers a week sent 8-12 false
    # emails a year (docs/alerts.md, bench/bench_drop_rule.py).
    min_n_recent: int = 20
    min_n_baseline: int = 40
    min_drop_points: float = 15.0
    alpha: float = 0.01
    cooldown_days: int = 7
    # Only judge windows ending within this many days of today (0: any age). A
    # replay that rebuilds the stats from an old topic must not email divisions
    # about drops from months ago; the service's setting defaults to 3.
    max_age_days: int = 0
    # A dropped question counts as recovered within this many points of its old
    # baseline: 5 is a third of the drop that alerts, so a page has to be
    # clearly back, not just a little better, and the recovery cannot come from
    # the very same answers as the drop (see recovery_window).
    recovery_tolerance_points: float = 5.0

    def judges(self, as_of: date, today: date) -> bool:
        return self.max_age_days == 0 or as_of >= today - timedelta(days=self.max_age_days)

    def windows(self, as_of: date) -> tuple[Window, Window]:
        recent = Window(as_of - timedelta(days=self.recent_days - 1), as_of)
        assert recent.start is not None
        baseline_end = recent.start - timedelta(days=1)
        baseline = Window(baseline_end - timedelta(days=self.baseline_days - 1), baseline_end)
        return recent, baseline

    def first_day(self, as_of: date) -> date:
        """The earliest day the rule reads for as_of."""
        start = self.windows(as_of)[1].start
        assert start is not None
        return start

    def recovery_window(self, as_of: date, alert_day: date) -> Window:
        """The recent window of as_of without the days the drop alert judged.

        Empty (start after end) until the day after the alert.
        """
        start = max(as_of - timedelta(days=self.recent_days - 1), alert_day + timedelta(days=1))
        return Window(start, as_of)


def one_sided_p_value(recent: Tally, baseline: Tally) -> float:
    """P(recent ≤ observed | no drop): pooled two-proportion z test, upper tail."""
    n_r, n_b = recent.n, baseline.n
    if n_r == 0 or n_b == 0:
        return 1.0
    pooled = (recent.satisfied + baseline.satisfied) / (n_r + n_b)
    variance = pooled * (1 - pooled) * (1 / n_r + 1 / n_b)
    if variance <= 0:
        return 1.0  # everyone equally (un)satisfied in both windows: no evidence of a drop
    z = (baseline.satisfied / n_b - recent.satisfied / n_r) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))


def evaluate(
    page_id: str,
    daily: Iterable[tuple[date, str, Tally]],
    as_of: date,
    rule: DropRule,
    last_alert_days: Mapping[str, date] | None = None,
) -> DropAlert | None:
    """One page: the alert that fires at as_of, or None.

    `daily` holds (day, question, tally) rows; days outside the two windows are
    ignored. `last_alert_days` maps a question to the as_of of its last alert.
    """
    recent_window, baseline_window = rule.windows(as_of)
    recent: dict[str, Tally] = {}
    baseline: dict[str, Tally] = {}
    for day, question, tally in daily:
        if recent_window.contains(day):
            recent[question] = recent.get(question, Tally()) + tally
        elif baseline_window.contains(day):
            baseline[question] = baseline.get(question, Tally()) + tally
    return evaluate_windows(page_id, recent, baseline, as_of, rule, last_alert_days)


def evaluate_windows(
    page_id: str,
    recent: Mapping[str, Tally],
    baseline: Mapping[str, Tally],
    as_of: date,
    rule: DropRule,
    last_alert_days: Mapping[str, date] | None = None,
) -> DropAlert | None:
    """`evaluate` over tallies already summed per question over the two windows of as_of.

    The batch handler sums in SQL, so only one row per page and question leaves
    the database instead of one per day.
    """
    recent_window, baseline_window = rule.windows(as_of)
    last_alert_days = last_alert_days or {}
    fired: list[QuestionDrop] = []
    for question in QUESTION_KEYS:
        r, b = recent.get(question, Tally()), baseline.get(question, Tally())
        if r.n < rule.min_n_recent or b.n < rule.min_n_baseline:
            continue
        last = last_alert_days.get(question)
        if last is not None and (as_of - last).days < rule.cooldown_days:
            continue
        score_r, score_b = question_score(r), question_score(b)
        assert score_r is not None and score_b is not None
        drop = score_b - score_r
        if drop < rule.min_drop_points:
            continue
        p_value = one_sided_p_value(r, b)
        if p_value >= rule.alpha:
            continue
        fired.append(QuestionDrop(question, r, b, drop, p_value))
    if not fired:
        return None
    return DropAlert(
        alert_id=alert_id_for(page_id, (q.question for q in fired), recent_window),
        page_id=page_id,
        as_of=as_of,
        recent=recent_window,
        baseline=baseline_window,
        questions=fired,
    )


def evaluate_recovery(
    page_id: str,
    daily: Iterable[tuple[date, str, Tally]],
    as_of: date,
    rule: DropRule,
    open_drops: Mapping[str, OpenDrop],
) -> RecoveryAlert | None:
    """One page: the recovery of its open drops at as_of, or None.

    `daily` holds (day, question, tally) rows covering at least the recent
    window of as_of; `open_drops` maps a question to its unrecovered drop.
    """
    rows = list(daily)
    recovered: list[QuestionRecovery] = []
    for question in QUESTION_KEYS:
        drop = open_drops.get(question)
        if drop is None:
            continue
        window = rule.recovery_window(as_of, drop.alert_day)
        recent = total(t for day, q, t in rows if q == question and window.contains(day))
        score, before = question_score(recent), question_score(drop.baseline)
        if recent.n < rule.min_n_recent or score is None or before is None:
            continue
        if score >= before - rule.recovery_tolerance_points:
            recovered.append(QuestionRecovery(drop, window, recent))
    if not recovered:
        return None
    return RecoveryAlert(
        alert_id=recovery_id_for(page_id, (r.drop for r in recovered)),
        page_id=page_id,
        as_of=as_of,
        questions=recovered,
    )
