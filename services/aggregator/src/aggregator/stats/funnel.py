"""Funnel plot limits for the overview: which pages differ from the mean by more than
their sample size explains. Pure, no I/O.

A question's score is the mean of its answers valued yes = 1, neutral = ½, no = 0
(×100). Over the pages on the plot, with Y, U, N the summed yes, neutral and
answer counts:

    p̄  = (Y + ½·U) / N                      the overall mean (the pooled score)
    s² = (Y + ¼·U) / N − p̄²                 the variance of one answer
    limits(n) = p̄ ± z·s/√n, clipped to [0, 1], × 100

with z = 1.960 for 95% and z = 3.090 for 99.8% (two-sided), as in
Spiegelhalter's funnel plots (Statistics in Medicine 2005). With no neutral
answers s² = p̄(1 − p̄), the binomial funnel; neutral answers lower the variance,
which the binomial formula would overstate. The mean and the limits come only
from the pages the viewer may see, so they reveal nothing about other divisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054
Z998 = 3.090232306167813


@dataclass(frozen=True)
class Reference:
    mean: float  # p̄ on 0–1
    sd: float  # s, one answer's standard deviation

    def limits(self, n: int, z: float) -> tuple[float, float]:
        """(low, high) on the 0–100 scale for a page with n answers."""
        half = z * self.sd / math.sqrt(n)
        return max(0.0, self.mean - half) * 100, min(1.0, self.mean + half) * 100


def reference(tallies: list[tuple[int, int, int]]) -> Reference | None:
    """From (yes, neutral, no) per page; None when nobody answered."""
    yes = sum(t[0] for t in tallies)
    neutral = sum(t[1] for t in tallies)
    n = sum(sum(t) for t in tallies)
    if n == 0:
        return None
    mean = (yes + 0.5 * neutral) / n
    variance = max(0.0, (yes + 0.25 * neutral) / n - mean * mean)
    return Reference(mean, math.sqrt(variance))


STATUSES = ("low3", "low2", "within", "high2", "high3")


def status(ref: Reference, n: int, score: float) -> str:
    """Where a page's score (0–100) lies against the limits for its n."""
    low3, high3 = ref.limits(n, Z998)
    low2, high2 = ref.limits(n, Z95)
    if score < low3:
        return "low3"
    if score > high3:
        return "high3"
    if score < low2:
        return "low2"
    if score > high2:
        return "high2"
    return "within"
