"""CPU per response, per process, through the whole ingest pipeline: the feedback API
(gunicorn master and workers), its PostgreSQL backends, the outbox relay, the broker,
the aggregator consumer and its PostgreSQL backends.

For each variant the same wrk load as bench_ingest.py (a citizen a request: its own
client_token, network and proof of work) runs for --seconds; the window then stays
open until the aggregator has counted every stored response, so the relay's and the
aggregator's share of the load is in it. CPU seconds (psutil, user + system) spent
by each process group over the window, divided by the responses stored, is the
figure printed, in ms per response. Idle costs (the relay's polls, the consumer's
heartbeats) are in it as in production, over a window a few seconds long.

The bare Flask endpoint (bare_app.py) under the same gunicorn settings and load is
the baseline; --before DIR runs another checkout's services (e.g. `git worktree add
/tmp/koe-before main`) in the same run, for a before/after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import psutil
from sqlalchemy import create_engine, text

from bench_ingest import MOST_PER_SECOND, asks_proof, gunicorn, proof_pool, wrk
from common import REPO, code_env, free_port, migrate, pg_database, process, wait
from koe_devkit.local_broker import LocalBroker
from koe_kit.kafka import ensure_topics

sys.path.insert(0, str(REPO / "tests"))
from support import CHALLENGE_KEY, LIFTED_BUDGETS  # noqa: E402

FAST_KAFKA = {
    "KAFKA_MAX_POLL_INTERVAL_MS": "3000",
    "KAFKA_SESSION_TIMEOUT_MS": "3000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
}
PG_URL = "postgresql+psycopg://"


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, float]:
    seconds = {}
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = p.cpu_times()
            seconds[p.pid] = times.user + times.system
    return seconds


def backends(database: str) -> list[psutil.Process]:
    """PostgreSQL's backend processes serving `database` (their title names it)."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info["name"] == "postgres" and f" {database} " in " ".join(p.info["cmdline"] or ()):
            found.append(p)
    return found


class Window:
    """CPU seconds of named process groups between start() and stop()."""

    def __init__(self, groups):
        self.groups = groups  # name -> callable returning the group's processes now
        self.start_cpu: dict[str, dict[int, float]] = {}
        self.spent: dict[str, float] = {}

    def start(self) -> None:
        self.start_cpu = {name: cpu_seconds(procs()) for name, procs in self.groups.items()}

    def stop(self) -> None:
        for name, procs in self.groups.items():
            end = cpu_seconds(procs())
            before = self.start_cpu[name]
            # A process born in the window (a new backend) counts from its start.
            self.spent[name] = sum(s - before.get(pid, 0.0) for pid, s in end.items())


def count(url: str, table: str) -> int:
    engine = create_engine(url.replace("postgresql://", PG_URL))
    try:
        with engine.connect() as c:
            # `table` is one of this file's two names, never input.
            return c.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
    finally:
        engine.dispose()


def bare_run(args) -> tuple[int, dict[str, float]]:
    port = free_port()
    env = {"PYTHONPATH": str(REPO / "bench")}
    with process(gunicorn("bare_app:app", port, args.workers), env, port) as master:
        main = psutil.Process(master.pid)
        window = Window({"API (gunicorn)": lambda: [main, *main.children()]})
        window.start()
        result = wrk(f"http://127.0.0.1:{port}/api/v1/feedback", args.seconds, args.connections)
        window.stop()
    print(f"  bare Flask: {result['rps']:.0f} req/s, non-2xx {result['errors']}")
    return round(result["rps"] * args.seconds), window.spent


def koe_run(args, checkout: Path | None, workdir: Path) -> tuple[int, dict[str, float]]:
    broker = LocalBroker().start()
    try:
        ensure_topics([broker.bootstrap])
        with pg_database() as feedback_url, pg_database() as aggregator_url:
            migrate("feedback", feedback_url, checkout)
            migrate("aggregator", aggregator_url, checkout)
            kafka = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, **FAST_KAFKA}
            common = {"KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"), **kafka}
            api_env = {
                **common,
                "DATABASE_URL": feedback_url,
                "KOE_ALLOWED_ORIGINS": "https://www.info.city.tsu.mie.jp",
                "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
                "KOE_CLIENT_KEY": "bench-client-key-" + "x" * 32,
                **LIFTED_BUDGETS,
                "KOE_RATE_LIMIT_MAX": "1000000",
                "KOE_TRUSTED_PROXIES": "1",
                **code_env("feedback", checkout),
            }
            relay_env = {**common, "DATABASE_URL": feedback_url, **code_env("feedback", checkout)}
            aggregator_env = {
                **common,
                "DATABASE_URL": aggregator_url,
                "KOE_CONSUMER_GROUP": "aggregator",
                **code_env("aggregator", checkout),
            }
            # Two pools: a proof the warm-up spent would be refused in the measured run.
            pools = [proof_pool(MOST_PER_SECOND * s) for s in (2, args.seconds)]
            warm_proofs, proofs = pools if asks_proof(checkout) else (None, None)
            port = free_port()
            logs = workdir / ("before" if checkout else "after")
            logs.mkdir(parents=True, exist_ok=True)
            with (
                process(gunicorn("feedback.wsgi:app", port, args.workers), api_env, port) as api,
                process(
                    [sys.executable, "-m", "feedback.relay"], relay_env, log=logs / "relay.log"
                ) as relay,
                process(
                    [sys.executable, "-m", "aggregator.consumer"],
                    aggregator_env,
                    log=logs / "aggregator.log",
                ) as aggregator,
            ):
                url = f"http://127.0.0.1:{port}/api/v1/feedback"
                # Warm up: every worker's first requests, the consumer's group join.
                wrk(url, 2, args.connections, warm_proofs)
                stored = count(feedback_url, "responses")
                wait(
                    lambda: count(aggregator_url, "processed_events") >= stored,
                    120,
                    "the warm-up counted",
                )
                api_main = psutil.Process(api.pid)
                feedback_db = feedback_url.rsplit("/", 1)[1]
                aggregator_db = aggregator_url.rsplit("/", 1)[1]
                window = Window(
                    {
                        "API (gunicorn)": lambda: [api_main, *api_main.children()],
                        "API's PostgreSQL backends": lambda: backends(feedback_db),
                        "relay": lambda: [psutil.Process(relay.pid)],
                        "broker (Tansu)": lambda: [psutil.Process(broker.process.pid)],
                        "aggregator": lambda: [psutil.Process(aggregator.pid)],
                        "aggregator's PostgreSQL backends": lambda: backends(aggregator_db),
                    }
                )
                window.start()
                result = wrk(url, args.seconds, args.connections, proofs)
                print(
                    f"  koe {'before' if checkout else 'after'}: {result['rps']:.0f} req/s, "
                    f"non-2xx {result['errors']}"
                )
                total = count(feedback_url, "responses")
                wait(
                    lambda: count(aggregator_url, "processed_events") >= total,
                    600,
                    "every response counted",
                )
                window.stop()
        return total - stored, window.spent
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--before", type=Path, help="a checkout of the code before a change")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench: needs wrk (apt-get install -y wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="koe-pipeline-"))

    runs = {"bare Flask": bare_run(args)}
    if args.before:
        runs["koe before"] = koe_run(args, args.before, workdir)
    runs["koe"] = koe_run(args, None, workdir)

    print(
        f"CPU ms per response, gunicorn --workers {args.workers}, wrk -c {args.connections} "
        f"for {args.seconds}s, PostgreSQL; window until the aggregator counted them all"
    )
    names = list(runs)
    groups = list(dict.fromkeys(g for _, spent in runs.values() for g in spent))
    print(f"  {'':34}" + "".join(f"{n:>14}" for n in names))
    print(f"  {'responses':34}" + "".join(f"{runs[n][0]:>14,}" for n in names))
    for group in [*groups, "total"]:
        cells = []
        for n in names:
            responses, spent = runs[n]
            value = sum(spent.values()) if group == "total" else spent.get(group)
            cells.append("-" if value is None else f"{1000 * value / responses:.2f}")
        print(f"  {group:34}" + "".join(f"{c:>14}" for c in cells))
    if args.before:
        before, after = runs["koe before"], runs["koe"]
        for group in [*groups, "total"]:
            b = sum(before[1].values()) if group == "total" else before[1].get(group, 0.0)
            a = sum(after[1].values()) if group == "total" else after[1].get(group, 0.0)
            if b:
                print(f"  ratio after/before, {group}: {(a / after[0]) / (b / before[0]):.2f}x")
    bare_ms = 1000 * runs["bare Flask"][1]["API (gunicorn)"] / runs["bare Flask"][0]
    koe_api = 1000 * runs["koe"][1]["API (gunicorn)"] / runs["koe"][0]
    print(f"  ratio koe API / bare Flask: {koe_api / bare_ms:.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
