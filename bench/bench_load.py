"""Load: every koe process on this machine (PostgreSQL, the Tansu broker, the relay, the
aggregator and notifier consumers, the web apps under gunicorn) and wrk on loopback in
processes of their own, sharing the 2 cores. Target (issue 6): ≥ 1,000 responses/s
sustained for 2 minutes, zero 5xx, the stats caught up within seconds of the end, and
the API's accepted count, the feedback DB, the topic and the aggregator agreeing exactly.

The load (tests/load_support.py, shared with tests/faults/test_load.py): a sustained
wrk for --duration, and every --burst-every seconds a second wrk adding
--burst-connections for --burst-seconds. Every request is another citizen (its own
User-Agent and client_token) on one of --pages pages, so koe keeps a token row per
page view as with real traffic. wrk is one address, so one source: its budgets are
lifted (support.LIFTED_BUDGETS; the budget upsert runs the same either way), and so
are the per-source cap and the page threshold (KOE_COUNT_PER_SOURCE_DAY,
KOE_PAGE_MIN_SOURCES); the aggregator does the same work either way.

The baseline, in the same run: bench/bare_app.py (parse the JSON, answer 202) under the
same gunicorn settings and the same wrk plan, for --baseline-duration. CPU per process
comes from psutil over the load window (the deadline of the sustained stream).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench_ingest import gunicorn
from common import REPO, free_port, pg_database, process, wait

# The load and the exactness check are shared with the fault test of the same name.
sys.path.insert(0, str(REPO / "tests"))
import load_support  # noqa: E402
from koe_devkit.local_stack import LocalStack  # noqa: E402
from support import API_TOKEN, CHALLENGE_KEY, LIFTED_BUDGETS, SITE, Koe  # noqa: E402

MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=120, help="seconds of load")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--burst-every", type=int, default=20)
    parser.add_argument("--burst-seconds", type=int, default=4)
    parser.add_argument("--burst-connections", type=int, default=48)
    parser.add_argument("--pages", type=int, default=200)
    # KOE_WEB_WORKERS' default (README, docker-compose.yml): 2 per web app on 2 cores.
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per web app")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class")
    parser.add_argument("--threads", type=int, default=1, help="threads per gthread worker")
    parser.add_argument("--baseline-duration", type=int, default=30)
    args = parser.parse_args()

    plan = load_support.Plan(
        seconds=args.duration,
        connections=args.connections,
        burst_every=args.burst_every,
        burst_seconds=args.burst_seconds,
        burst_connections=args.burst_connections,
        pages=args.pages,
    )
    workdir = Path(tempfile.mkdtemp(prefix="koe-load-"))
    web = {"KOE_WEB_WORKERS": str(args.workers)}
    if args.worker_class != "sync":
        web["GUNICORN_CMD_ARGS"] = f"--worker-class {args.worker_class} --threads {args.threads}"
    gunicorn_says = f"gunicorn --workers {args.workers} --worker-class {args.worker_class}" + (
        f" --threads {args.threads}" * (args.worker_class == "gthread")
    )

    bare = baseline(plan, args, web, workdir / "bare")
    with contextlib.ExitStack() as stack:
        koe = start_koe(stack, web, workdir / "var")
        measured = measure(koe, plan, workdir / "koe")

    print(f"load: all of koe on this machine's 2 cores, PostgreSQL, web apps under {gunicorn_says}")
    print(f"  wrk on loopback: {plan.describe()}")
    report(plan, bare, measured)


# -- the baseline -----------------------------------------------------------------------


def baseline(plan: load_support.Plan, args, web: dict[str, str], workdir: Path):
    port = free_port()
    env = {"PYTHONPATH": str(REPO / "bench"), **web}
    short = dataclasses.replace(plan, seconds=args.baseline_duration)
    with process(gunicorn("bare_app:app", port, args.workers), env, port):
        return load_support.run(f"http://127.0.0.1:{port}/api/v1/feedback", short, workdir)


# -- koe --------------------------------------------------------------------------------


def start_koe(stack: contextlib.ExitStack, web: dict[str, str], var: Path) -> Koe:
    urls = {s: stack.enter_context(pg_database()) for s in ("feedback", "aggregator", "notifier")}
    settings = ("KOE_", "KAFKA_", "SMTP_", "GUNICORN_", "FEEDBACK_", "AGGREGATOR_", "NOTIFIER_")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(settings)},
        "KOE_API_TOKEN": API_TOKEN,
        # load_support signs each citizen's proof of work with it.
        "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
        "KOE_ALLOWED_ORIGINS": SITE,
        "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
        "KOE_BROKER_PORT": str(free_port()),
        "SMTP_PORT": str(free_port()),
        **{f"KOE_{s.upper()}_PORT": str(free_port()) for s in urls},
        **{f"{s.upper()}_DATABASE_URL": url for s, url in urls.items()},
        # See the docstring: nothing of the load may be refused by a budget, nor left
        # out of the counts as one source's excess (wrk is one address).
        **LIFTED_BUDGETS,
        "KOE_COUNT_PER_SOURCE_DAY": "1000000",
        "KOE_PAGE_MIN_SOURCES": "1",
        **web,
    }
    local = LocalStack.from_env(env, var)
    stack.callback(local.stop)
    local.start_infrastructure()
    local.start_all()
    # The load starts once both consumers hold their partitions (Tansu's join takes ~2 s).
    for name in ("aggregator-consumer", "notifier-consumer"):
        log = var / "log" / f"{name}.log"
        wait(lambda log=log: "partitions assigned" in log.read_text(), 60, f"{name} to join")
    return Koe(local)


class Measured:
    """What one load against koe showed (the numbers report() prints)."""

    def __init__(self):
        self.samples: list[load_support.Sample] = []
        self.totals: list[tuple[float, int]] = []  # (time, Σ n in the stats API) after the end
        self.cpu_start: dict[str, dict[int, float]] = {}
        self.cpu_end: dict[str, dict[int, float]] = {}
        self.window = 0.0
        self.rss_start = self.rss_end = 0.0
        self.last_accepted = 0.0  # when the API accepted the load's last response
        self.caught_up_after: float | None = None  # from then until the stats API counts all
        self.load: load_support.Load
        self.agreement: load_support.Agreement
        self.wrk_cpu = 0.0


def measure(koe: Koe, plan: load_support.Plan, workdir: Path) -> Measured:
    m = Measured()
    probe = load_support.Probe(koe)
    aggregator = psutil.Process(koe.stack.processes["aggregator-consumer"].popen.pid)
    m.rss_start = aggregator.memory_info().rss / MIB
    children_before = _children_cpu()
    m.cpu_start = cpu_snapshot(koe.stack)
    started = time.time()
    next_sample = 0.0

    def watch(now: float, deadline: int) -> None:
        nonlocal next_sample
        if now < deadline:
            if now >= next_sample:
                m.samples.append(probe.sample())
                next_sample = now + 1
            return
        if not m.cpu_end:
            m.cpu_end = cpu_snapshot(koe.stack)
            m.window = now - started
        m.totals.append((time.time(), sum(load_support.counted_per_page(koe).values())))

    m.load = load_support.run(
        koe.url("feedback", "/api/v1/feedback"), plan, workdir, tick=watch, tick_every=0.25
    )
    if not m.cpu_end:  # the last wrk ended within a tick of the deadline
        m.cpu_end = cpu_snapshot(koe.stack)
        m.window = time.time() - started
    m.wrk_cpu = _children_cpu() - children_before
    m.last_accepted = probe.newest_response_at()
    probe.close()
    accepted = len(set(m.load.accepted_ids))
    give_up = time.monotonic() + 300
    while not m.totals or m.totals[-1][1] < accepted and time.monotonic() < give_up:
        m.totals.append((time.time(), sum(load_support.counted_per_page(koe).values())))
        time.sleep(0.1)
    caught = next((t for t, total in m.totals if total >= accepted), None)
    m.caught_up_after = None if caught is None else caught - m.last_accepted
    m.rss_end = aggregator.memory_info().rss / MIB
    m.agreement = load_support.Agreement.measure(koe, m.load)
    return m


# -- CPU --------------------------------------------------------------------------------


def _children_cpu() -> float:
    """CPU seconds of this process's ended children: the wrk processes, once reaped."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu(p: psutil.Process) -> float:
    times = p.cpu_times()
    return times.user + times.system


def cpu_groups(stack: LocalStack) -> dict[str, list[psutil.Process]]:
    groups: dict[str, list[psutil.Process]] = {}
    for name, proc in stack.processes.items():
        main = psutil.Process(proc.popen.pid)
        if proc.port:  # a gunicorn: its workers apart from the master
            groups[f"{name} workers"] = main.children()
            groups[f"{name} master"] = [main]
        else:
            groups[name] = [main]
    groups["broker (Tansu)"] = [psutil.Process(stack.broker.process.pid)]
    groups["SMTP sink"] = [psutil.Process(stack.sink.pid)]
    databases = {s: stack.env[f"{s.upper()}_DATABASE_URL"].rsplit("/", 1)[1] for s in SERVICES}
    backends: dict[str, list[psutil.Process]] = {s: [] for s in SERVICES}
    shared = []
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info["name"] != "postgres":
            continue
        title = " ".join(p.info["cmdline"] or ())
        service = next((s for s, db in databases.items() if f" {db} " in title), None)
        if service:
            backends[service].append(p)
        elif not title.startswith("postgres: ") or any(w in title for w in PG_SHARED):
            shared.append(p)
    for service, procs in backends.items():
        groups[f"postgres backends ({service} DB)"] = procs
    groups["postgres shared (WAL writer, checkpointer, …)"] = shared
    groups["this harness (samples, stats polls)"] = [psutil.Process()]
    return groups


SERVICES = ("feedback", "aggregator", "notifier")
PG_SHARED = ("checkpointer", "background writer", "walwriter", "autovacuum", "logical replication")


def cpu_snapshot(stack: LocalStack) -> dict[str, dict[int, float]]:
    snapshot: dict[str, dict[int, float]] = {}
    for group, procs in cpu_groups(stack).items():
        snapshot[group] = {}
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                snapshot[group][p.pid] = _cpu(p)
    times = psutil.cpu_times()
    snapshot["machine"] = {0: sum(times) - times.idle - getattr(times, "iowait", 0.0)}
    return snapshot


def cpu_percent(m: Measured) -> dict[str, float]:
    """Per group: % of one core over the load window (a process started in the window
    counts from its start)."""
    return {
        group: 100
        * sum(end - m.cpu_start.get(group, {}).get(pid, 0.0) for pid, end in pids.items())
        / m.window
        for group, pids in m.cpu_end.items()
    }


# -- the report -------------------------------------------------------------------------


def age_of_newest_counted(samples: list[load_support.Sample]) -> list[float]:
    """At each sample, how long before it the feedback DB held as many responses as the
    aggregator had then counted: the age of the newest response counted (interpolated)."""
    ages = []
    for i, s in enumerate(samples):
        j = next((k for k in range(i + 1) if samples[k].responses >= s.counted), i)
        if j == 0:
            ages.append(s.at - samples[0].at)
            continue
        before, after = samples[j - 1], samples[j]
        share = (s.counted - before.responses) / max(1, after.responses - before.responses)
        ages.append(s.at - (before.at + share * (after.at - before.at)))
    return ages


def _latency(run: load_support.WrkRun) -> str:
    return f"p50 {run.latency_us['p50'] / 1000:6.1f} ms  p99 {run.latency_us['p99'] / 1000:7.1f} ms"


def _rate(load: load_support.Load) -> float:
    return len(load.accepted_ids) / load.seconds


def report(plan: load_support.Plan, bare: load_support.Load, m: Measured) -> None:
    load = m.load
    koe_rate, bare_rate = _rate(load), _rate(bare)
    sustained = [r for r in load.runs if r.name == "sustained"][0]
    bursts = [r for r in load.runs if r.name == "burst"]
    print(
        f"  bare Flask, {bare.seconds:.0f} s      {bare_rate:8.0f} req/s  "
        f"{_latency(bare.runs[0])}  (the sustained stream's)"
    )
    print(
        f"  koe, {load.seconds:.0f} s            {koe_rate:8.0f} responses/s accepted  "
        f"{_latency(sustained)}  (the sustained stream's)"
    )
    if bursts:
        worst = max(bursts, key=lambda r: r.latency_us["p99"])
        print(
            f"    of which in bursts: {sum(len(r.ids) for r in bursts):,} responses; "
            f"the worst burst's {_latency(worst)}"
        )
    print(f"  ratio koe/bare: {koe_rate / bare_rate:.2f}x; target ≥ 1,000 responses/s")

    statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(load.statuses.items()))
    print(
        f"  answers: {statuses}; non-2xx {sum(load.statuses.values()) - load.count(200, 299)}, "
        f"5xx {load.count(500, 599)}, unanswered {load.unanswered}, "
        f"socket errors {load.socket_errors}"
    )
    if load.count(200, 299) != sum(load.statuses.values()) or load.unanswered:
        print("  !!!!!!!! NOT EVERY REQUEST WAS ACCEPTED: see the answers above !!!!!!!!")

    ages = sorted(age_of_newest_counted(m.samples))
    behind = max((s.responses - s.counted for s in m.samples), default=0)
    if ages:
        print(
            f"  lag while loading (sampled each second): newest counted response "
            f"{ages[len(ages) // 2]:.1f} s old at the median, {ages[-1]:.1f} s at worst; "
            f"at most {behind:,} responses stored but not counted"
        )
    caught = "never (5 min)" if m.caught_up_after is None else f"{m.caught_up_after:.1f} s"
    print(
        f"  stats API counted every accepted response {caught} after the last was accepted "
        f"(that was {m.last_accepted - load.stopped:.1f} s after the last request was started)"
    )
    backlog = max((s.unsent for s in m.samples), default=0)
    print(f"  relay backlog peak: {backlog:,} unsent outbox rows")
    print(
        f"  aggregator consumer RSS: {m.rss_start:.1f} MiB at the start, {m.rss_end:.1f} MiB "
        f"at the end ({m.rss_end / m.rss_start:.2f}x)"
    )

    print("agreement (must be exact):")
    for line in m.agreement.table():
        print(line)
    problems = m.agreement.problems()
    for problem in problems:
        print(f"  !!!!!!!! {problem}")
    if not problems:
        print("  exact: every accepted response stored, on the topic and counted once")

    shares = cpu_percent(m)
    machine = shares.pop("machine")
    shares["wrk (load generator)"] = 100 * m.wrk_cpu / m.window
    print(f"CPU over the load window ({m.window:.0f} s), % of one core (2 cores = 200%):")
    for group, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {group:48} {pct:5.1f}%")
    print(f"  {'machine, all processes':48} {machine:5.1f}%")
    print(f"  {'of which not koe, wrk or this harness':48} {machine - sum(shares.values()):5.1f}%")


if __name__ == "__main__":
    main()
