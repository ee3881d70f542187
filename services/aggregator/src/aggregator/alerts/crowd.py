"""Alerts need a crowd (DESIGN.md, "Trustworthy numbers"). Pure, no I/O.

Before a drop or recovery alert is emailed, the counted responses of its evidence (the
last days of the chart it was judged on, reaching further back on a quiet page until
five sources answered: evidence_start) must come from a crowd, not from one sender or
one moment:

- at least `min_sources` distinct sources (KOE_ALERT_MIN_SOURCES, 5);
- no source holds more than `max_source_share` of them (KOE_ALERT_MAX_SOURCE_SHARE);
- no day holds more than `max_day_share` of them (KOE_ALERT_MAX_DAY_SHARE) while
  bringing more answers than the page's usual day can (burst_usual_times × the usual
  day + burst_usual_plus; the usual day from the reference, when given): a burst.
  A window of one day is all one day by its nature, so this test needs two or more;
- a drop still alarms without its largest source (when it sent two or more and at
  least `decisive_share` of the window's responses): a source
  under the share limit (a third of a small page's few answers) can still tip a drop
  that was just over its limit. koe keeps how many answers a source sent, never what
  it answered (that would be a record of what one address said), so the drop is
  re-judged with as many of that source's days' lowest answers taken out
  (detector.without_lowest): the worst case for the source's answers. A drop that
  stands then stands without the source, whatever it answered; one that does not is
  held, which a real drop on a small page sometimes is (docs/alerts.md has the rate).

An alert that fails is held for review with the first reason that applies, in the
order above; the evidence says what was measured. Days are the events' city-local
days, never the time of judging, so a replay holds the same alerts.

A source is a keyed hash of one address under a key of one day, so the same address
on two days is two sources. A response without a source (sent before the feedback
service stamped sources) is its own source, as counting treats it (never capped).
The counts are responses, not answers per question: a source that answered one
question weighs the same as one that answered three.

Nothing here names a source: the evidence keeps counts, never the hashes, so it
outlives the source retention without keeping what retention deletes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

FEW_SOURCES = "few_sources"
ONE_SOURCE = "one_source"
BURST = "burst"
ONE_SOURCE_DECIDES = "one_source_decides"
REASONS = (FEW_SOURCES, ONE_SOURCE, BURST, ONE_SOURCE_DECIDES)

# Re-judges a drop with removed[day] of each day's lowest answers taken out: whether it
# still alarms (alerts/judging.py makes one per drop alert).
StandsWithout = Callable[[Mapping[date, int]], bool]


@dataclass(frozen=True)
class CrowdRule:
    # One person easily has three addresses in a day (home, phone, office), and a
    # source is one address on one day: five make one person's doing unlikely, and
    # with the per-source cap (3) a window of 20 answers has at least seven anyway.
    min_sources: int = 5
    # Just over a third: with three sources nearly even the evidence still passes;
    # one source with more than a third of what moved the score is not a crowd.
    max_source_share: float = 0.34
    # A city page's answers spread over the week; three in five on one day is a
    # burst (a link shared somewhere, or a script), worth a look before an email.
    max_day_share: float = 0.6
    # ...and that day brought more than twice the page's usual day plus three answers: on
    # a page of ten a week, a Monday with four of a window's six answers is its weekday
    # rhythm, not a burst (one in ten real drops was held for it, bench_detector); a
    # day beyond 2 × usual + 3 comes by chance under 1 % of days at 10–200 a week.
    burst_usual_times: float = 2.0
    burst_usual_plus: int = 3
    # A source with at least a fifth of a drop's evidence is asked whether the drop stands
    # without it. The re-judging assumes the worst of its answers (all "no"), so a
    # smaller source, among four times as many answers of others, is not asked: a
    # source that sent "yes" (bench_attacks' pre-flood) would hold a real drop.
    decisive_share: float = 0.2


DEFAULT_RULE = CrowdRule()


@dataclass(frozen=True)
class SourceDay:
    """Counted responses of one source on one day; source None: that day's responses
    without a source, each its own source."""

    day: date
    source: str | None
    counted: int


@dataclass(frozen=True)
class DayFigures:
    day: date
    n: int
    sources: int


@dataclass(frozen=True)
class Evidence:
    start: date
    end: date
    n: int
    sources: int
    largest_source_share: float | None  # None when n is 0
    busiest_day: date | None
    busiest_day_share: float | None
    days: tuple[DayFigures, ...]  # every day of the window, oldest first
    usual_per_day: float | None = None  # the page's responses a day in the reference

    def as_json(self, rule: CrowdRule) -> dict[str, Any]:
        return {
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "n": self.n,
            "sources": self.sources,
            "largest_source_share": _rounded(self.largest_source_share),
            "busiest_day": self.busiest_day.isoformat() if self.busiest_day else None,
            "busiest_day_share": _rounded(self.busiest_day_share),
            "days": [{"day": d.day.isoformat(), "n": d.n, "sources": d.sources} for d in self.days],
            "usual_per_day": None if self.usual_per_day is None else round(self.usual_per_day, 2),
            "rule": {
                "min_sources": rule.min_sources,
                "max_source_share": rule.max_source_share,
                "max_day_share": rule.max_day_share,
            },
        }


@dataclass(frozen=True)
class Verdict:
    held: str | None  # one of REASONS, or None: email it
    evidence: Evidence
    rule: CrowdRule

    @property
    def email(self) -> bool:
        return self.held is None

    def as_json(self) -> dict[str, Any]:
        """What a held alert keeps as its evidence: the reason, the figures, the rule."""
        return {"reason": self.held, **self.evidence.as_json(self.rule)}


def _rounded(share: float | None) -> float | None:
    return None if share is None else round(share, 4)


# Shares are ratios of small counts: a fifth of 15 is exactly 3, not 3.0000000000000004.
_EPS = 1e-9


def judge(
    rule: CrowdRule,
    start: date,
    end: date,
    counts: Iterable[SourceDay],
    stands_without: StandsWithout | None = None,
    usual_per_day: float | None = None,
) -> Verdict:
    """Whether the evidence of the window start..end (inclusive) may be emailed.
    Rows outside the window are ignored. `stands_without`, for a drop, re-judges it
    without some answers; without it the largest source is not asked about.
    `usual_per_day`: the page's responses a day in its reference; without it any day
    over the share is a burst."""
    source_days: dict[str, dict[date, int]] = {}
    per_source: dict[str, int] = {}
    per_day: dict[date, int] = {}
    day_sources: dict[date, set[str]] = {}
    unsourced: dict[date, int] = {}
    for row in counts:
        if not start <= row.day <= end or row.counted <= 0:
            continue
        per_day[row.day] = per_day.get(row.day, 0) + row.counted
        if row.source is None:
            unsourced[row.day] = unsourced.get(row.day, 0) + row.counted
        else:
            per_source[row.source] = per_source.get(row.source, 0) + row.counted
            days = source_days.setdefault(row.source, {})
            days[row.day] = days.get(row.day, 0) + row.counted
            day_sources.setdefault(row.day, set()).add(row.source)
    n = sum(per_day.values())
    sources = len(per_source) + sum(unsourced.values())
    largest = max([*per_source.values(), 1 if unsourced else 0], default=0)
    busiest_day = max(per_day, key=lambda d: (per_day[d], d), default=None)
    window_days = max((end - start).days + 1, 0)
    evidence = Evidence(
        start=start,
        end=end,
        n=n,
        sources=sources,
        largest_source_share=largest / n if n else None,
        busiest_day=busiest_day,
        busiest_day_share=per_day[busiest_day] / n if busiest_day is not None else None,
        days=tuple(
            DayFigures(
                day, per_day.get(day, 0), len(day_sources.get(day, ())) + unsourced.get(day, 0)
            )
            for day in (start + timedelta(days=i) for i in range(window_days))
        ),
        usual_per_day=usual_per_day,
    )
    reason = _reason(rule, evidence, window_days)
    if reason is None and stands_without is not None and per_source:
        # The largest source; of equals, the one with the latest day (the chart weighs
        # recent days most). One answer is one person's, as every answer is: not asked.
        top = max(per_source, key=lambda s: (per_source[s], max(source_days[s])))
        counted = per_source[top]
        if (
            counted >= 2
            and counted >= rule.decisive_share * n - _EPS
            and not stands_without(source_days[top])
        ):
            reason = ONE_SOURCE_DECIDES
    return Verdict(reason, evidence, rule)


def evidence_start(
    rule: CrowdRule, counts: Iterable[SourceDay], earliest: date, start: date, end: date
) -> date:
    """The first day of an alert's evidence: `start` (the chart's last few days), or the
    latest day before it, not before `earliest` (the chart's first), from which on at
    least min_sources sources answered. A page of ten answers a week has fewer than five
    in four days on many weeks: that is a quiet page, not a few people's doing, and a
    third of its real drops were held for it (bench_detector). Going back only as far as
    five sources need, the older good days cannot outnumber a source's bad ones."""
    rows = [r for r in counts if earliest <= r.day <= end]
    day = start
    while day > earliest and judge(rule, day, end, rows).evidence.sources < rule.min_sources:
        day -= timedelta(days=1)
    return day


def _reason(rule: CrowdRule, evidence: Evidence, window_days: int) -> str | None:
    if evidence.sources < rule.min_sources:
        return FEW_SOURCES
    if evidence.largest_source_share is not None and (
        evidence.largest_source_share > rule.max_source_share
    ):
        return ONE_SOURCE
    if (
        window_days >= 2
        and evidence.busiest_day_share is not None
        and evidence.busiest_day_share > rule.max_day_share
        and (
            evidence.usual_per_day is None
            or evidence.busiest_day_share * evidence.n
            > rule.burst_usual_times * evidence.usual_per_day + rule.burst_usual_plus + _EPS
        )
    ):
        return BURST
    return None
