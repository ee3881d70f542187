"""The cost of noticing edits (issue 15, "did my edit help?"), in one run.

The same answers are counted twice by the aggregator's batch handler (in process,
PostgreSQL, batches of --batch): once as before edits existed (no page_modified), once
with each answer carrying its page's last-modified date, which changes halfway through
(every page gets an edit, confirmed by five sources). Prints events/s of both and their
ratio, then the time to write every page's four-week report (the consumer's idle hook)
and to render the stats API's edits for a page. Numbers, never pass/fail.

    .venv/bin/python bench/bench_edits.py --pages 100 --days 28

--page-word instead sizes the email's one word by simulation through the service's own
verdict (compare_all, overall): thousands of edits of three-question pages, answers drawn
at random, with no real change (how often the word says better or worse anyway) and
with a real one (how often it says so), beside the earlier rule in the same run (the
word follows every question that moved at 95 %, the family of three not accounted for).

    .venv/bin/python bench/bench_edits.py --page-word --trials 20000
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from aggregator.counting.ingest import handle_batch
from aggregator.edits import reports, verdict
from aggregator.edits.page_view import edit_json, edit_views
from aggregator.stats.scoring import Tally
from common import REPO, migrate, pg_database
from koe_directory import load_directory
from koe_kit import events
from koe_kit.db import make_engine, session_factory, transaction

TOKYO = ZoneInfo("Asia/Tokyo")
SITE = "https://www.info.city.tsu.mie.jp/shisei/dx/"
OLD = date(2026, 4, 1)
PER_DAY = 5  # sources a page gets a day: enough to confirm a date on the edit's day


def answers(pages: int, days: int, first: date, modified: bool) -> list[dict]:
    edit = first + timedelta(days=days // 2)
    produced = []
    for day_index in range(days):
        day = first + timedelta(days=day_index)
        noon = datetime(day.year, day.month, day.day, 3, tzinfo=UTC)
        for page in range(pages):
            url = f"{SITE}{page}.html"
            for i in range(PER_DAY):
                data = {
                    "response_id": str(uuid.uuid4()),
                    "page_id": f"bench-{page}",
                    "page_url": url,
                    "page_title": f"ページ {page}",
                    "division": None,
                    "locale": "ja",
                    "answers": {"clarity": "yes" if i % 2 else "no", "findability": "yes"},
                    "source": hashlib.sha256(f"{page} {day} {i}".encode()).hexdigest()[:32],
                }
                if modified:
                    data["page_modified"] = (edit if day >= edit else OLD).isoformat()
                produced.append(
                    events.make_event(
                        "koe.feedback.submitted.v1",
                        source="koe/bench",
                        subject=data["page_id"],
                        event_id=data["response_id"],
                        time=noon + timedelta(seconds=i),
                        data=data,
                    )
                )
    return produced


QUESTIONS = ("findability", "clarity", "usefulness")
# A typical page: 60 % yes, 20 % neutral, 20 % no (score 70) on every question.
USUAL = (0.6, 0.2, 0.2)


def draw(rng: random.Random, shares: tuple[float, float, float], n: int) -> Tally:
    picked = rng.choices(range(3), weights=shares, k=n)
    return Tally(picked.count(0), picked.count(1), picked.count(2))


def word_before(compared: list[verdict.Comparison]) -> str:
    """The earlier rule, for the baseline: every question that moved at 95 % decides."""
    moved = {c.outcome for c in compared} & {"better", "worse"}
    return moved.pop() if len(moved) == 1 else "unclear"


def page_word_shares(trials: int, n: int, after: dict[str, tuple], seed: int) -> dict:
    """Share of edits whose word is better or worse, before's rule and the service's."""
    rng = random.Random(seed)
    said = {"before": {"better": 0, "worse": 0}, "now": {"better": 0, "worse": 0}}
    for _ in range(trials):
        before_t = {q: draw(rng, USUAL, n) for q in QUESTIONS}
        after_t = {q: draw(rng, after.get(q, USUAL), n) for q in QUESTIONS}
        compared = verdict.compare_all(list(QUESTIONS), before_t, after_t)
        for rule, word in (("before", word_before(compared)), ("now", verdict.overall(compared))):
            if word in said[rule]:
                said[rule][word] += 1
    return {rule: {w: c / trials for w, c in words.items()} for rule, words in said.items()}


def page_word(trials: int, seed: int) -> None:
    better = (0.8, 0.1, 0.1)  # score 70 → 85 on a question
    cases = [
        ("no real change", {}),
        ("one question 70 → 85", {"clarity": better}),
        ("all three 70 → 85", {q: better for q in QUESTIONS}),
    ]
    print(f"The email's word, {trials:,} simulated edits per row, answers per side and question:")
    print("| case | answers | said better/worse, earlier rule | now |")
    print("|---|---:|---:|---:|")
    for name, after in cases:
        for n in (20, 40, 140):
            shares = page_word_shares(trials, n, after, seed)
            moved = {rule: words["better"] + words["worse"] for rule, words in shares.items()}
            print(f"| {name} | {n} | {moved['before']:.1%} | {moved['now']:.1%} |")


def count(url: str, produced: list[dict], batch: int, directory) -> float:
    """Seconds to count every event, batch after batch."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    started = time.perf_counter()
    for start in range(0, len(produced), batch):
        with transaction(sessions) as session:
            handle_batch(
                session, produced[start : start + batch], timezone=TOKYO, directory=directory
            )
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; the median is shown")
    parser.add_argument("--page-word", action="store_true", help="size the email's word instead")
    parser.add_argument("--trials", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.page_word:
        page_word(args.trials, args.seed)
        return
    directory = load_directory(REPO / "divisions.yaml")
    first = datetime.now(TOKYO).date() - timedelta(days=args.days + 40)
    without = answers(args.pages, args.days, first, modified=False)
    with_dates = answers(args.pages, args.days, first, modified=True)
    timings: dict[str, list[float]] = {"without page_modified": [], "with page_modified": []}
    report_s: list[float] = []
    api_ms: list[float] = []
    for _ in range(args.rounds):
        for name, produced in (
            ("without page_modified", without),
            ("with page_modified", with_dates),
        ):
            with pg_database(prefix="edits_bench") as url:
                migrate("aggregator", url)
                timings[name].append(count(url, produced, args.batch, directory))
                if produced is with_dates:
                    engine = make_engine(url)
                    sessions = session_factory(engine)
                    due = first + timedelta(days=args.days // 2) + timedelta(days=40)
                    now = datetime(due.year, due.month, due.day, 3, tzinfo=UTC)
                    started = time.perf_counter()
                    with transaction(sessions) as session:
                        written = reports.write_due(
                            session, now=now, timezone=TOKYO, max_age_days=100, directory=directory
                        )
                    report_s.append(time.perf_counter() - started)
                    assert written == args.pages, written
                    with transaction(sessions) as session:
                        started = time.perf_counter()
                        shown = [edit_json(e) for e in edit_views(session, "bench-0", due)]
                        api_ms.append((time.perf_counter() - started) * 1000)
                    assert shown and shown[0]["outcome"] is not None
                    engine.dispose()
    n = len(without)
    base, edits = (statistics.median(timings[k]) for k in timings)
    print(
        f"{n:,} events, {args.pages} pages × {args.days} days × {PER_DAY} sources,"
        f" batches of {args.batch}"
    )
    print(f"  without page_modified: {n / base:,.0f} events/s (median of {args.rounds})")
    print(f"  with page_modified:    {n / edits:,.0f} events/s, {args.pages} edits recorded")
    print(f"  ratio with/without:    {edits / base:.2f}x the time")
    print(
        f"  four-week reports:     {args.pages} in {statistics.median(report_s) * 1000:,.0f} ms"
        f" ({statistics.median(report_s) * 1000 / args.pages:.1f} ms each)"
    )
    print(f"  a page's edits for the API/dashboard: {statistics.median(api_ms):.1f} ms")


if __name__ == "__main__":
    main()
