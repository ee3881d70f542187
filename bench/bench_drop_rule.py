"""The drop rule's error rates, by simulation: prints numbers, never passes or fails.

- p-values of the one-sided score test for a 15-point drop at the minimum n;
- false alarms: steady pages (nothing changes) judged every day for a year, as the
  aggregator does, with the cooldown: alerts per page per year, by traffic;
- power: pages whose score really falls by 15 or 25 points: how often the rule
  emails within the first week of the drop;
- false recoveries: pages that stay dropped, judged for recovery for four weeks.

Usage: python bench/bench_drop_rule.py [--pages 300] [--seed 1]
Docs quote these figures (docs/alerts.md).
"""

from __future__ import annotations

import argparse
import random
from datetime import date, timedelta

from aggregator.stats.scoring import Tally
from baseline_drop_rule import (
    DropRule,
    OpenDrop,
    evaluate_recovery,
    evaluate_windows,
    one_sided_p_value,
)

RULE = DropRule()
DAY0 = date(2026, 1, 1)


def day_tally(rng: random.Random, n: int, p_yes: float, p_neutral: float) -> Tally:
    yes = neutral = 0
    for _ in range(n):
        r = rng.random()
        if r < p_yes:
            yes += 1
        elif r < p_yes + p_neutral:
            neutral += 1
    return Tally(yes, neutral, n - yes - neutral)


def daily_counts(rng: random.Random, per_week: int, days: int) -> list[int]:
    """Answers per day: per_week spread at random over the days (Poisson-like)."""
    counts = [0] * days
    for _ in range(per_week * days // 7):
        counts[rng.randrange(days)] += 1
    return counts


def judge(series: list[Tally], first_day: int, rule: DropRule = RULE) -> list[int]:
    """Days on which one question of one page alerts, judged daily with the cooldown."""
    alerts: list[int] = []
    last: dict[str, date] = {}
    for day in range(first_day, len(series)):
        recent = _sum(series[day - rule.recent_days + 1 : day + 1])
        baseline = _sum(
            series[day - rule.recent_days - rule.baseline_days + 1 : day - rule.recent_days + 1]
        )
        as_of = DAY0 + timedelta(days=day)
        alert = evaluate_windows("p", {"clarity": recent}, {"clarity": baseline}, as_of, rule, last)
        if alert:
            alerts.append(day)
            last["clarity"] = as_of
    return alerts


def _sum(tallies: list[Tally]) -> Tally:
    total = Tally()
    for t in tallies:
        total = total + t
    return total


def steady(rng: random.Random, per_week: int, days: int) -> list[Tally]:
    return [day_tally(rng, n, 0.7, 0.2) for n in daily_counts(rng, per_week, days)]  # 80 points


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--alpha", type=float, default=RULE.alpha)
    parser.add_argument("--min-n-recent", type=int, default=RULE.min_n_recent)
    parser.add_argument("--min-n-baseline", type=int, default=RULE.min_n_baseline)
    args = parser.parse_args()
    rule = DropRule(
        alpha=args.alpha, min_n_recent=args.min_n_recent, min_n_baseline=args.min_n_baseline
    )
    print(f"rule: {rule}\n")
    rng = random.Random(args.seed)
    warmup = RULE.recent_days + RULE.baseline_days

    print("one-sided score test, baseline 80 points -> recent 65 points (a 15-point drop):")
    for n_recent, n_baseline in [(10, 20), (10, 40), (20, 80), (30, 120), (50, 200)]:
        b = Tally(yes=int(n_baseline * 0.8), no=n_baseline - int(n_baseline * 0.8))
        r = Tally(yes=int(n_recent * 0.5), neutral=int(n_recent * 0.3))
        r = Tally(r.yes, r.neutral, n_recent - r.yes - r.neutral)
        p_value = one_sided_p_value(r, b)
        print(f"  n = {n_recent:>3} recent / {n_baseline:>3} baseline: p = {p_value:.3f}")

    print(
        f"\nfalse alarms on steady pages (score 80, one question, {args.pages} pages x 365 days):"
    )
    for per_week in (10, 20, 50, 200, 1000):
        alerts = 0
        for _ in range(args.pages):
            series = steady(rng, per_week, 365 + warmup)
            alerts += len(judge(series, warmup, rule))
        rate = alerts / args.pages
        print(
            f"  {per_week:>5} answers/week: {rate:.3f} alerts per page-question-year "
            f"({rate * 3:.2f} per page with 3 questions)"
        )

    print("\npower: the score falls on day 0 and stays down; share alerted within 7 days:")
    for per_week in (10, 20, 50, 200):
        for drop_to in (65, 55):
            hit = 0
            for _ in range(args.pages):
                before = steady(rng, per_week, warmup)
                p_yes = (drop_to - 10) / 100  # neutral 0.2 adds 10 points
                after = [day_tally(rng, n, p_yes, 0.2) for n in daily_counts(rng, per_week, 7)]
                days = judge(before + after, len(before), rule)
                hit += bool(days)
            print(f"  {per_week:>4} answers/week, 80 -> {drop_to}: {hit / args.pages:.0%}")

    print("\nfalse recoveries: dropped 80 -> 60 and staying there, judged 28 days:")
    for per_week in (10, 50, 200):
        false = 0
        drop = OpenDrop("clarity", "a", DAY0, Tally(yes=160, neutral=0, no=40), Tally(yes=6, no=4))
        for _ in range(args.pages):
            series = [day_tally(rng, n, 0.5, 0.2) for n in daily_counts(rng, per_week, 29)]
            rows = [(DAY0 + timedelta(days=i), "clarity", t) for i, t in enumerate(series)]
            for day in range(1, 29):
                as_of = DAY0 + timedelta(days=day)
                if evaluate_recovery("p", rows, as_of, rule, {"clarity": drop}):
                    false += 1
                    break
        print(f"  {per_week:>4} answers/week: {false / args.pages:.1%} announced a recovery")


if __name__ == "__main__":
    main()
