"""Drop rule v1 over counts: when it fires, when it must not, and its alert ids."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from aggregator.drop_rule import DropRule, alert_id_for, evaluate, one_sided_p_value
from aggregator.scoring import Tally
from koe_directory import QUESTION_KEYS

AS_OF = date(2026, 11, 27)
# The logic on small histories: the stricter shipped minimums are judged in docs/alerts.md.
RULE = DropRule(min_n_recent=10, min_n_baseline=20, alpha=0.05)
PAGE = "u-5f1c9a2d7e3b4c60"


def history(baseline: dict[str, Tally], recent: dict[str, Tally], as_of: date = AS_OF):
    """Daily rows: `baseline` on each of the 28 baseline days, `recent` on each of the 7 recent."""
    rows = []
    for offset in range(35):
        day = as_of - timedelta(days=offset)
        per_day = recent if offset < 7 else baseline
        rows.extend((day, q, tally) for q, tally in per_day.items())
    return rows


GOOD = Tally(yes=2, neutral=1, no=0)  # 83.3
BAD = Tally(yes=0, neutral=1, no=2)  # 16.7


def test_windows_default_to_7_recent_and_28_baseline_days_before_them():
    recent, baseline = RULE.windows(AS_OF)
    assert (recent.start, recent.end) == (date(2026, 11, 21), date(2026, 11, 27))
    assert (baseline.start, baseline.end) == (date(2026, 10, 24), date(2026, 11, 20))


def test_steady_page_does_not_fire():
    steady = {q: GOOD for q in QUESTION_KEYS}
    assert evaluate(PAGE, history(steady, steady), AS_OF, RULE) is None


def test_small_page_with_a_few_bad_answers_does_not_fire():
    # A quiet page: 28 good answers before, then 3 unhappy visitors this week.
    rows = [(AS_OF - timedelta(days=10 + i), "clarity", Tally(yes=1)) for i in range(28)]
    rows += [(AS_OF - timedelta(days=i), "clarity", Tally(no=1)) for i in range(3)]
    assert evaluate(PAGE, rows, AS_OF, RULE) is None


def test_small_baseline_does_not_fire_even_with_a_bad_week():
    rows = [(AS_OF - timedelta(days=10 + i), "clarity", Tally(yes=1)) for i in range(19)]
    rows += [(AS_OF - timedelta(days=i % 7), "clarity", Tally(no=1)) for i in range(30)]
    assert evaluate(PAGE, rows, AS_OF, RULE) is None


def test_real_drop_makes_one_alert_with_the_questions_that_dropped():
    baseline = {q: GOOD for q in QUESTION_KEYS}
    recent = {"findability": GOOD, "clarity": BAD, "usefulness": BAD}
    alert = evaluate(PAGE, history(baseline, recent), AS_OF, RULE)
    assert alert is not None
    assert [q.question for q in alert.questions] == ["clarity", "usefulness"]
    clarity = alert.questions[0]
    assert clarity.recent == Tally(0, 7, 14) and clarity.baseline == Tally(56, 28, 0)
    assert clarity.drop_points == pytest.approx(66.67, abs=0.01)
    assert clarity.p_value < 1e-6
    assert (alert.recent.start, alert.recent.end) == (date(2026, 11, 21), AS_OF)
    assert (alert.baseline.start, alert.baseline.end) == (date(2026, 10, 24), date(2026, 11, 20))


def test_days_outside_both_windows_are_ignored():
    baseline = {"clarity": GOOD}
    rows = history(baseline, {"clarity": BAD})
    # A terrible year long ago and answers after as_of change nothing.
    rows += [(AS_OF - timedelta(days=200), "clarity", Tally(no=500))]
    rows += [(AS_OF + timedelta(days=1), "clarity", Tally(yes=500))]
    alert = evaluate(PAGE, rows, AS_OF, RULE)
    assert alert is not None and alert.questions[0].baseline == Tally(56, 28, 0)


def test_drop_below_min_points_does_not_fire_even_when_significant():
    # 1,000s of answers make a 10-point drop highly significant; the rule still waits for 15.
    baseline = {"clarity": Tally(yes=80, no=20)}  # 80
    recent = {"clarity": Tally(yes=70, no=30)}  # 70
    rows = history(baseline, recent)
    assert one_sided_p_value(Tally(490, 0, 210), Tally(2240, 0, 560)) < 0.001
    assert evaluate(PAGE, rows, AS_OF, RULE) is None
    assert evaluate(PAGE, rows, AS_OF, replace(RULE, min_drop_points=5)) is not None


def test_large_but_insignificant_drop_does_not_fire():
    # 10 recent answers at 60 vs 20 baseline at 80: 20 points, but p ≈ 0.12 (z ≈ 1.17).
    rows = [(AS_OF - timedelta(days=8), "clarity", Tally(yes=16, no=4))]
    rows += [(AS_OF, "clarity", Tally(yes=6, no=4))]
    assert one_sided_p_value(Tally(6, 0, 4), Tally(16, 0, 4)) == pytest.approx(0.1215, abs=0.001)
    assert evaluate(PAGE, rows, AS_OF, RULE) is None
    assert evaluate(PAGE, rows, AS_OF, replace(RULE, alpha=0.2)) is not None


def test_p_value_is_one_sided():
    assert one_sided_p_value(Tally(yes=5, no=5), Tally(yes=10, no=10)) == pytest.approx(0.5)
    # A rise is never evidence of a drop.
    assert one_sided_p_value(Tally(yes=10), Tally(yes=2, no=18)) > 0.99
    assert one_sided_p_value(Tally(yes=10), Tally(yes=20)) == 1.0


def test_cooldown_suppresses_a_second_alert_per_question():
    baseline = {q: GOOD for q in QUESTION_KEYS}
    recent = {"findability": GOOD, "clarity": BAD, "usefulness": BAD}
    rows = history(baseline, recent)
    first = evaluate(PAGE, rows, AS_OF, RULE)
    assert first is not None
    # Next day, the drop persists: both questions alerted yesterday, so nothing.
    next_day = AS_OF + timedelta(days=1)
    rows_next = history(baseline, recent, next_day)
    last = {q.question: AS_OF for q in first.questions}
    assert evaluate(PAGE, rows_next, next_day, RULE, last) is None
    # Only clarity in cooldown: usefulness alone fires, with an id of its own.
    partial = evaluate(PAGE, rows_next, next_day, RULE, {"clarity": AS_OF})
    assert partial is not None and [q.question for q in partial.questions] == ["usefulness"]
    assert partial.alert_id != first.alert_id
    # Seven event days later the cooldown is over.
    later = AS_OF + timedelta(days=7)
    assert evaluate(PAGE, history(baseline, recent, later), later, RULE, last) is not None
    assert (
        evaluate(
            PAGE,
            history(baseline, recent, later - timedelta(days=1)),
            later - timedelta(days=1),
            RULE,
            last,
        )
        is None
    )


def test_alert_id_is_deterministic():
    baseline = {q: GOOD for q in QUESTION_KEYS}
    recent = {"findability": GOOD, "clarity": BAD, "usefulness": BAD}
    one = evaluate(PAGE, history(baseline, recent), AS_OF, RULE)
    two = evaluate(PAGE, list(reversed(history(baseline, recent))), AS_OF, RULE)
    assert one is not None and two is not None and one.alert_id == two.alert_id
    recent_window = one.recent
    assert one.alert_id == alert_id_for(PAGE, ["usefulness", "clarity"], recent_window)
    assert one.alert_id != alert_id_for("other-page", ["clarity", "usefulness"], recent_window)
    shifted = evaluate(
        PAGE, history(baseline, recent, AS_OF + timedelta(days=1)), AS_OF + timedelta(days=1), RULE
    )
    assert shifted is not None and shifted.alert_id != one.alert_id
