"""Aggregator throughput and memory.

1. Throughput: N schema-valid events on koe.feedback.submitted.v1; a raw
   kafka-python consumer (group join, poll, nothing else) reads them all, then
   the real aggregator consumer process (PostgreSQL, default batch settings)
   counts them all. Rates are measured from the first event handled to the last,
   so the group join does not count. Target: aggregator ≥ 0.5x raw.
   Event times fall within the last 24 hours, as in live traffic: every page a
   batch touches then has a recent day as its as_of, so the drop rule is
   evaluated for all of them over full windows (the worst case), not skipped
   over old days as with times spread over months.
   Each event carries a source (koe.feedback.submitted.v1 `data.source`), as the
   feedback service sends it: most from an address of their own, some from one a page
   saw before that day, so the per-source cap (counting/source_ledger.py) is at work.
   --before DIR also runs the aggregator of another checkout (e.g. `git worktree add
   /tmp/koe-before origin/main`) on the same events, for a before/after in one run:
   before, after, after, before, each side the mean of its two runs.
   --history-pages N first fills the aggregator's DB with N pages × --history-days
   days of daily rows (history.py; issue 13: 10,000 × 730), the events' pages among
   them: the drop-rule work per batch must stay bounded however long the history.
2. Memory (--memory-events, e.g. 1000000): the aggregator's RSS after 10k events
   and after all of them. Target: flat within 10%.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer
from sqlalchemy import create_engine, text

import history
from common import REPO, code_env, pg_database, process, rss_mib, wait
from koe_devkit.local_broker import LocalBroker
from koe_directory import page_id_for_url
from koe_kit import events
from koe_kit.kafka import ensure_topics

TOPIC = "koe.feedback.submitted.v1"
# KOE_BATCH_MAX_MESSAGES=2000 python bench_aggregator.py tries other settings.
EXTRA_ENV = {k: v for k, v in os.environ.items() if k.startswith("KOE_BATCH_")}
FAST = {
    "KAFKA_MAX_POLL_INTERVAL_MS": "3000",
    "KAFKA_SESSION_TIMEOUT_MS": "3000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
}


def produce(bootstrap: str, count: int, pages: int) -> None:
    rng = random.Random(1)
    now = datetime.now(UTC)
    producer = KafkaProducer(
        bootstrap_servers=[bootstrap], acks=1, linger_ms=20, batch_size=256 * 1024
    )
    urls = [history.url(n) for n in range(pages)]
    # Half as many addresses as responses: most answer once, some a page twice or more.
    sources = [f"{rng.getrandbits(128):032x}" for _ in range(max(1, count // 2))]
    for i in range(count):
        url = urls[i % pages]
        page_id = page_id_for_url(url)
        response_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        event = events.make_event(
            TOPIC,
            source="koe/bench",
            subject=page_id,
            event_id=response_id,
            time=now - timedelta(seconds=rng.randrange(24 * 60 * 60)),
            data={
                "response_id": response_id,
                "page_id": page_id,
                "page_url": url,
                "page_title": f"ページ {i % pages}",
                "division": None,
                "source": rng.choice(sources),
                "locale": "ja",
                "answers": {
                    q: rng.choice(("yes", "yes", "neutral", "no"))
                    for q in ("findability", "clarity", "usefulness")
                },
            },
        )
        producer.send(TOPIC, key=page_id.encode(), value=events.encode(event))
    producer.flush()
    producer.close()


def raw_rate(bootstrap: str, count: int) -> float:
    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=[bootstrap],
        group_id="raw-baseline",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
        max_poll_interval_ms=3000,
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
    )
    seen, first = 0, None
    while seen < count:
        for batch in consumer.poll(timeout_ms=500).values():
            first = first or time.monotonic()
            seen += len(batch)
    rate = seen / (time.monotonic() - first)
    consumer.close()
    return rate


def processed(engine) -> int:
    with engine.connect() as c:
        return c.execute(text("SELECT count(*) FROM processed_events")).scalar_one()


def aggregator_run(
    bootstrap: str,
    url: str,
    count: int,
    memory_marks: tuple[int, ...] = (),
    checkout: Path | None = None,
    group: str = "aggregator",
    history_size: tuple[int, int] = (0, 0),
):
    env = {
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
        "KOE_CONSUMER_GROUP": group,
        **FAST,
        **EXTRA_ENV,
        **code_env("aggregator", checkout),
    }
    subprocess.run(
        [sys.executable, "-m", "aggregator.migrate"], env={**os.environ, **env}, check=True
    )
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    if history_size[0]:
        t = time.monotonic()
        # Ending yesterday: today's counts are the events'.
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        filled = history.fill(engine, *history_size, yesterday)
        rows = ", ".join(f"{table} {n:,}" for table, n in filled.items())
        print(f"  history filled in {time.monotonic() - t:.0f}s: {rows}")
    memory = {}
    with process([sys.executable, "-m", "aggregator.consumer"], env) as proc:
        wait(lambda: processed(engine) > 0, 120, "the aggregator's first batch")
        start, done_at_start = time.monotonic(), processed(engine)
        for mark in memory_marks:
            wait(lambda mark=mark: processed(engine) >= mark, 3600, f"{mark} events")
            memory[mark] = rss_mib(proc.pid)
        wait(lambda: processed(engine) >= count, 3600, "every event counted")
        rate = (count - done_at_start) / (time.monotonic() - start)
        memory["end"] = rss_mib(proc.pid)
    engine.dispose()
    return rate, memory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=2_000)
    parser.add_argument(
        "--memory-events",
        type=int,
        default=0,
        help="also measure memory from 10k to this many events (e.g. 1000000)",
    )
    parser.add_argument(
        "--history-pages",
        type=int,
        default=0,
        help="first fill the DB with this many pages of history (history.py), e.g. 10000",
    )
    parser.add_argument("--history-days", type=int, default=730)
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of the code before a change, run on the same events",
    )
    args = parser.parse_args()

    broker = LocalBroker().start()
    try:
        ensure_topics([broker.bootstrap])
        t = time.monotonic()
        produce(broker.bootstrap, args.events, args.pages)
        print(
            f"aggregator: {args.events:,} events over {args.pages:,} pages "
            f"(produced in {time.monotonic() - t:.1f}s)"
        )
        raw = raw_rate(broker.bootstrap, args.events)
        size = (args.history_pages, args.history_days)
        if args.history_pages:
            print(
                f"  on a DB already holding {args.history_pages:,} pages × "
                f"{args.history_days} days of history (bench/history.py)"
            )
        # With --before, the runs go before, after, after, before and each side's rate
        # is the mean of its two: whichever ran second was ~25% slower with the very
        # same code (an A/A run: PostgreSQL still writing out the previous fill), and
        # a fixed order put that on one side.
        order = [True, False, False, True] if args.before else [False]
        rates: dict[bool, list[float]] = {True: [], False: []}
        for run_number, is_before in enumerate(order):
            with pg_database() as url:
                rate, _ = aggregator_run(
                    broker.bootstrap,
                    url,
                    args.events,
                    checkout=args.before if is_before else None,
                    group=f"run-{run_number}",
                    history_size=size,
                )
            rates[is_before].append(rate)
        agg = sum(rates[False]) / len(rates[False])
        before = sum(rates[True]) / len(rates[True]) if args.before else 0.0
        print(f"  raw kafka-python consumer  {raw:10,.0f} events/s")
        if args.before:
            each = ", ".join(f"{r:,.0f}" for r in rates[True])
            print(f"  aggregator before ({args.before}) {before:10,.0f} events/s ({each})")
            print(f"  ratio before/raw: {before / raw:.2f}x")
        each = ", ".join(f"{r:,.0f}" for r in rates[False])
        print(f"  aggregator (PostgreSQL)    {agg:10,.0f} events/s ({each})")
        print(f"  ratio aggregator/raw: {agg / raw:.2f}x (target ≥ 0.50x)")
        if args.before:
            print(f"  ratio after/before: {agg / before:.2f}x")
    finally:
        broker.stop()

    if args.memory_events:
        broker = LocalBroker().start()
        try:
            ensure_topics([broker.bootstrap])
            produce(broker.bootstrap, args.memory_events, args.pages)
            with pg_database() as url:
                _, memory = aggregator_run(
                    broker.bootstrap, url, args.memory_events, memory_marks=(10_000,)
                )
            growth = memory["end"] / memory[10_000]
            print(
                f"aggregator memory (RSS): {memory[10_000]:.1f} MiB after 10,000 events, "
                f"{memory['end']:.1f} MiB after {args.memory_events:,} "
                f"({growth:.2f}x; target ≤ 1.10x)"
            )
        finally:
            broker.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
