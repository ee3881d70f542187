"""A sustained stream of citizens with bursts, through gunicorn on PostgreSQL: nothing
refused, and every response accepted is stored, published and counted exactly once.
Only exactness is asserted here; bench/bench_load.py measures how fast."""

from __future__ import annotations

import pytest

import load_support
from koe_devkit.testing import wait_until

pytestmark = pytest.mark.e2e

# Modest: a few connections with a pause, so this runs beside other tests on 2 cores.
PLAN = load_support.Plan(
    seconds=24,
    connections=4,
    pause_ms=5,
    burst_every=8,
    burst_seconds=3,
    burst_connections=12,
    pages=40,
)


def test_a_sustained_load_with_bursts_is_counted_exactly_once(koe_factory, figures, tmp_path):
    koe = koe_factory()
    url = koe.url("feedback", "/api/v1/feedback")
    probe = load_support.Probe(koe)
    samples: list[load_support.Sample] = []

    def watch(now: float, deadline: int) -> None:
        samples.append(probe.sample())

    load = load_support.run(url, PLAN, tmp_path / "wrk", tick=watch, tick_every=2)
    probe.close()

    statuses = dict(load.statuses)
    assert load.count(500, 599) == 0, f"5xx under load: {statuses}"
    assert load.count(200, 299) == sum(statuses.values()), f"refused under load: {statuses}"
    assert load.unanswered == 0 and load.socket_errors == 0
    accepted = len(load.accepted_ids)
    assert accepted >= 200, "too little load to prove anything"
    assert len(load.runs) == 1 + len(PLAN.bursts()) >= 3, "the bursts must have run"
    assert any(0 < s.counted < s.responses for s in samples if s.at < load.stopped), (
        "the aggregator must be counting while responses still arrive"
    )

    def counted() -> int:
        return sum(load_support.counted_per_page(koe).values())

    wait_until(lambda: counted() >= accepted, timeout_s=120, what="every response counted")
    agreement = load_support.Agreement.measure(koe, load)
    assert agreement.problems() == []
    assert sum(agreement.counted.values()) == accepted

    figures(
        fault=f"sustained load with bursts ({PLAN.seconds} s, gunicorn, PostgreSQL)",
        in_flight=accepted,
        lost=agreement.missing_from_aggregator,
        doubled=sum(agreement.counted.values()) - accepted + agreement.missing_from_aggregator,
    )
