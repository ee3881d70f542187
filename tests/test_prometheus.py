"""deploy/prometheus/: the alert rules pass their promtool unit tests, the scrape config
and the metrics koe really serves pass promtool's checks, and the Grafana dashboard
names only metrics that exist."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import aggregator.metrics  # noqa: F401  (registers the service's metrics)
import feedback.metrics  # noqa: F401
import notifier.metrics  # noqa: F401
from koe_devkit.local_broker import free_port
from koe_kit import metrics
from koe_kit.kafka import ConsumerLoop, KafkaSettings

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy/prometheus"
# `make test` unpacks Debian's prometheus package there (see the Makefile).
PROMTOOL = os.environ.get("PROMTOOL", str(ROOT / ".tools/prometheus/usr/bin/promtool"))


@pytest.fixture(scope="module")
def promtool() -> str:
    if not Path(PROMTOOL).exists():
        pytest.fail(f"no promtool at {PROMTOOL}: run `make promtool` (or set PROMTOOL)")
    return PROMTOOL


def run(promtool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool, *args], cwd=DEPLOY, input=stdin, capture_output=True, text=True
    )


@pytest.mark.integration
def test_the_alert_rules_pass_their_unit_tests(promtool):
    checked = run(promtool, "check", "rules", "koe-rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(promtool, "test", "rules", "koe-rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@pytest.mark.integration
def test_the_scrape_config_is_valid(promtool):
    checked = run(promtool, "check", "config", "--syntax-only", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.integration
def test_dead_letter_counters_are_served_at_zero_before_the_first_one(promtool):
    """increase() sees the first dead letter only if the series existed before it."""
    ConsumerLoop(
        KafkaSettings(["127.0.0.1:1"], "test"),
        group_id="koe-zero-test",
        topic="koe.feedback.submitted.v1",
        handler=lambda batch: None,
    )
    port = free_port()
    metrics.serve(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        served = response.read().decode()
    labels = '{group="koe-zero-test",topic="koe.feedback.submitted.v1"}'
    for name in (
        "koe_events_dead_lettered_total",
        "koe_consumer_batch_retries_total",
        "koe_consumer_events_total",
    ):
        assert f"{name}{labels} 0.0" in served.splitlines()
    # An unlabelled counter is served from its import on; other tests in this process may
    # already have counted failures, so only its presence is certain here.
    assert re.search(r"^koe_notifier_emails_failed_total \d", served, re.M)
    linted = run(promtool, "check", "metrics", stdin=served)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def known_series() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        # A labelled metric with no series yet still has its name (a gauge's is the name).
        names.update(sample.name for sample in family.samples)
        if family.type == "gauge":
            names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def rule_and_panel_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = (DEPLOY / "koe-rules.yml").read_text(encoding="utf-8")
    exprs += re.findall(r"expr: \|?\s*(.+?)\n\s+(?:for|labels):", rules, re.S)
    return exprs


def test_the_dashboard_and_rules_name_only_metrics_koe_serves():
    exprs = rule_and_panel_expressions()
    assert len(exprs) >= 15
    used = {name for e in exprs for name in re.findall(r"\bkoe_[a-z_]+", e)}
    missing = used - known_series()
    assert not missing, f"named but never served: {sorted(missing)}"
    assert "koe_events_dead_lettered_total" in used
