"""Before and after an edit, per question: pure, no I/O.

The four weeks before the edit's day and the four weeks after it (the day itself is
left out: its answers are some of each), compared with the answers' own variance
(values 1, ½, 0: detector.answer_variance, as the drop detector does), not the binomial
one. The outcome is one of four:

- ``better`` / ``worse``: the 95 % interval of the difference lies wholly above / below
  zero, and the difference is at least MIN_POINTS (a 2-point gain on a busy page is
  real but not news to a division);
- ``unclear``: enough answers, no clear change (はっきりした変化はありません);
- ``too_few``: fewer than MIN_ANSWERS on either side (回答が少なく判断できません): with
  ten answers a score's 95 % interval is already some 50 points wide.

The page's one word (the email's subject) asks more: one look per question at 95 %
would call some unchanged page better or worse in about one edit in twelve (three
chances to be wrong; bench/bench_edits.py --page-word measures it), so a question
moves the page's word only when its change is clear at the family's level (Bonferroni:
95 % over all the questions at once).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import NormalDist

from aggregator.alerts.detector import answer_variance
from aggregator.stats.scoring import Z95, Tally, Window, question_score, wilson_interval

# Each side of the edit: four weeks, as the dashboard's 28-day window.
SIDE_DAYS = 28
MIN_ANSWERS = 10
MIN_POINTS = 5.0

OUTCOMES = ("better", "worse", "unclear", "too_few")


def before_window(day: date) -> Window:
    return Window(day - timedelta(days=SIDE_DAYS), day - timedelta(days=1))


def after_window(day: date) -> Window:
    return Window(day + timedelta(days=1), day + timedelta(days=SIDE_DAYS))


def report_day(day: date) -> date:
    """The first day after the after-window: its four weeks are complete."""
    return day + timedelta(days=SIDE_DAYS + 1)


@dataclass(frozen=True)
class Comparison:
    question: str
    before: Tally
    after: Tally
    outcome: str
    # after − before in points, with its 95 % interval; None when a side has no answer.
    change: float | None
    low: float | None
    high: float | None

    @property
    def before_score(self) -> float | None:
        return question_score(self.before)

    @property
    def after_score(self) -> float | None:
        return question_score(self.after)

    def clear_at(self, z: float) -> bool:
        """The change's interval at z (not only at 95 %) lies wholly on one side of 0."""
        if self.change is None or self.low is None or self.high is None:
            return False
        standard_error = (self.high - self.low) / (2 * Z95)
        return abs(self.change) > z * standard_error

    @property
    def before_interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.before)

    @property
    def after_interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.after)


def compare(question: str, before: Tally, after: Tally) -> Comparison:
    b, a = question_score(before), question_score(after)
    if b is None or a is None:
        return Comparison(question, before, after, "too_few", None, None, None)
    change = a - b
    half = Z95 * math.sqrt(answer_variance(before) / before.n + answer_variance(after) / after.n)
    low, high = change - half * 100, change + half * 100
    if before.n < MIN_ANSWERS or after.n < MIN_ANSWERS:
        outcome = "too_few"
    elif low > 0 and change >= MIN_POINTS:
        outcome = "better"
    elif high < 0 and -change >= MIN_POINTS:
        outcome = "worse"
    else:
        outcome = "unclear"
    return Comparison(question, before, after, outcome, change, low, high)


def compare_all(
    questions: list[str], before: Mapping[str, Tally], after: Mapping[str, Tally]
) -> list[Comparison]:
    return [compare(q, before.get(q, Tally()), after.get(q, Tally())) for q in questions]


def family_z(questions: int, level: float = 0.95) -> float:
    """The two-sided z that keeps the chance of any false "clear" among `questions`
    looks at 1 − level (Bonferroni: each look at 1 − (1 − level) / questions)."""
    return NormalDist().inv_cdf(1 - (1 - level) / (2 * max(questions, 1)))


def overall(comparisons: list[Comparison]) -> str:
    """One word for the email's subject: better or worse when the questions that moved
    clearly at the family's level all moved that way; too_few when no question had
    enough answers; else unclear."""
    z = family_z(len(comparisons))
    moved = {c.outcome for c in comparisons if c.outcome in ("better", "worse") and c.clear_at(z)}
    if len(moved) == 1:
        return moved.pop()
    if all(c.outcome == "too_few" for c in comparisons):
        return "too_few"
    return "unclear"
