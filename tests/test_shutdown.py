"""SIGTERM (what `docker compose stop`, a redeploy or a scale-down sends) stops
every koe process cleanly: it finishes the batch or the request in hand, commits,
closes and exits 0; restarted, it goes on where it stopped. Nothing is lost and
nothing counted or emailed twice.

(SIGKILL, the unclean kind, is tests/test_exactly_once.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from kafka import KafkaProducer

from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from koe_kit import events
from support import SITE, alert, drained

pytestmark = pytest.mark.e2e

PAGES = [f"{SITE}/kurashi/gomi/{n}.html" for n in range(4)]
TOTAL = 600


def stop_with_sigterm(koe, name: str) -> int:
    """SIGTERM one process, wait for it, and return its exit code."""
    koe.stack.kill(name, signal.SIGTERM)
    return koe.stack.processes[name].popen.returncode


def log_of(koe, name: str) -> list[dict]:
    text = (koe.stack.var_dir / "log" / f"{name}.log").read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def heartbeat_check(koe, name: str, max_age_s: str = "120") -> int:
    env = {
        **os.environ,
        "KOE_HEARTBEAT_FILE": str(koe.stack.heartbeat_file(name)),
        "KOE_HEARTBEAT_MAX_AGE_S": max_age_s,
    }
    return subprocess.run(
        [sys.executable, "-m", "koe_kit.heartbeat"], env=env, capture_output=True
    ).returncode


def test_sigterm_mid_stream_to_relay_consumer_and_api_loses_and_doubles_nothing(koe_factory):
    # Small batches, so a SIGTERM lands with a batch in hand.
    koe = koe_factory(KOE_BATCH_MAX_MESSAGES="20")
    accepted = {canonical_url(p): 0 for p in PAGES}
    refused_mid_request: list[int] = []

    def citizens() -> None:
        for i in range(TOTAL):
            page = PAGES[i % len(PAGES)]
            body = {
                "page_url": page,
                "answers": {"clarity": ("yes", "neutral", "no")[i % 3]},
                # The widget's retry token: a resend after a lost answer records one response.
                "client_token": str(uuid.uuid4()),
            }
            while True:
                try:
                    response = koe.submit(**body)
                except requests.ConnectionError:
                    time.sleep(0.05)  # the API is restarting: send the same again
                    continue
                break
            if response.status_code == 202:
                accepted[canonical_url(page)] += 1
            else:
                refused_mid_request.append(response.status_code)
            time.sleep(0.02)  # a steady stream, so every stop below lands inside it

    def counted() -> int:
        return sum(koe.page_n(page_id_for_url(url)) for url in accepted)

    sender = threading.Thread(target=citizens)
    sender.start()
    try:
        for floor, name in (
            (60, "feedback-relay"),
            (200, "aggregator-consumer"),
            (340, "feedback-web"),
        ):
            wait_until(lambda floor=floor: sum(accepted.values()) >= floor, what=f"{floor} sent")
            assert stop_with_sigterm(koe, name) == 0, f"{name} did not exit cleanly"
            assert sender.is_alive(), f"{name}: the SIGTERM must land mid-stream to prove anything"
            koe.stack.start(name)
    finally:
        sender.join()

    assert not refused_mid_request, "gunicorn dropped requests it had taken"
    assert sum(accepted.values()) == TOTAL
    wait_until(lambda: counted() == TOTAL, timeout_s=120, what="every response counted")
    for url, n in accepted.items():
        assert koe.page_n(page_id_for_url(url)) == n
    # The loops said why they stopped, after finishing what they held.
    assert any(e["message"] == "relay stopped" for e in log_of(koe, "feedback-relay"))
    assert any(e["message"] == "consumer stopped" for e in log_of(koe, "aggregator-consumer"))


def test_sigterm_to_the_notifier_mid_stream_sends_each_alert_once(koe_factory, broker, smtp_server):
    koe = koe_factory(KOE_BATCH_MAX_MESSAGES="5")
    producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all")
    count = 40
    for n in range(1, count + 1):
        event = alert(n)
        producer.send("koe.alerts.v1", key=event["subject"].encode(), value=events.encode(event))
    producer.flush()
    producer.close()

    wait_until(lambda: len(smtp_server.messages) >= 8, what="the first emails")
    assert heartbeat_check(koe, "notifier-consumer") == 0, "a running loop is healthy"
    assert stop_with_sigterm(koe, "notifier-consumer") == 0
    assert len(smtp_server.messages) < count, "the SIGTERM must land mid-stream"
    # A stopped loop's heartbeat goes stale, and compose's healthcheck says so.
    beat = Path(koe.stack.heartbeat_file("notifier-consumer"))
    os.utime(beat, (time.time() - 600, time.time() - 600))
    assert heartbeat_check(koe, "notifier-consumer") == 1

    koe.stack.start("notifier-consumer")
    wait_until(lambda: len(smtp_server.messages) >= count, what="every alert emailed")
    drained(koe, broker.bootstrap)  # a duplicate, if the restart resent one, is here
    assert len(smtp_server.messages) == count
    assert len({m["Message-ID"] for m in smtp_server.messages}) == count
    assert heartbeat_check(koe, "notifier-consumer") == 0

    # The web apps this test did not need stop cleanly too (gunicorn's graceful stop).
    for name in ("aggregator-web", "notifier-web"):
        assert stop_with_sigterm(koe, name) == 0, name
