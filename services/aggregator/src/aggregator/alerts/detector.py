"""The drop detector: a control chart per page and question, judged once a day. Pure, no I/O.

A page is looked at every day for years, so a test made for one look (the old drop
rule, bench/baseline_drop_rule.py) adds its false alarms up day after day. This is a
monitoring chart instead:

- **Reference**: the page's own answers over `reference_days` (84) ending `gap_days`
  (14) before the judged day. The gap keeps the recent past out, so a drop or a slow
  decline is not absorbed into what it is compared with. Its mean and the answers' own
  variance (values 1, ½, 0; not the binomial p(1-p), which overstates the spread by
  neutral/4) define "normal" for this page.
- **Chart**: an exponentially weighted mean of the answers of the recent days, each
  answer weighted by 2^(-age / half_life_days), so evidence builds up over days and old
  days fade. An EWMA rather than a CUSUM because its value is a score a clerk can read
  next to the reference ("72 against 85 in the last two weeks, weighted"); a CUSUM's
  sum is tuned to one shift size and means nothing outside the chart, and the
  simulation (bench/bench_detector.py) met the targets with the EWMA.
- **Limit**: it alarms when the chart sits at least max(min_drop_points,
  limit_sigmas × se) below the reference, where se² = σ²/n_eff + σ²/n_ref + drift², with
  n_eff the chart's effective number of answers ((Σw)²/Σw²) and drift the week-to-week
  wobble every page has (traffic mix, season) that no amount of answers averages away.
- **Minimum weight**: the chart judges nothing with fewer than `min_weight` effective
  answers: three unhappy visitors on a quiet page are not news.
- **After an alarm** the chart restarts from the next day (so not one answer that caused
  the drop counts again) and watches for recovery against the reference the page dropped
  from: recovered once its chart stays within `recovery_tolerance_points` (plus one
  standard error of its answers) of it, with the minimum weight, for `recovery_days`
  days in a row. A drop that never recovers closes quietly once the whole reference
  window lies after it (the page's new normal). Drop alarms wait `cooldown_days` after
  any alarm. So one problem sends one email, and one "fixed" email (judge_page joins the
  questions of a page).

Every comparison with a threshold allows float noise (`_EPS`): 91.67 − 76.67 is
14.999999999999986, and a drop of exactly the threshold must count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta

from aggregator.stats.scoring import Tally, Window

# Answers are halves over counts far below 10^9, so real differences are far larger;
# everything smaller is rounding.
_EPS = 1e-9

DROP = "drop"
RECOVERY = "recovery"


@dataclass(frozen=True)
class DetectorSettings:
    """Defaults chosen by bench/bench_detector.py (docs/alerts.md has the table)."""

    reference_days: int = 84
    gap_days: int = 14
    half_life_days: float = 4.0
    # Days of answers the chart reads: weights beyond are below 2^(-span/half_life).
    span_days: int = 28
    limit_sigmas: float = 2.75
    drift_points: float = 4.0
    min_drop_points: float = 10.0
    min_weight: float = 10.0
    min_reference: int = 30
    cooldown_days: int = 14
    recovery_days: int = 7
    recovery_tolerance_points: float = 5.0
    # The last days of an alert's chart whose answers must come from a crowd
    # (alerting.judged_window): one half-life, the days that moved the chart most. A
    # week let a source's three capped answers a day hide among a crowd of good days.
    evidence_days: int = 4

    def reference_window(self, day: date) -> Window:
        end = day - timedelta(days=self.gap_days)
        return Window(end - timedelta(days=self.reference_days - 1), end)

    def chart_window(self, day: date, restart: date | None) -> Window:
        """The days the chart reads on `day`: the span, and none before a restart."""
        start = day - timedelta(days=self.span_days - 1)
        if restart is not None:
            start = max(start, restart + timedelta(days=1))
        return Window(start, day)

    def evidence_start(self, day: date, chart_start: date) -> date:
        """The first day of the evidence an alert of `day` asks a crowd for (crowd.py):
        the chart's last evidence_days, none before the chart's first day."""
        return max(chart_start, day - timedelta(days=self.evidence_days - 1))

    def first_day(self, day: date) -> date:
        """The earliest day judging `day` reads (the reference's first)."""
        start = self.reference_window(day).start
        assert start is not None
        return min(start, day - timedelta(days=self.span_days - 1))


@dataclass(frozen=True)
class State:
    """What the service keeps per page and question between days."""

    last_day: date | None = None  # the last day judged
    restart: date | None = None  # the chart reads only days after this one
    quiet_until: date | None = None  # no drop alarm on or before this day
    dropped_day: date | None = None  # the open drop's alarm day
    dropped_from: Tally | None = None  # the reference the open drop is measured against
    streak: int = 0  # days in a row the open drop's chart has been back

    @property
    def open(self) -> bool:
        return self.dropped_day is not None


@dataclass(frozen=True)
class Chart:
    """The exponentially weighted mean of a window's answers."""

    window: Window
    answers: Tally  # the window's answers, unweighted (what a clerk can count)
    weight: float  # Σ w over the answers
    weight_sq: float  # Σ w² over the answers
    weighted_sum: float  # Σ w·value

    @property
    def mean(self) -> float | None:
        return self.weighted_sum / self.weight if self.weight > 0 else None

    @property
    def effective_n(self) -> float:
        """(Σw)² / Σw²: as many answers as an unweighted mean of equal variance holds."""
        return self.weight * self.weight / self.weight_sq if self.weight_sq > 0 else 0.0


def charts(
    days: Iterable[tuple[date, Tally]], window: Window, half_life_days: float, direction: str
) -> tuple[Chart, Chart]:
    """The chart over the (day, tally) rows inside `window`, aged from its last day, and
    the same chart without the one day that most supports `direction` (DROP: the day
    whose removal raises the mean most; RECOVERY: lowers it most). With fewer than two
    days of answers both are the whole chart."""
    assert window.start is not None
    decay = math.log(2) / half_life_days
    rows = []
    yes = neutral = no = 0
    weight = weight_sq = weighted_sum = 0.0
    for day, tally in days:
        n = tally.n
        if n and window.start <= day <= window.end:
            w = math.exp(-decay * (window.end - day).days)
            satisfied = tally.yes + 0.5 * tally.neutral
            rows.append((tally, w, n, satisfied))
            yes, neutral, no = yes + tally.yes, neutral + tally.neutral, no + tally.no
            weight += w * n
            weight_sq += w * w * n
            weighted_sum += w * satisfied
    full = Chart(window, Tally(yes, neutral, no), weight, weight_sq, weighted_sum)
    if len(rows) < 2:
        return full, full
    sign = 1.0 if direction == DROP else -1.0
    tally, w, n, satisfied = max(
        rows, key=lambda r: sign * (weighted_sum - r[1] * r[3]) / (weight - r[1] * r[2])
    )
    decided = Chart(
        window,
        Tally(yes - tally.yes, neutral - tally.neutral, no - tally.no),
        weight - w * n,
        weight_sq - w * w * n,
        weighted_sum - w * satisfied,
    )
    return full, decided


def without_lowest(
    days: Iterable[tuple[date, Tally]], removed: Mapping[date, int]
) -> list[tuple[date, Tally]]:
    """The (day, tally) rows with removed[day] answers taken out of each day, the lowest
    first ("no", then "neutral", then "yes"): whatever those answers were, the chart
    without them is at least this high. So a drop that still alarms on these rows alarms
    without them (crowd.py asks this of an alert's largest source, whose answer values
    koe never keeps: only how many it sent)."""
    rows = []
    for day, tally in days:
        left = removed.get(day, 0)
        no = min(tally.no, left)
        neutral = min(tally.neutral, left - no)
        yes = min(tally.yes, left - no - neutral)
        rows.append((day, Tally(tally.yes - yes, tally.neutral - neutral, tally.no - no)))
    return rows


def answer_variance(tally: Tally) -> float:
    """Variance of the answer values (1, ½, 0), as if one more yes and one more no had
    come: a page everyone liked so far still has some spread, so one bad answer
    is not a collapse."""
    n = tally.n + 2
    mean = (tally.satisfied + 1) / n
    mean_sq = (tally.yes + 0.25 * tally.neutral + 1) / n
    return max(0.0, mean_sq - mean * mean)


def _score(mean: float | None) -> float | None:
    return None if mean is None else mean * 100


@dataclass(frozen=True)
class Judgement:
    """One page-question-day: the numbers it was judged on, and what fired.

    `chart` is every answer of the chart's window; `decided` the same without its one
    most decisive day, which is what is compared with the limit: no single day (a
    broken page for an afternoon, one busy source) sends an email on its own.
    """

    day: date
    reference: Window
    reference_answers: Tally
    chart: Chart
    decided: Chart
    # A drop: how far below the reference the chart must sit; a recovery: how close it
    # must come. None: not judged (too few answers).
    limit_points: float | None
    fired: str | None = None  # DROP, RECOVERY or None

    @property
    def reference_score(self) -> float | None:
        return _score(self.reference_answers.proportion)

    @property
    def chart_score(self) -> float | None:
        return _score(self.chart.mean)

    @property
    def decided_score(self) -> float | None:
        return _score(self.decided.mean)

    @property
    def drop_points(self) -> float | None:
        """How far the decided chart sits below the reference."""
        if self.reference_score is None or self.decided_score is None:
            return None
        return self.reference_score - self.decided_score


def sampling_points(reference: Tally, current: Chart) -> float:
    """The standard error (points) of the chart minus the reference from their answers
    alone: what a page's own answers can tell apart."""
    variance = answer_variance(reference)
    return math.sqrt(variance / current.effective_n + variance / reference.n) * 100


def limit_points(reference: Tally, current: Chart, settings: DetectorSettings) -> float:
    """How far (points) below the reference the chart must be to alarm: limit_sigmas
    standard errors of the answers and the drift together, and never less than
    min_drop_points."""
    se = math.hypot(sampling_points(reference, current), settings.drift_points)
    return max(settings.min_drop_points, settings.limit_sigmas * se)


def recovery_points(reference: Tally, current: Chart, settings: DetectorSettings) -> float:
    """How close (points) to the old reference the chart must come to count as back:
    the tolerance, give or take one standard error of its answers (on a quiet page a
    chart of 20 answers cannot tell 80 from 75)."""
    return settings.recovery_tolerance_points + sampling_points(reference, current)


def judge(
    state: State,
    day: date,
    reference: Tally,
    days: Iterable[tuple[date, Tally]],
    settings: DetectorSettings,
) -> tuple[State, Judgement]:
    """Judge `day` (a completed city day after state.last_day).

    `reference` is the sum of the answers in settings.reference_window(day); `days`
    holds the (day, tally) rows of at least settings.chart_window(day, state.restart).
    """
    assert state.last_day is None or day > state.last_day, "days are judged once, in order"
    state = replace(state, last_day=day)
    ref_window = settings.reference_window(day)
    if state.open:
        assert state.dropped_day is not None
        if ref_window.start is not None and ref_window.start > state.dropped_day:
            # The reference lies wholly after the drop: that level is the page's normal now.
            state = replace(state, dropped_day=None, dropped_from=None, streak=0)
        else:
            return _watch_recovery(state, day, days, settings)
    window = settings.chart_window(day, state.restart)
    full, decided = charts(days, window, settings.half_life_days, DROP)
    judged = Judgement(day, ref_window, reference, full, decided, None)
    if reference.n < settings.min_reference or decided.effective_n < settings.min_weight - _EPS:
        return state, judged
    limit = limit_points(reference, decided, settings)
    judged = replace(judged, limit_points=limit)
    quiet = state.quiet_until is not None and day <= state.quiet_until
    drop = judged.drop_points
    assert drop is not None
    if quiet or drop < limit - _EPS:
        return state, judged
    state = State(
        last_day=day,
        restart=day,
        quiet_until=day + timedelta(days=settings.cooldown_days),
        dropped_day=day,
        dropped_from=reference,
    )
    return state, replace(judged, fired=DROP)


def _watch_recovery(
    state: State, day: date, days: Iterable[tuple[date, Tally]], settings: DetectorSettings
) -> tuple[State, Judgement]:
    """An open drop: is the chart back near the reference the page dropped from?"""
    assert state.dropped_day is not None and state.dropped_from is not None
    window = settings.chart_window(day, state.restart)
    full, decided = charts(days, window, settings.half_life_days, RECOVERY)
    # The reference shown is the one the page dropped from: that is what "back" means.
    dropped_window = settings.reference_window(state.dropped_day)
    judged = Judgement(day, dropped_window, state.dropped_from, full, decided, None)
    if decided.effective_n < settings.min_weight - _EPS:
        return replace(state, streak=0), judged
    back = recovery_points(state.dropped_from, decided, settings)
    judged = replace(judged, limit_points=back)
    drop = judged.drop_points
    assert drop is not None
    if drop > back + _EPS:
        return replace(state, streak=0), judged
    if state.streak + 1 < settings.recovery_days:
        return replace(state, streak=state.streak + 1), judged
    state = State(
        last_day=day,
        restart=day,
        quiet_until=day + timedelta(days=settings.cooldown_days),
    )
    return state, replace(judged, fired=RECOVERY)


@dataclass(frozen=True)
class PageJudgement:
    """A page's day: each question's judgement, and the email it sends, if any.

    Questions of a page usually fall together, a day or two apart, so they are one
    problem: a question's drop alarm sends no email of its own while another question
    of the page has a drop open that alarmed within the cooldown; and the page says
    "recovered" once, when its last open drop recovers.
    """

    day: date
    questions: dict[str, Judgement]
    email: str | None = None  # DROP, RECOVERY or None
    emailed: tuple[str, ...] = ()  # the questions the email is about

    @property
    def fired(self) -> dict[str, Judgement]:
        return {q: j for q, j in self.questions.items() if j.fired}


def judge_page(
    states: Mapping[str, State],
    day: date,
    inputs: Mapping[str, tuple[Tally, Iterable[tuple[date, Tally]]]],
    settings: DetectorSettings,
) -> tuple[dict[str, State], PageJudgement]:
    """Judge `day` for every question in `inputs` ((reference, daily rows), as `judge`
    takes them); `states` holds the questions' states so far (missing: new)."""
    before = {q: states.get(q, State()) for q in inputs}
    after: dict[str, State] = {}
    judged: dict[str, Judgement] = {}
    for question, (reference, days) in inputs.items():
        after[question], judged[question] = judge(before[question], day, reference, days, settings)
    drops = tuple(q for q, j in judged.items() if j.fired == DROP)
    recoveries = tuple(q for q, j in judged.items() if j.fired == RECOVERY)
    page = PageJudgement(day, judged)
    recent = day - timedelta(days=settings.cooldown_days)
    if drops and not any(
        s.dropped_day is not None and s.dropped_day > recent
        for q, s in after.items()
        if q not in drops
    ):
        return after, replace(page, email=DROP, emailed=drops)
    if recoveries and not any(s.open for s in after.values()):
        return after, replace(page, email=RECOVERY, emailed=recoveries)
    return after, page


def p_value(judged: Judgement, settings: DetectorSettings) -> float:
    """One-sided normal p-value of the decided chart's drop, with the same standard
    error as the limit (the answers' and the drift's): what an email shows as p."""
    drop = judged.drop_points
    if drop is None or judged.reference_answers.n == 0:
        return 1.0
    se = math.hypot(
        sampling_points(judged.reference_answers, judged.decided), settings.drift_points
    )
    return 0.5 * math.erfc(drop / se / math.sqrt(2)) if se > 0 else 1.0
