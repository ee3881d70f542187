"""The crowd rule (crowd.py): each test, its exact edges, an empty window, sourceless
responses."""

from __future__ import annotations

from datetime import date, timedelta

from aggregator.alerts.crowd import (
    BURST,
    FEW_SOURCES,
    ONE_SOURCE,
    ONE_SOURCE_DECIDES,
    CrowdRule,
    SourceDay,
    evidence_start,
    judge,
)

RULE = CrowdRule(min_sources=5, max_source_share=0.34, max_day_share=0.6)
START = date(2026, 11, 1)
END = START + timedelta(days=6)


def day(i: int) -> date:
    return START + timedelta(days=i)


def spread(sources: int, per_source: int = 1, days: int = 7) -> list[SourceDay]:
    """`sources` sources, each `per_source` responses, on days round-robin."""
    return [SourceDay(day(i % days), f"s{i}", per_source) for i in range(sources)]


def test_many_sources_over_the_week_are_emailed():
    verdict = judge(RULE, START, END, spread(21))
    assert verdict.email and verdict.held is None
    assert verdict.evidence.n == 21 and verdict.evidence.sources == 21
    assert verdict.evidence.largest_source_share == 1 / 21


def test_one_fewer_source_than_the_minimum_is_held():
    assert judge(RULE, START, END, spread(4, per_source=5)).held == FEW_SOURCES
    # Exactly the minimum passes that test (and five even sources hold 0.2 each).
    assert judge(RULE, START, END, spread(5, per_source=4)).email


def test_an_empty_window_is_held_for_too_few_sources():
    verdict = judge(RULE, START, END, [])
    assert verdict.held == FEW_SOURCES
    assert verdict.evidence.n == 0 and verdict.evidence.sources == 0
    assert verdict.evidence.largest_source_share is None
    assert verdict.evidence.busiest_day is None
    assert [d.n for d in verdict.evidence.days] == [0] * 7


def test_one_source_above_the_share_is_held_and_at_the_share_is_not():
    # 34 of 100 from one source: exactly the share, passes.
    at = spread(66) + [SourceDay(day(3), "big", 34)]
    assert judge(RULE, START, END, at).email
    # 35 of 101: above it.
    above = spread(66) + [SourceDay(day(3), "big", 35)]
    verdict = judge(RULE, START, END, above)
    assert verdict.held == ONE_SOURCE
    assert verdict.evidence.largest_source_share == 35 / 101


def test_a_source_seen_on_several_days_is_one_source():
    """A source's hash changes daily, so one string on several days is not koe's doing:
    injected events. Its days add up to one source's share."""
    one = [SourceDay(day(i), "same", 3) for i in range(7)]
    verdict = judge(RULE, START, END, one)
    assert verdict.held == FEW_SOURCES
    assert verdict.evidence.sources == 1 and verdict.evidence.largest_source_share == 1.0
    assert [d.sources for d in verdict.evidence.days] == [1] * 7


def test_a_burst_day_above_the_share_is_held_and_at_the_share_is_not():
    # 60 of 100 on one day (60 sources), 40 spread over the other days.
    at = [SourceDay(day(2), f"b{i}", 1) for i in range(60)] + [
        SourceDay(day(i % 7 if i % 7 != 2 else 0), f"r{i}", 1) for i in range(40)
    ]
    assert judge(RULE, START, END, at).email
    above = [*at, SourceDay(day(2), "b60", 1)]  # 61 of 101
    verdict = judge(RULE, START, END, above)
    assert verdict.held == BURST
    assert verdict.evidence.busiest_day == day(2)
    assert verdict.evidence.busiest_day_share == 61 / 101


def test_a_window_of_one_day_is_not_a_burst():
    """A recovery judged the day after its drop has a one-day window: all of it is one
    day by construction, so only the source tests apply."""
    rows = [SourceDay(START, f"s{i}", 1) for i in range(20)]
    assert judge(RULE, START, START, rows).email
    assert judge(RULE, START, START, rows[:4]).held == FEW_SOURCES


def test_the_reasons_come_in_order_few_sources_then_one_source_then_burst():
    # Four sources, one with most, all on one day: few sources first.
    rows = [SourceDay(day(0), "big", 30), *(SourceDay(day(0), f"s{i}", 1) for i in range(3))]
    assert judge(RULE, START, END, rows).held == FEW_SOURCES
    rows.append(SourceDay(day(0), "s3", 1))
    assert judge(RULE, START, END, rows).held == ONE_SOURCE


def test_responses_without_a_source_are_each_their_own_source():
    """Counting never caps them (each is its own source there too)."""
    verdict = judge(RULE, START, END, [SourceDay(day(i), None, 3) for i in range(7)])
    assert verdict.email
    assert verdict.evidence.sources == 21 and verdict.evidence.largest_source_share == 1 / 21
    assert verdict.evidence.days[0].sources == 3
    # Mixed with one source that holds most: that source decides the share.
    mixed = [SourceDay(day(0), None, 10), SourceDay(day(1), "big", 20)]
    assert judge(RULE, START, END, mixed).held == ONE_SOURCE


def test_rows_outside_the_window_and_empty_rows_are_ignored():
    rows = [
        *spread(21),
        SourceDay(START - timedelta(days=1), "before", 50),
        SourceDay(END + timedelta(days=1), "after", 50),
        SourceDay(day(1), "nothing", 0),
    ]
    verdict = judge(RULE, START, END, rows)
    assert verdict.email and verdict.evidence.n == 21 and verdict.evidence.sources == 21


def test_the_evidence_keeps_counts_and_never_a_source():
    rows = [SourceDay(day(0), "secret-hash", 3), *spread(4)]
    evidence = judge(RULE, START, END, rows).evidence.as_json(RULE)
    assert "secret-hash" not in repr(evidence)
    assert evidence["window"] == {"start": "2026-11-01", "end": "2026-11-07"}
    assert evidence["n"] == 7 and evidence["sources"] == 5
    assert evidence["days"][0] == {"day": "2026-11-01", "n": 4, "sources": 2}
    assert evidence["rule"] == {"min_sources": 5, "max_source_share": 0.34, "max_day_share": 0.6}


def test_a_drop_that_falls_without_its_largest_source_is_held():
    """The largest source (a fifth or more, two answers or more) is asked about, with its
    days; the drop is held when it does not stand without them."""
    counts = spread(8) + [SourceDay(day(5), "big", 2), SourceDay(day(6), "big", 1)]
    asked = []

    def falls(removed):
        asked.append(dict(removed))
        return False

    verdict = judge(RULE, START, END, counts, falls)
    assert verdict.held == ONE_SOURCE_DECIDES
    assert asked == [{day(5): 2, day(6): 1}]
    assert judge(RULE, START, END, counts, lambda removed: True).email
    assert judge(RULE, START, END, counts).email  # a recovery: not asked


def test_a_small_or_single_answer_source_is_not_asked():
    def never(removed):
        raise AssertionError("not asked")

    # 2 of 11: under a fifth.
    assert judge(RULE, START, END, spread(9) + [SourceDay(day(1), "big", 2)], never).email
    # Exactly a fifth (3 of 15) is asked.
    at = spread(12) + [SourceDay(day(1), "big", 3)]
    assert judge(RULE, START, END, at, lambda removed: False).held == ONE_SOURCE_DECIDES
    # Five single answers: a fifth each, but one answer is one person's.
    assert judge(RULE, START, END, spread(5), never).email


def test_the_other_reasons_come_before_asking_about_the_largest_source():
    def never(removed):
        raise AssertionError("not asked")

    above = spread(66) + [SourceDay(day(3), "big", 35)]
    assert judge(RULE, START, END, above, never).held == ONE_SOURCE


def test_a_quiet_page_s_evidence_reaches_back_only_as_far_as_five_sources_need():
    """The last four days hold three sources; the evidence starts at the latest earlier
    day from which on five answered, never before the chart's first day."""
    last = [SourceDay(day(4), "a", 1), SourceDay(day(5), "b", 2), SourceDay(day(6), "c", 1)]
    earlier = [SourceDay(day(1), "d", 1), SourceDay(day(1), None, 1), SourceDay(day(0), "e", 1)]
    counts = earlier + last
    assert evidence_start(RULE, counts, START, day(3), END) == day(1)
    assert evidence_start(RULE, counts, day(2), day(3), END) == day(2)  # the chart's first
    # A source seen again earlier is still one source: it does not count twice.
    again = [SourceDay(day(2), "a", 1), *counts]
    assert evidence_start(RULE, again, START, day(3), END) == day(1)
    # Five in the last days already: they are the evidence.
    busy = spread(5, days=1)
    assert evidence_start(
        RULE, [SourceDay(day(6), s.source, 1) for s in busy], START, day(3), END
    ) == day(3)


def test_a_busy_day_is_a_burst_only_beyond_what_the_page_s_usual_day_brings():
    """4 of 6 on one day is over the share; with a usual day of 1.5 answers, a burst needs
    more than 2 × 1.5 + 3 = 6 on that day."""
    weekday = [SourceDay(day(1), f"m{i}", 1) for i in range(4)]
    weekday += [SourceDay(day(2), "t", 1), SourceDay(day(3), "w", 1)]
    assert judge(RULE, START, END, weekday).held == BURST  # no usual day given: share alone
    assert judge(RULE, START, END, weekday, usual_per_day=1.5).email
    # Seven on one day among eight: beyond 6.
    flood = [SourceDay(day(1), f"f{i}", 1) for i in range(7)] + [SourceDay(day(2), "x", 1)]
    verdict = judge(RULE, START, END, flood, usual_per_day=1.5)
    assert verdict.held == BURST and verdict.evidence.as_json(RULE)["usual_per_day"] == 1.5
    # Exactly 2 × usual + 3 is not beyond it.
    edge = [SourceDay(day(1), f"e{i}", 1) for i in range(6)] + [SourceDay(day(2), "y", 1)]
    assert judge(RULE, START, END, edge, usual_per_day=1.5).email
