"""Recovery over counts: back within the tolerance of the baseline it dropped from,
judged only on answers given after the drop alert's own days."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from aggregator.drop_rule import DropRule, OpenDrop, evaluate_recovery, recovery_id_for
from aggregator.scoring import Tally

# The logic on small histories: the stricter shipped minimums are judged in docs/alerts.md.
RULE = DropRule(min_n_recent=10, min_n_baseline=20, alpha=0.05)
PAGE = "u-5f1c9a2d7e3b4c60"
ALERT_DAY = date(2026, 11, 27)
DROP = OpenDrop(
    question="clarity",
    alert_id="3c1e7a4e-8f0e-5b7a-9d2c-6e4f1a0b9c33",
    alert_day=ALERT_DAY,
    baseline=Tally(yes=60, neutral=15, no=5),  # 84.4
    dropped=Tally(yes=4, neutral=3, no=13),  # 27.5
)


def days(first: date, count: int, tally: Tally, question: str = "clarity"):
    return [(first + timedelta(days=i), question, tally) for i in range(count)]


def test_recovery_window_starts_after_the_alert_and_is_at_most_a_week():
    assert RULE.recovery_window(ALERT_DAY, ALERT_DAY).contains(ALERT_DAY) is False
    window = RULE.recovery_window(ALERT_DAY + timedelta(days=3), ALERT_DAY)
    assert (window.start, window.end) == (date(2026, 11, 28), date(2026, 11, 30))
    later = RULE.recovery_window(ALERT_DAY + timedelta(days=20), ALERT_DAY)
    assert (later.start, later.end) == (date(2026, 12, 11), date(2026, 12, 17))


def test_back_to_the_baseline_recovers_once_per_drop():
    # 5 good answers a day after the alert: 80.0 ≥ 84.4 - 5 on 10 answers by day 2.
    rows = days(ALERT_DAY + timedelta(days=1), 2, Tally(yes=4, no=1))
    as_of = ALERT_DAY + timedelta(days=2)
    alert = evaluate_recovery(PAGE, rows, as_of, RULE, {"clarity": DROP})
    assert alert is not None
    [q] = alert.questions
    assert (q.drop, q.recent) == (DROP, Tally(yes=8, no=2))
    assert (q.window.start, q.window.end) == (ALERT_DAY + timedelta(days=1), as_of)
    assert alert.alert_id == recovery_id_for(PAGE, [DROP])
    # Another batch, another day: still the same id, so the notifier mails it once.
    again = evaluate_recovery(PAGE, rows, as_of + timedelta(days=1), RULE, {"clarity": DROP})
    assert again is not None and again.alert_id == alert.alert_id


def test_too_few_answers_since_the_alert_is_not_a_recovery():
    rows = days(ALERT_DAY + timedelta(days=1), 1, Tally(yes=9))
    assert (
        evaluate_recovery(PAGE, rows, ALERT_DAY + timedelta(days=1), RULE, {"clarity": DROP})
        is None
    )


def test_better_but_not_back_is_not_a_recovery():
    # 75.0 is far above 27.5 but more than 5 points under 84.4.
    rows = days(ALERT_DAY + timedelta(days=1), 7, Tally(yes=3, no=1))
    as_of = ALERT_DAY + timedelta(days=7)
    assert evaluate_recovery(PAGE, rows, as_of, RULE, {"clarity": DROP}) is None
    assert (
        evaluate_recovery(
            PAGE, rows, as_of, replace(RULE, recovery_tolerance_points=10), {"clarity": DROP}
        )
        is not None
    )


def test_the_answers_that_caused_the_drop_never_count_for_the_recovery():
    # Great answers on the alert day itself (its recent window) count for nothing.
    rows = days(ALERT_DAY - timedelta(days=6), 7, Tally(yes=20))
    assert evaluate_recovery(PAGE, rows, ALERT_DAY, RULE, {"clarity": DROP}) is None
    assert (
        evaluate_recovery(PAGE, rows, ALERT_DAY + timedelta(days=1), RULE, {"clarity": DROP})
        is None
    )


def test_questions_recover_on_their_own_and_only_open_drops_count():
    usefulness = OpenDrop("usefulness", DROP.alert_id, ALERT_DAY, DROP.baseline, DROP.dropped)
    good = Tally(yes=5)
    rows = (
        days(ALERT_DAY + timedelta(days=1), 2, good)
        + days(ALERT_DAY + timedelta(days=1), 2, Tally(no=5), "usefulness")
        + days(ALERT_DAY + timedelta(days=1), 2, good, "findability")
    )
    alert = evaluate_recovery(
        PAGE, rows, ALERT_DAY + timedelta(days=2), RULE, {"clarity": DROP, "usefulness": usefulness}
    )
    assert alert is not None
    assert [q.drop.question for q in alert.questions] == ["clarity"]
    assert alert.alert_id != recovery_id_for(PAGE, [DROP, usefulness])
