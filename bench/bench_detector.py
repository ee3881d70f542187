"""The drop detector against today's drop rule, on simulated city pages: prints tables.

Histories (seeded): pages of 2, 5, 10, 20, 50 and 200 answers a week (weekdays busier
than weekends), three questions each with their own level (yes 50–75 %, neutral
10–35 %), a weekly wobble of the score, and then one of: nothing (steady), a drop of
10, 15 or 25 points on one question, a gradual decline of 25 points over eight weeks,
a single bad day, a one-week 5-point dip, a 25-point drop that comes back after four
weeks, and a 500-page city mixing sizes and fates.

Each page is judged once a day, per question, by aggregator.alerts.detector.judge (the
function the service calls) and, side by side, by today's rule
(bench/baseline_drop_rule.py, evaluate_windows daily with its cooldown). Questions of a page
that fire on the same day make one email, as in the service.

Usage: python bench/bench_detector.py [--pages 60] [--seed 1] [--half-life 4] ...
(every DetectorSettings field has a flag, to try other operating points).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import date, timedelta

from aggregator.alerts.crowd import DEFAULT_RULE, SourceDay, evidence_start
from aggregator.alerts.crowd import judge as crowd_judge
from aggregator.alerts.detector import DROP, RECOVERY, DetectorSettings, State, judge_page
from aggregator.stats.scoring import Tally
from baseline_drop_rule import DropRule, evaluate_windows
from bench_drop_rule import day_tally

QUESTIONS = ("findability", "clarity", "usefulness")
SIZES = (2, 5, 10, 20, 50, 200)
DAY0 = date(2025, 1, 6)  # a Monday
WEEKDAY_SHARE = (1.2, 1.2, 1.2, 1.2, 1.2, 0.5, 0.5)  # Mon..Sun, sums to 7
# What a drop, a bad day or a dip hits: the whole page (every question) or one question.
HITS = {"page": QUESTIONS, "question": ("clarity",)}


def poisson(rng: random.Random, mean: float) -> int:
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


@dataclass(frozen=True)
class Fate:
    """What happens to the dropped question: shift(day) in points, and a bad day."""

    shift: Callable[[int], float] = lambda day: 0.0
    bad_day: int | None = None
    hit: tuple[str, ...] = QUESTIONS


def history(
    rng: random.Random, per_week: float, days: int, wobble: float, fate: Fate
) -> dict[str, list[Tally]]:
    """Per question, one tally per day."""
    levels = {}
    for q in QUESTIONS:
        neutral = rng.uniform(0.10, 0.35)
        levels[q] = (rng.uniform(0.50, min(0.75, 0.95 - neutral)), neutral)
    weeks = days // 7 + 1
    wobbles = {q: [rng.gauss(0, wobble) for _ in range(weeks)] for q in QUESTIONS}
    series: dict[str, list[Tally]] = {q: [] for q in QUESTIONS}
    for day in range(days):
        n = poisson(rng, per_week / 7 * WEEKDAY_SHARE[day % 7])
        if day == fate.bad_day:
            n = max(n, 3)
        for q in QUESTIONS:
            p_yes, p_neutral = levels[q]
            shift = wobbles[q][day // 7]
            if q in fate.hit:
                shift += fate.shift(day) + (-50 if day == fate.bad_day else 0)
            p_yes = min(max(p_yes + shift / 100, 0.0), 1 - p_neutral)
            series[q].append(day_tally(rng, n, p_yes, p_neutral))
    return series


def _prefix(tallies: list[Tally]) -> list[Tally]:
    sums = [Tally()]
    for t in tallies:
        sums.append(sums[-1] + t)
    return sums


def _between(prefix: list[Tally], first: int, last: int) -> Tally:
    """Sum of days first..last (inclusive), clipped to the history."""
    first, last = max(first, 0), min(last, len(prefix) - 2)
    if last < first:
        return Tally()
    a, b = prefix[last + 1], prefix[first]
    return Tally(a.yes - b.yes, a.neutral - b.neutral, a.no - b.no)


def detector_emails(
    series: dict[str, list[Tally]], first: int, last: int, settings: DetectorSettings
) -> dict[str, list[int]]:
    """Days (first..last) on which the page emails a drop / a recovery, judged by the
    service's function. The reference sums come from prefix sums (the service sums
    them in SQL); the chart reads the daily rows itself."""
    emails: dict[str, list[int]] = {DROP: [], RECOVERY: []}
    dates = [DAY0 + timedelta(days=i) for i in range(last + 1)]
    prefixes = {q: _prefix(series[q]) for q in QUESTIONS}
    rows = {q: list(zip(dates, series[q], strict=False)) for q in QUESTIONS}
    states: dict[str, State] = {}
    for day in range(first, last + 1):
        ref_end = day - settings.gap_days
        inputs = {
            q: (
                _between(prefixes[q], ref_end - settings.reference_days + 1, ref_end),
                rows[q][max(0, day - settings.span_days + 1) : day + 1],
            )
            for q in QUESTIONS
        }
        states, judged = judge_page(states, dates[day], inputs, settings)
        if judged.email:
            emails[judged.email].append(day)
    return emails


def rule_emails(series: dict[str, list[Tally]], first: int, last: int, rule: DropRule) -> list[int]:
    """Days on which today's rule emails the page, judged daily with its cooldown."""
    prefixes = {q: _prefix(series[q]) for q in QUESTIONS}
    last_alert: dict[str, date] = {}
    days = []
    for day in range(first, last + 1):
        recent = {q: _between(p, day - rule.recent_days + 1, day) for q, p in prefixes.items()}
        b_last = day - rule.recent_days
        baseline = {
            q: _between(p, b_last - rule.baseline_days + 1, b_last) for q, p in prefixes.items()
        }
        as_of = DAY0 + timedelta(days=day)
        alert = evaluate_windows("p", recent, baseline, as_of, rule, last_alert)
        if alert:
            days.append(day)
            for q in alert.questions:
                last_alert[q.question] = as_of
    return days


@dataclass
class Bench:
    settings: DetectorSettings
    rule: DropRule
    pages: int
    seed: int
    hit: tuple[str, ...] = QUESTIONS

    @property
    def warmup(self) -> int:
        return self.settings.gap_days + self.settings.reference_days

    def rng(self, *key: object) -> random.Random:
        return random.Random(f"{self.seed}|{'|'.join(map(str, key))}")

    def steady_rates(self, per_week: float, wobble: float, months: int = 12) -> tuple[float, float]:
        """False drop emails per 100 page-months: (detector, today's rule)."""
        days = months * 365 // 12
        new = old = 0
        for i in range(self.pages):
            series = history(
                self.rng("steady", per_week, wobble, i),
                per_week,
                self.warmup + days,
                wobble,
                Fate(),
            )
            last = self.warmup + days - 1
            new += len(detector_emails(series, self.warmup, last, self.settings)[DROP])
            old += len(rule_emails(series, self.warmup, last, self.rule))
        scale = 100 / (self.pages * months)
        return new * scale, old * scale

    def caught(
        self,
        per_week: float,
        fate_at: Callable[[int], Fate],
        within: tuple[int, ...],
        wobble: float = 4.0,
        name: str = "",
    ) -> tuple[list[float], list[float]]:
        """Share of pages emailed within each of `within` days of the event at day T:
        (detector, today's rule). The pages are steady for a year before T."""
        t = self.warmup + 28
        end = t + max(within) - 1
        new = [0] * len(within)
        old = [0] * len(within)
        for i in range(self.pages):
            series = history(
                self.rng(name, per_week, i),
                per_week,
                end + 1,
                wobble,
                replace(fate_at(t), hit=self.hit),
            )
            # Judging starts four weeks before T: a fresh state, as a page new to koe.
            first = self.warmup
            drops = [d for d in detector_emails(series, first, end, self.settings)[DROP] if d >= t]
            rule = [d for d in rule_emails(series, first, end, self.rule) if d >= t]
            for k, days in enumerate(within):
                new[k] += any(d < t + days for d in drops)
                old[k] += any(d < t + days for d in rule)
        return [x / self.pages for x in new], [x / self.pages for x in old]


def drop(points: float) -> Callable[[int], Fate]:
    return lambda t: Fate(shift=lambda day: -points if day >= t else 0.0)


def decline(points: float, over_days: int) -> Callable[[int], Fate]:
    return lambda t: Fate(shift=lambda day: -points * min(max(day - t, 0) / over_days, 1.0))


def bad_day() -> Callable[[int], Fate]:
    return lambda t: Fate(bad_day=t)


def dip(points: float, days: int) -> Callable[[int], Fate]:
    return lambda t: Fate(shift=lambda day: -points if t <= day < t + days else 0.0)


def pct(x: float) -> str:
    return f"{x:5.0%}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=40, help="pages per table cell")
    parser.add_argument("--city-pages", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--hit",
        choices=sorted(HITS),
        default="page",
        help="what drops, bad days and dips hit: every question of the page, or one",
    )
    parser.add_argument(
        "--operating-points",
        type=float,
        nargs="*",
        metavar="SIGMAS",
        help="also print one-question drops and false emails for these limit_sigmas",
    )
    defaults = DetectorSettings()
    for f in fields(DetectorSettings):
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=type(getattr(defaults, f.name)),
            default=getattr(defaults, f.name),
        )
    args = parser.parse_args()
    settings = DetectorSettings(**{f.name: getattr(args, f.name) for f in fields(DetectorSettings)})
    bench = Bench(settings, DropRule(), args.pages, args.seed, HITS[args.hit])
    started = time.monotonic()
    print(f"detector: {settings}\ntoday's rule: {bench.rule}")
    print(
        f"{args.pages} simulated pages per cell, seed {args.seed}; "
        "'new' = detector, 'old' = today's rule\n"
    )

    print("False drop emails per 100 page-months (steady pages, judged daily for a year):")
    print(
        f"{'answers/week':>12} | {'no wobble new/old':>18} | {'4-pt wobble new/old':>20} | "
        f"{'5-pt wobble new/old':>20}"
    )
    for size in SIZES:
        cells = [bench.steady_rates(size, w) for w in (0.0, 4.0, 5.0)]
        print(f"{size:>12} | " + " | ".join(f"{n:8.2f} / {o:7.2f}  " for n, o in cells))

    print(f"\nReal drops of the {args.hit} (4-pt wobble): share emailed within 14 / 28 days:")
    print(
        f"{'answers/week':>12} | "
        + " | ".join(
            f"{label:>23}"
            for label in (
                "-10 pts new/old",
                "-15 pts new/old",
                "-25 pts new/old",
                "-25 over 8 wks new/old",
            )
        )
    )
    for size in SIZES:
        row = []
        for name, fate in (
            ("d10", drop(10)),
            ("d15", drop(15)),
            ("d25", drop(25)),
            ("g25", decline(25, 56)),
        ):
            within = (14, 28) if name != "g25" else (42, 70)
            new, old = bench.caught(size, fate, within, name=name)
            row.append(f"{pct(new[0])}/{pct(new[1])} {pct(old[0])}/{pct(old[1])}")
        print(f"{size:>12} | " + " | ".join(f"{cell:>23}" for cell in row))
    print("  (gradual decline: within 42 / 70 days of its start)")

    print("\nNot drops (4-pt wobble): share of pages emailed within 28 days:")
    print(
        f"{'answers/week':>12} | {'single bad day new/old':>24} | {'1-week 5-pt dip new/old':>24}"
    )
    for size in SIZES:
        bad_new, bad_old = bench.caught(size, bad_day(), (28,), name="bad")
        dip_new, dip_old = bench.caught(size, dip(5, 7), (28,), name="dip")
        print(
            f"{size:>12} | {pct(bad_new[0]):>12} / {pct(bad_old[0]):<9} | "
            f"{pct(dip_new[0]):>12} / {pct(dip_old[0]):<9}"
        )

    print("\nDrop then recovery (detector): -25 pts for 28 days, then back; and -25 pts staying:")
    print(
        f"{'answers/week':>12} | {'drop emailed':>12} | "
        f"{'recovered within 28 / 56 d of return':>30} | "
        f"{'recovery emails per drop':>24} | {'false recovery (stayed down, 12 wks)':>36}"
    )
    for size in SIZES:
        print(f"{size:>12} | " + recovery_row(bench, size))

    print(
        "\nReal 25-pt drops emailed within 28 days, held for review by the crowd check "
        "(every answer its own source):"
    )
    print(f"{'answers/week':>12} | {'emailed':>8} | held")
    for size in SIZES:
        print(f"{size:>12} | " + held_row(bench, size))

    print("\nA 500-page city (4-pt wobble; traffic mix below), one year:")
    city(bench, args.city_pages)
    if args.operating_points:
        print("\nOperating points (the other settings as above), one-question drops, 4-pt wobble:")
        operating_points(bench, args.city_pages, tuple(args.operating_points))
    print(f"\n(ran {time.monotonic() - started:.0f} s)")


def recovery_row(bench: Bench, size: float) -> str:
    """A page that drops 25 points for four weeks and comes back, and one that stays down:
    how soon the recovery is emailed, how many recovery emails per drop email, and how
    often a page that stayed down is said to have recovered."""
    s = bench.settings
    t = bench.warmup + 28
    back = t + 28
    end = back + 56 + 14
    emailed = drop_emails = recoveries = stay_emailed = false = 0
    recovered = [0, 0]
    for i in range(bench.pages):
        fate = Fate(shift=lambda day: -25.0 if t <= day < back else 0.0, hit=bench.hit)
        series = history(bench.rng("rec", size, i), size, end + 1, 4.0, fate)
        fired = detector_emails(series, bench.warmup, end, s)
        drops = [d for d in fired[DROP] if d >= t]
        if drops:
            emailed += 1
            drop_emails += len(drops)
            recoveries += len([d for d in fired[RECOVERY] if d >= t])
            for k, within in enumerate((28, 56)):
                recovered[k] += any(back <= d < back + within for d in fired[RECOVERY])
        stay = history(
            bench.rng("stay", size, i), size, t + 84 + 1, 4.0, replace(drop(25)(t), hit=bench.hit)
        )
        fired = detector_emails(stay, bench.warmup, t + 84, s)
        if any(d >= t for d in fired[DROP]):
            stay_emailed += 1
            false += any(d >= t for d in fired[RECOVERY])
    per_drop = recoveries / drop_emails if drop_emails else 0.0
    share = [pct(r / max(emailed, 1)) for r in recovered]
    return (
        f"{pct(emailed / bench.pages):>12} | {share[0] + ' / ' + share[1]:>30} | "
        f"{per_drop:>24.2f} | {pct(false / max(stay_emailed, 1)):>36}"
    )


CITY_MIX = ((2, 0.30), (5, 0.25), (10, 0.20), (20, 0.13), (50, 0.08), (200, 0.04))
CITY_FATES = (("steady", 0.88), ("drop 25", 0.04), ("drop 15", 0.04), ("decline 25/8 wks", 0.04))


def held_row(bench: Bench, per_week: float) -> str:
    """Real 25-point drops of the page emailed within 28 days: how many the crowd check
    (crowd.judge on the alarm's evidence days) would hold for review, by reason, when
    every answer comes from a source of its own (honest traffic: no shared address)."""
    s = bench.settings
    t = bench.warmup + 28
    end = t + 27
    alarmed = 0
    held: Counter[str] = Counter()
    for i in range(bench.pages):
        series = history(
            bench.rng("held", per_week, i),
            per_week,
            end + 1,
            4.0,
            replace(drop(25)(t), hit=bench.hit),
        )
        drops = [d for d in detector_emails(series, bench.warmup, end, s)[DROP] if d >= t]
        if not drops:
            continue
        alarmed += 1
        day = DAY0 + timedelta(days=drops[0])
        first = day - timedelta(days=s.span_days - 1)
        counts = [
            SourceDay(d, f"{d} {k}", 1)
            for d in (first + timedelta(days=j) for j in range(s.span_days))
            for k in range(series[QUESTIONS[0]][(d - DAY0).days].n)
        ]
        start = evidence_start(DEFAULT_RULE, counts, first, s.evidence_start(day, first), day)
        reference = s.reference_window(day)
        assert reference.start is not None
        usual = sum(
            series[QUESTIONS[0]][(reference.start - DAY0).days + j].n
            for j in range(s.reference_days)
        )
        verdict = crowd_judge(
            DEFAULT_RULE, start, day, counts, usual_per_day=usual / s.reference_days
        )
        if verdict.held:
            held[verdict.held] += 1
    share = sum(held.values()) / alarmed if alarmed else 0.0
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(held.items())) or "none"
    return f"{alarmed:>8} | {pct(share):>6} held ({reasons})"


@dataclass
class CityYear:
    """One simulated year of the 500-page city: emails of the detector ('new') and, when
    asked, of today's rule ('old')."""

    pages: int
    drops: int = 0
    false_new: int = 0
    false_old: int = 0
    true_new: int = 0
    true_old: int = 0

    def per_100_page_months(self, false: int) -> float:
        return false * 100 / (self.pages * 12)


def city_year(bench: Bench, pages: int, with_rule: bool = True) -> CityYear:
    rng = bench.rng("city")
    year = 365
    end = bench.warmup + year - 1
    result = CityYear(pages)
    for i in range(pages):
        size = rng.choices([x for x, _ in CITY_MIX], [w for _, w in CITY_MIX])[0]
        fate_name = rng.choices([x for x, _ in CITY_FATES], [w for _, w in CITY_FATES])[0]
        t = bench.warmup + rng.randrange(28, year - 56)
        fate = {
            "steady": Fate(),
            "drop 25": drop(25)(t),
            "drop 15": drop(15)(t),
            "decline 25/8 wks": decline(25, 56)(t),
        }[fate_name]
        series = history(bench.rng("citypage", i), size, end + 1, 4.0, replace(fate, hit=bench.hit))
        new = detector_emails(series, bench.warmup, end, bench.settings)[DROP]
        old = rule_emails(series, bench.warmup, end, bench.rule) if with_rule else []
        if fate_name == "steady":
            result.false_new += len(new)
            result.false_old += len(old)
        else:
            result.drops += 1
            result.false_new += sum(d < t for d in new)
            result.false_old += sum(d < t for d in old)
            result.true_new += any(d >= t for d in new)
            result.true_old += any(d >= t for d in old)
    return result


def city(bench: Bench, pages: int) -> None:
    year = city_year(bench, pages)
    print(f"  traffic mix (answers/week: share): {dict(CITY_MIX)}; fates: {dict(CITY_FATES)}")
    print(
        f"  false drop emails per 100 page-months: "
        f"new {year.per_100_page_months(year.false_new):.2f}, "
        f"old {year.per_100_page_months(year.false_old):.2f}"
    )
    print(
        f"  false drop emails a month for the whole city: new {year.false_new / 12:.1f}, "
        f"old {year.false_old / 12:.1f}"
    )
    print(f"  real drops emailed (of {year.drops}): new {year.true_new}, old {year.true_old}")


def operating_points(bench: Bench, city_pages: int, sigmas: tuple[float, ...]) -> None:
    """One-question drops against false emails, for limits of `sigmas` standard errors:
    what a lower limit buys and costs (docs/alerts.md, "One question")."""
    print(
        f"{'limit_sigmas':>12} | {'1 question -25, 10/wk: 14/28 d':>30} | "
        f"{'20/wk: 14/28 d':>14} | {'city false per 100 page-months':>30}"
    )
    for k in sigmas:
        point = Bench(
            replace(bench.settings, limit_sigmas=k),
            bench.rule,
            bench.pages,
            bench.seed,
            ("clarity",),
        )
        ten, _ = point.caught(10, drop(25), (14, 28), name="d25")
        twenty, _ = point.caught(20, drop(25), (14, 28), name="d25")
        year = city_year(replace(point, hit=QUESTIONS), city_pages, with_rule=False)
        print(
            f"{k:>12} | {pct(ten[0]) + ' / ' + pct(ten[1]):>30} | "
            f"{pct(twenty[0]) + ' / ' + pct(twenty[1]):>14} | "
            f"{year.per_100_page_months(year.false_new):>30.2f}"
        )


if __name__ == "__main__":
    main()
