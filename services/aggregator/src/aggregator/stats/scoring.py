"""Satisfaction scores: pure functions over answer counts, no I/O.

A question's score is (yes + 0.5·neutral) / n × 100: "neutral" is half
satisfied. A page's score is the mean of the scores of its questions that have
answers, so a question nobody answered neither helps nor hurts. Scores are
always reported beside n, and a score with n = 0 is None (shown as null).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

# z for a two-sided 95% interval
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Tally:
    yes: int = 0
    neutral: int = 0
    no: int = 0

    @property
    def n(self) -> int:
        return self.yes + self.neutral + self.no

    @property
    def satisfied(self) -> float:
        """Successes of the satisfaction proportion: a neutral answer counts half."""
        return self.yes + 0.5 * self.neutral

    @property
    def proportion(self) -> float | None:
        return self.satisfied / self.n if self.n else None

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.yes + other.yes, self.neutral + other.neutral, self.no + other.no)


def total(tallies: Iterable[Tally]) -> Tally:
    result = Tally()
    for tally in tallies:
        result = result + tally
    return result


def question_score(tally: Tally) -> float | None:
    """Score 0–100, or None when nobody answered."""
    p = tally.proportion
    return None if p is None else p * 100


def page_score(tallies: Iterable[Tally]) -> float | None:
    """Mean of the question scores that have n > 0; None when none has."""
    scores = [s for s in (question_score(t) for t in tallies) if s is not None]
    return sum(scores) / len(scores) if scores else None


def wilson_interval(tally: Tally, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of the satisfaction proportion, on the 0–100 scale.

    Sound on small samples, unlike the normal (Wald) interval, which collapses to
    zero width at 0 % or 100 % and leaves [0, 100] for tiny n.
    """
    n = tally.n
    if n == 0:
        return None
    p = tally.satisfied / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half) * 100, min(1.0, centre + half) * 100


def rounded(score: float | None) -> float | None:
    return None if score is None else round(score, 1)


@dataclass(frozen=True)
class Window:
    """Inclusive calendar days; start None means "since the beginning"."""

    start: date | None
    end: date

    def contains(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and day <= self.end


def window_ending(as_of: date, days: int | None) -> Window:
    """The `days` calendar days ending at as_of (inclusive); None for all time."""
    if days is None:
        return Window(None, as_of)
    return Window(as_of - timedelta(days=days - 1), as_of)


# The windows of the stats API: name -> length in days (None = all time).
WINDOWS: dict[str, int | None] = {"7d": 7, "28d": 28, "all": None}
