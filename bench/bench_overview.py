"""The overview (funnel plots) before and after a change, in one run (issue 13).

Fills PostgreSQL as bench_read_side.py does (history.py: N pages x D days, rollups
built), then, round after round, times one page's detail view, /overview and
/overview?window=all through the app under this checkout's code and under another's
(--baseline, e.g. `git archive main services libs | tar -x -C /tmp/before`), each in its
own process, alternating. Prints the medians, after / before, the overview / detail
ratio and the ratio between the sizes of city.

Usage: python bench/bench_overview.py --baseline DIR [--pages 1000 10000] [--days 730]
       [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import history  # noqa: E402
from aggregator.accounts.services import create_account  # noqa: E402
from aggregator.app import create_app  # noqa: E402
from aggregator.migrate import migrate  # noqa: E402
from bench_read_side import ADMIN, PASSWORD, bench_settings, fill, signed_in_client  # noqa: E402
from common import REPO, code_env, pg_database  # noqa: E402
from koe_directory import load_directory  # noqa: E402
from koe_kit.db import session_factory, transaction  # noqa: E402

SCREENS = {
    "page detail": f"/pages/{history.page_id(1)}",
    "overview (28d)": "/overview",
    "overview (all)": "/overview?window=all",
}


def time_screens(url: str) -> dict[str, tuple[float, int]]:
    """In this process (whichever code is on the path): seconds and bytes per screen,
    after one warm-up request each."""
    app = create_app(bench_settings(url))
    client = signed_in_client(app)
    timings = {}
    for name, path in SCREENS.items():
        client.get(path).close()
        started = time.perf_counter()
        body = client.get(path).get_data()
        timings[name] = (time.perf_counter() - started, len(body))
    app.extensions["koe.engine"].dispose()
    return timings


def one_round(url: str, checkout: Path | None) -> dict[str, tuple[float, int]]:
    done = subprocess.run(
        [sys.executable, __file__, "--time", url],
        env={**os.environ, **code_env("aggregator", checkout)},
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return json.loads(done.stdout)


def run(pages: int, days: int, rounds: int, baseline: Path) -> dict[str, dict[str, list]]:
    with pg_database() as url:
        migrate(url)
        settings = bench_settings(url)
        filled = fill(url, pages, days, datetime.now(settings.timezone).date())
        print(f"  N={pages:,}: {filled['daily_counts']:,} daily_counts rows", flush=True)
        app = create_app(settings)
        with transaction(session_factory(app.extensions["koe.engine"])) as session:
            directory = load_directory(REPO / "divisions.yaml")
            create_account(session, directory, email=ADMIN, password=PASSWORD, admin=True)
        app.extensions["koe.engine"].dispose()
        samples: dict[str, dict[str, list]] = {"before": {}, "after": {}}
        for _ in range(rounds):
            for label, checkout in (("before", baseline), ("after", None)):
                for name, sample in one_round(url, checkout).items():
                    samples[label].setdefault(name, []).append(sample)
        return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="a checkout with the code before")
    parser.add_argument("--pages", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--time", help=argparse.SUPPRESS)  # a round's child process
    args = parser.parse_args()
    if args.time:
        print(json.dumps(time_screens(args.time)))
        return
    if args.baseline is None:
        parser.error("--baseline is required")
    print(f"bench_overview: D={args.days} days, median of {args.rounds} alternating rounds")
    medians = {}
    for n in args.pages:
        samples = run(n, args.days, args.rounds, args.baseline.resolve())
        medians[n] = {
            label: {
                name: (statistics.median(s for s, _ in got), got[-1][1])
                for name, got in by_name.items()
            }
            for label, by_name in samples.items()
        }
    print(
        f"{'N':>8} {'screen':<16}{'before ms':>11}{'after ms':>10}{'after/before':>14}"
        f"{'/detail before':>16}{'/detail after':>15}{'KB before':>11}{'KB after':>10}"
    )
    for n, m in medians.items():
        for name in SCREENS:
            (b, b_size), (a, a_size) = m["before"][name], m["after"][name]
            b_detail, a_detail = m["before"]["page detail"][0], m["after"]["page detail"][0]
            print(
                f"{n:>8,} {name:<16}{b * 1e3:>11.1f}{a * 1e3:>10.1f}{a / b:>14.2f}"
                f"{b / b_detail:>16.1f}{a / a_detail:>15.1f}"
                f"{b_size / 1e3:>11.0f}{a_size / 1e3:>10.0f}"
            )
    ns = sorted(medians)
    for small, large in zip(ns, ns[1:], strict=False):
        print(f"\nratio N={large:,} / N={small:,}:")
        for name in SCREENS:
            before = medians[large]["before"][name][0] / medians[small]["before"][name][0]
            after = medians[large]["after"][name][0] / medians[small]["after"][name][0]
            print(f"  {name:<16} before {before:>6.2f}x   after {after:>6.2f}x")


if __name__ == "__main__":
    main()
