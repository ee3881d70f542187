"""Scores, page scores and Wilson intervals: pure functions."""

from __future__ import annotations

from datetime import date

import pytest

from aggregator.stats.scoring import (
    Tally,
    page_score,
    question_score,
    wilson_interval,
    window_ending,
)


def test_question_score_counts_neutral_as_half():
    assert question_score(Tally(yes=6, neutral=2, no=2)) == pytest.approx(70.0)
    assert question_score(Tally(yes=0, neutral=0, no=5)) == 0.0
    assert question_score(Tally(yes=3)) == 100.0


def test_score_without_answers_is_none():
    assert question_score(Tally()) is None
    assert page_score([Tally(), Tally()]) is None
    assert wilson_interval(Tally()) is None


def test_page_score_is_mean_of_answered_questions_only():
    # 100 and 50; the unanswered third question does not pull the mean to 50.
    assert page_score([Tally(yes=1), Tally(neutral=4), Tally()]) == pytest.approx(75.0)


def test_wilson_interval_known_values():
    # 8 of 10: Wilson 95% interval is about [49.0, 94.3] (Agresti & Coull's table).
    low, high = wilson_interval(Tally(yes=8, no=2))
    assert low == pytest.approx(49.02, abs=0.05)
    assert high == pytest.approx(94.33, abs=0.05)


def test_wilson_interval_stays_inside_and_is_not_degenerate_at_the_edges():
    low, high = wilson_interval(Tally(yes=5))
    assert 0 < low < 100 and high == pytest.approx(100.0)
    low, high = wilson_interval(Tally(no=5))
    assert low == pytest.approx(0.0) and 0 < high < 100


def test_wilson_interval_narrows_with_n():
    small = wilson_interval(Tally(yes=7, no=3))
    large = wilson_interval(Tally(yes=700, no=300))
    assert (large[1] - large[0]) < (small[1] - small[0]) / 5
    assert large[0] < 70 < large[1]


def test_windows_are_inclusive_and_end_at_as_of():
    week = window_ending(date(2026, 11, 27), 7)
    assert week.start == date(2026, 11, 21) and week.end == date(2026, 11, 27)
    assert week.contains(date(2026, 11, 21)) and not week.contains(date(2026, 11, 20))
    assert not week.contains(date(2026, 11, 28))
    forever = window_ending(date(2026, 11, 27), None)
    assert forever.contains(date(2001, 1, 1)) and not forever.contains(date(2026, 11, 28))
