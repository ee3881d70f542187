"""A load of citizens for a running koe, shared by bench/bench_load.py (which prints how
fast) and tests/faults/test_load.py (which asserts that nothing was lost or doubled).

The load generator is wrk, in processes of its own on loopback (load_citizens.lua makes
every request another citizen on one of many pages). A sustained stream runs for the
whole plan; every `burst_every` seconds a second wrk adds `burst_connections` for
`burst_seconds`. No request is started after the plan's end; wrk then runs on for
at most `grace_s`, until those in flight are answered and counted (wrk's own -d would
drop them unanswered while koe may still have accepted them).

koe's JSON API wants a solved challenge per answer (feedback.challenges): before wrk
starts, each process gets a pool of them, one a line with its citizen's page, made and
signed here with the stack's KOE_CHALLENGE_KEY as koe would make them, with the number
known (a load of answers, not of the work; bench/bench_challenge.py measures the work).

Afterwards `Agreement` puts four counts side by side, per page: what the API accepted
(the ids in wrk's 2xx answers), the feedback database's rows, the distinct response ids
on the topic, and what the aggregator's stats API counts.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

from sqlalchemy import text

from koe_kit import events
from koe_kit.db import make_engine
from koe_kit.kafka import read_topic
from support import CHALLENGE_KEY, SITE, Koe, signed_proof

SCRIPT = Path(__file__).with_name("load_citizens.lua")
TOPIC = "koe.feedback.submitted.v1"
_TAGS = count(int(time.time()) % 100_000 * 100)  # wrk process numbers, unique per run
# Two divisions' URL prefixes (divisions.yaml) and a section nobody owns (the fallback).
SECTIONS = (("/shisei/dx/", "somu-dx"), ("/kurashi/gomi/", "kankyo-gomi"), ("/kanko/spot/", None))
# More answers a second than koe gives here: a wrk's pool of proofs never runs dry (one
# that did would send answers without a proof, refused: 403s the load reports).
MOST_PER_SECOND = 2500


@dataclass(frozen=True)
class Plan:
    seconds: int
    connections: int
    burst_every: int = 20
    burst_seconds: int = 4
    burst_connections: int = 48
    pause_ms: int = 0  # a connection's pause between requests: 0 is as fast as koe answers
    pages: int = 200
    grace_s: int = 30  # for the answers in flight at the end; wrk stops once it has them

    def bursts(self) -> list[int]:
        """Seconds into the run at which a burst starts; each ends before the run does."""
        if self.burst_every <= 0 or self.burst_connections <= 0:
            return []
        last = self.seconds - self.burst_seconds
        return list(range(self.burst_every, last + 1, self.burst_every))

    def describe(self) -> str:
        bursts = (
            f"+{self.burst_connections} connections for {self.burst_seconds} s every "
            f"{self.burst_every} s ({len(self.bursts())} bursts)"
            if self.bursts()
            else "no bursts"
        )
        pace = f", {self.pause_ms} ms pause between a connection's requests" * bool(self.pause_ms)
        return (
            f"{self.seconds} s of wrk -c {self.connections}{pace}, {bursts}, "
            f"{self.pages} pages, one citizen (User-Agent, client_token) per request"
        )


@dataclass
class WrkRun:
    """One wrk process: what it sent and what it was answered."""

    name: str
    connections: int
    popen: subprocess.Popen[str]
    out: Path
    sent: int = 0
    answered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    ids: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    latency_us: dict[str, float] = field(default_factory=dict)

    def stop_when_answered(self) -> None:
        """End wrk once the script says every request it sent has been answered."""
        stopped = self.out.with_name(self.out.name + ".stopped")
        if self.popen.poll() is None and stopped.exists():
            stopped.unlink()
            self.popen.send_signal(signal.SIGINT)

    def finish(self) -> WrkRun:
        stdout, stderr = self.popen.communicate()
        if self.popen.returncode != 0 or not self.out.exists():
            raise RuntimeError(f"wrk ({self.name}) failed: {stderr or stdout}")
        for line in self.out.read_text().splitlines():
            kind, *rest = line.split()
            if kind in ("sent", "answered"):
                setattr(self, kind, getattr(self, kind) + int(rest[0]))
            elif kind == "status":
                self.statuses[int(rest[0])] += int(rest[1])
            elif kind == "id":
                self.ids.append(rest[0])
            elif kind == "error":
                self.errors[rest[0]] += int(rest[1])
            elif kind == "latency_us":
                self.latency_us[rest[0]] = float(rest[1])
        return self


@dataclass
class Load:
    started: float  # epoch seconds
    stopped: float  # the deadline: no request was started after it
    runs: list[WrkRun]

    @property
    def seconds(self) -> float:
        return self.stopped - self.started

    @property
    def accepted_ids(self) -> list[str]:
        return [i for run in self.runs for i in run.ids]

    @property
    def statuses(self) -> Counter[int]:
        return sum((run.statuses for run in self.runs), Counter())

    def count(self, lowest: int, highest: int) -> int:
        return sum(n for status, n in self.statuses.items() if lowest <= status <= highest)

    @property
    def unanswered(self) -> int:
        """Requests sent but never answered: koe may have accepted them unseen."""
        return sum(run.sent - run.answered for run in self.runs)

    @property
    def socket_errors(self) -> int:
        return sum(sum(run.errors.values()) for run in self.runs)


def write_pool(path: Path, size: int, pages: int, key: str = CHALLENGE_KEY) -> Path:
    """`size` citizens for load_citizens.lua, one a line: page URL, division (- for
    none) and the `altcha` for that page, of a challenge signed with `key`."""
    rng = random.Random(path.name)
    with path.open("w", encoding="utf-8") as out:
        for _ in range(size):
            page = rng.randrange(pages)
            section, division = SECTIONS[page % len(SECTIONS)]
            url = f"{SITE}{section}{page}.html"
            proof = signed_proof(url, number=rng.randrange(1000), key=key)
            out.write(f"{url} {division or '-'} {proof}\n")
    return path


def start_wrk(
    url: str, plan: Plan, connections: int, deadline: int, name: str, workdir: Path, pool: Path
):
    tag = next(_TAGS)
    out = workdir / f"wrk-{tag}.txt"
    env = {
        **os.environ,
        "KOE_LOAD_POOL": str(pool),
        "KOE_LOAD_TAG": str(tag),
        "KOE_LOAD_DEADLINE": str(deadline),
        "KOE_LOAD_PAUSE_MS": str(plan.pause_ms),
        "KOE_LOAD_OUT": str(out),
    }
    seconds = math.ceil(deadline - time.time()) + plan.grace_s
    # A request unanswered for that long is timed out (and left unanswered at the end).
    timeout = plan.grace_s
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s",
            "--timeout", f"{timeout}s", "-s", str(SCRIPT), url]  # fmt: skip
    popen = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return WrkRun(name, connections, popen, out)


def run(
    url: str,
    plan: Plan,
    workdir: Path,
    tick: Callable[[float, int], None] = lambda now, deadline: None,
    tick_every: float = 1.0,
) -> Load:
    """Load `url` (the feedback endpoint) as `plan` says; `tick(now, deadline)` is called
    about every `tick_every` seconds until the last wrk has ended, to watch koe."""
    workdir.mkdir(parents=True, exist_ok=True)
    # Made before the clock starts: a pool for the whole run takes seconds to write.
    pools = [
        write_pool(workdir / f"pool-{n}.txt", MOST_PER_SECOND * (seconds + 2), plan.pages)
        for n, seconds in enumerate([plan.seconds] + [plan.burst_seconds] * len(plan.bursts()))
    ]
    started = time.time()
    # Whole seconds: the Lua script only has os.time() to compare against.
    deadline = math.ceil(started) + plan.seconds
    runs = [start_wrk(url, plan, plan.connections, deadline, "sustained", workdir, pools[0])]
    bursts = [started + at for at in plan.bursts()]
    next_tick = started
    while bursts or any(r.popen.poll() is None for r in runs):
        now = time.time()
        if bursts and now >= bursts[0]:
            bursts.pop(0)
            end = math.ceil(now) + plan.burst_seconds
            pool = pools[len(runs)]
            runs.append(start_wrk(url, plan, plan.burst_connections, end, "burst", workdir, pool))
        for r in runs:
            r.stop_when_answered()
        if now >= next_tick:
            tick(now, deadline)
            next_tick = now + tick_every
        # Often: a wrk that is done holds gunicorn workers until it has ended (see the script).
        time.sleep(0.02)
    return Load(started, deadline, [r.finish() for r in runs])


# -- what a running koe holds -------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float  # epoch seconds
    responses: int  # rows in the feedback database
    unsent: int  # outbox rows the relay has not yet published (its backlog)
    counted: int  # events the aggregator has counted


class Probe:
    """Cheap counts straight from koe's databases, to watch the pipeline while it runs."""

    def __init__(self, koe: Koe):
        env = koe.stack.env
        self.feedback = make_engine(env["FEEDBACK_DATABASE_URL"])
        self.aggregator = make_engine(env["AGGREGATOR_DATABASE_URL"])

    def sample(self) -> Sample:
        with self.feedback.connect() as c:
            responses, unsent = c.execute(
                text(
                    "SELECT (SELECT count(*) FROM responses),"
                    " (SELECT count(*) FROM outbox WHERE sent_at IS NULL)"
                )
            ).one()
        with self.aggregator.connect() as c:
            counted = c.execute(text("SELECT count(*) FROM processed_events")).scalar_one()
        return Sample(time.time(), responses, unsent, counted)

    def newest_response_at(self) -> float:
        """When the API accepted its latest response (epoch seconds, this machine's clock)."""
        with self.feedback.connect() as c:
            newest = c.execute(text("SELECT max(received_at) FROM responses")).scalar_one()
        return newest.timestamp()

    def close(self) -> None:
        self.feedback.dispose()
        self.aggregator.dispose()


def counted_per_page(koe: Koe) -> Counter[str]:
    """Each page's n over all days, as the stats API reports it."""
    response = koe.stats()
    response.raise_for_status()
    return Counter({p["id"]: p["windows"]["all"]["n"] for p in response.json()["pages"]})


@dataclass
class Agreement:
    """Per page: accepted by the API, rows in the feedback DB, distinct on the topic,
    counted by the aggregator; and the ids where they differ."""

    accepted: Counter[str]
    stored: Counter[str]
    on_topic: Counter[str]
    counted: Counter[str]
    accepted_twice: int  # one id in two 2xx answers (should never be)
    topic_duplicates: int  # messages repeating an id already on the topic (at least once)
    replacements: int  # rows that replace an earlier one (the load makes none)
    missing_from_db: int
    not_accepted_in_db: int
    missing_from_topic: int
    missing_from_aggregator: int  # accepted ids the aggregator never recorded as counted

    @classmethod
    def measure(cls, koe: Koe, load: Load) -> Agreement:
        env = koe.stack.env
        accepted_ids = load.accepted_ids
        accepted = set(accepted_ids)
        feedback = make_engine(env["FEEDBACK_DATABASE_URL"])
        aggregator = make_engine(env["AGGREGATOR_DATABASE_URL"])
        try:
            with feedback.connect() as c:
                rows = c.execute(text("SELECT id, page_id, replaces FROM responses")).all()
            with aggregator.connect() as c:
                processed = set(c.execute(text("SELECT event_id FROM processed_events")).scalars())
        finally:
            feedback.dispose()
            aggregator.dispose()
        page_of = {row.id: row.page_id for row in rows}
        records = read_topic([env["KAFKA_BOOTSTRAP_SERVERS"]], TOPIC, timeout_s=120)
        on_topic: dict[str, str] = {}
        for record in records:
            data = events.decode(record.value)["data"]
            on_topic[data["response_id"]] = data["page_id"]
        return cls(
            accepted=Counter(page_of.get(i, "(not in the feedback DB)") for i in accepted),
            stored=Counter(page_of.values()),
            on_topic=Counter(on_topic.values()),
            counted=+counted_per_page(koe),
            accepted_twice=len(accepted_ids) - len(accepted),
            topic_duplicates=len(records) - len(on_topic),
            replacements=sum(row.replaces is not None for row in rows),
            missing_from_db=len(accepted - page_of.keys()),
            not_accepted_in_db=len(page_of.keys() - accepted),
            missing_from_topic=len(accepted - on_topic.keys()),
            missing_from_aggregator=len(accepted - processed),
        )

    def pages_differing(self) -> list[str]:
        pages = set(self.accepted) | set(self.stored) | set(self.on_topic) | set(self.counted)
        return sorted(
            p
            for p in pages
            if not self.accepted[p] == self.stored[p] == self.on_topic[p] == self.counted[p]
        )

    def problems(self) -> list[str]:
        """Everything that is not exact, in words; empty when all four agree."""
        found = [
            f"{name}: {value}"
            for name, value in (
                ("ids accepted twice", self.accepted_twice),
                ("replacements (the load's citizens should all be distinct)", self.replacements),
                ("accepted ids missing from the feedback DB", self.missing_from_db),
                ("feedback DB rows the load was not told were accepted", self.not_accepted_in_db),
                ("accepted ids missing from the topic", self.missing_from_topic),
                ("accepted ids the aggregator has not counted", self.missing_from_aggregator),
            )
            if value
        ]
        differing = self.pages_differing()
        if differing:
            found.append(
                f"{len(differing)} pages differ, e.g. "
                + ", ".join(
                    f"{p}: accepted {self.accepted[p]}, DB {self.stored[p]}, "
                    f"topic {self.on_topic[p]}, counted {self.counted[p]}"
                    for p in differing[:3]
                )
            )
        return found

    def table(self) -> list[str]:
        pages = len(set(self.accepted) | set(self.counted))
        differing = len(self.pages_differing())
        rows = (
            ("API accepted (ids in wrk's 2xx answers)", sum(self.accepted.values()), ""),
            ("feedback DB, responses rows", sum(self.stored.values()), ""),
            (
                "topic, distinct response ids",
                sum(self.on_topic.values()),
                f"+{self.topic_duplicates} duplicate messages",
            ),
            ("aggregator, Σ n over pages (stats API)", sum(self.counted.values()), ""),
        )
        lines = [f"  {name:42} {n:>9,}  {note}".rstrip() for name, n, note in rows]
        lines.append(f"  pages: {pages}, on which the four counts differ: {differing}")
        return lines
