"""The overview's funnel limits: p̄ ± z·s/√n, s the spread of one answer (1, ½ or 0)."""

from __future__ import annotations

import math

import pytest

from aggregator.dashboard.charts import funnel_chart, sparkline
from aggregator.stats.funnel import Z95, Z998, reference, status


def test_without_neutral_answers_the_limits_are_the_binomial_funnel():
    ref = reference([(30, 0, 10), (50, 0, 10)])
    assert ref.mean == pytest.approx(80 / 100)
    assert ref.sd == pytest.approx(math.sqrt(0.8 * 0.2))
    low, high = ref.limits(25, Z95)
    half = Z95 * math.sqrt(0.8 * 0.2 / 25) * 100
    assert (low, high) == pytest.approx((80 - half, 80 + half))


def test_neutral_answers_narrow_the_limits_as_they_narrow_the_spread():
    # All neutral: every answer is ½, no spread at all.
    ref = reference([(0, 10, 0)])
    assert (ref.mean, ref.sd) == (0.5, 0.0)
    # Half yes, half neutral: mean ¾, variance (½·1 + ½·¼) − (¾)² = 1/16.
    ref = reference([(10, 10, 0)])
    assert ref.sd == pytest.approx(0.25)
    assert reference([]) is None and reference([(0, 0, 0)]) is None


def test_a_small_page_with_a_low_score_is_within_chance_a_large_one_is_not():
    ref = reference([(400, 100, 100), (20, 0, 5)])
    assert status(ref, 5, 50.0) == "within"  # 25 points below the mean, but n = 5
    assert status(ref, 400, 60.0) == "low3"
    low95, _ = ref.limits(100, Z95)
    low998, _ = ref.limits(100, Z998)
    assert status(ref, 100, (low95 + low998) / 2) == "low2"
    assert status(ref, 100, 100.0) in ("high2", "high3")
    assert ref.limits(1, Z998) == (0.0, 100.0)  # clipped to the scale


def test_chart_geometry_stays_inside_the_plot():
    ref = reference([(40, 10, 10)])
    chart = funnel_chart(ref, [(1, 0.0, "a"), (60, 75.0, "b")])
    for dot in chart.dots:
        assert chart.left <= dot.x <= chart.right and chart.top <= dot.y <= chart.bottom
    line = sparkline([None, 50.0, 60.0, None, 70.0])
    assert line.lines == ["25.5,25.0 48.0,14.0"]  # the gap breaks the line; a lone dot stays a dot
    assert len(line.dots) == 3
