"""The mail server failing under a running notifier: away (connection refused), busy
(421 at the greeting or at DATA) or "try later" (451) for a while delays the alerts
and never drops or doubles one; a 550 is for good: the alert is recorded as failed,
dead-lettered with the reason, shown to operators, and the next alert goes out."""

from __future__ import annotations

import os
import signal
import socketserver
import subprocess
import sys
import threading

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from koe_devkit.local_broker import free_port
from koe_devkit.testing import wait_until
from koe_kit.db import make_engine
from koe_kit.kafka import read_topic
from notifier.models import SentAlert
from support import alert, drained, emails_per_alert, publish, wait_for_partitions

pytestmark = pytest.mark.e2e

ALERTS = "koe.alerts.v1"
DEAD_LETTERS = "koe.alerts.dlq.v1"
BEFORE, DURING = range(1, 11), range(11, 31)  # alert numbers sent before and during a fault


def attempts(koe) -> dict[str, SentAlert]:
    """The notifier's record of every alert it tried: status, attempts, last error."""
    engine = make_engine(koe.stack.env["NOTIFIER_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            return {row.alert_id: row for row in connection.execute(select(SentAlert))}
    finally:
        engine.dispose()


def retried_with(koe, error: str, times: int = 2) -> bool:
    """Some alert has been tried `times` or more and last failed with `error`."""
    return any(
        row.status == "retrying" and row.attempts >= times and error in (row.last_error or "")
        for row in attempts(koe).values()
    )


def emailed(smtp_server, numbers: range) -> bool:
    return {alert(n)["id"] for n in numbers} <= set(emails_per_alert(smtp_server.messages))


def publish_alerts(broker, numbers: range) -> None:
    publish(broker.bootstrap, ALERTS, [alert(n) for n in numbers])


def each_emailed_once(koe, broker, smtp_server) -> int:
    """Check every alert was emailed exactly once; returns how many were doubled (0)."""
    drained(koe, broker.bootstrap)  # a second email, if a retry resent one, is here
    per_alert = emails_per_alert(smtp_server.messages)
    assert set(per_alert) == {alert(n)["id"] for n in (*BEFORE, *DURING)}, "an alert was lost"
    assert len(smtp_server.messages) == sum(per_alert.values())
    doubled = sum(n - 1 for n in per_alert.values())
    assert doubled == 0, per_alert.most_common(3)
    return doubled


def test_a_mail_server_refusing_connections_for_a_while_delays_alerts_never_drops_them(
    koe_factory, broker, smtp_server, figures
):
    koe = koe_factory()
    publish_alerts(broker, BEFORE)
    wait_until(lambda: emailed(smtp_server, BEFORE), what="the first alerts emailed")

    smtp_server.stop()
    publish_alerts(broker, DURING)
    wait_until(lambda: retried_with(koe, "ConnectionRefusedError"), what="sends refused, retried")
    assert len(smtp_server.messages) == len(BEFORE)
    smtp_server.start()

    wait_until(lambda: emailed(smtp_server, DURING), what="the delayed alerts emailed")
    doubled = each_emailed_once(koe, broker, smtp_server)
    assert {row.status for row in attempts(koe).values()} == {"sent"}
    figures(
        fault="SMTP server refusing connections, then back",
        in_flight=len(DURING),
        lost=0,
        doubled=doubled,
    )


class _Busy(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"421 4.3.2 too busy, try later\r\n")


class BusyGreeting(socketserver.ThreadingTCPServer):
    """A mail server that greets every connection with 421 and hangs up (RFC 5321 3.8:
    what a server that cannot serve now says). aiosmtpd always greets with 220."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port: int):
        super().__init__(("127.0.0.1", port), _Busy)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> BusyGreeting:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def test_a_mail_server_saying_421_and_451_for_a_while_delays_alerts_never_drops_them(
    koe_factory, broker, smtp_server, figures
):
    koe = koe_factory()
    publish_alerts(broker, BEFORE)
    wait_until(lambda: emailed(smtp_server, BEFORE), what="the first alerts emailed")

    # Each way of saying "later" in turn, each until the notifier has retried on it.
    smtp_server.fail_with("451 4.3.0 try later")
    publish_alerts(broker, DURING)
    wait_until(lambda: retried_with(koe, "451 4.3.0"), what="451 at DATA, retried")
    smtp_server.fail_with("421 4.3.2 shutting down")
    wait_until(lambda: retried_with(koe, "421 4.3.2 shutting down"), what="421 at DATA, retried")
    smtp_server.stop()
    with BusyGreeting(smtp_server.port):
        wait_until(lambda: retried_with(koe, "connect: 421"), what="421 greeting, retried")
    smtp_server.fail_with(None)
    smtp_server.start()
    assert len(smtp_server.messages) == len(BEFORE)

    wait_until(lambda: emailed(smtp_server, DURING), what="the delayed alerts emailed")
    doubled = each_emailed_once(koe, broker, smtp_server)
    assert {row.status for row in attempts(koe).values()} == {"sent"}
    assert read_topic([broker.bootstrap], DEAD_LETTERS) == [], "a 4xx is not for good"
    figures(
        fault="SMTP server answering 451, 421 (DATA and greeting), then accepting",
        in_flight=len(DURING),
        lost=0,
        doubled=doubled,
    )


def test_a_421_to_quit_after_the_server_took_the_mail_sends_it_once(
    koe_factory, broker, smtp_server, figures
):
    """The server took each mail (250 to DATA) and then says 421 to QUIT, as one that
    is shutting down may: the mails are out, and a retry would send them again."""
    koe = koe_factory()
    smtp_server.quit_with("421 4.3.2 shutting down")
    publish_alerts(broker, BEFORE)
    wait_until(lambda: emailed(smtp_server, BEFORE), what="the alerts emailed")
    drained(koe, broker.bootstrap)  # a second email, if a retry resent one, is here
    per_alert = emails_per_alert(smtp_server.messages)
    doubled = sum(n - 1 for n in per_alert.values())
    assert doubled == 0, per_alert.most_common(3)
    assert {(row.status, row.attempts) for row in attempts(koe).values()} == {("sent", 1)}
    figures(
        fault="SMTP server answering 421 to QUIT after taking each mail",
        in_flight=len(BEFORE),
        lost=0,
        doubled=doubled,
    )


def with_metrics_port(koe, name: str) -> str:
    """Restart a loop with its metrics port on (compose gives each loop one); its URL."""
    port = free_port()
    wait_for_partitions(koe, name)
    koe.stack.kill(name, signal.SIGTERM)
    koe.stack.processes[name].env["KOE_METRICS_PORT"] = str(port)
    koe.stack.start(name)
    return f"http://127.0.0.1:{port}/metrics"


def metric(url: str, name: str, **labels: str) -> float:
    text = requests.get(url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return 0.0


def dlq_show(koe) -> str:
    """What an operator sees: `python -m koe_kit.dlq show koe.alerts.dlq.v1`."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": koe.stack.env["KAFKA_BOOTSTRAP_SERVERS"]}
    return subprocess.run(
        [sys.executable, "-m", "koe_kit.dlq", "show", DEAD_LETTERS],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_a_550_is_recorded_dead_lettered_and_shown_and_the_next_alert_goes_out(
    koe_factory, broker, smtp_server, figures
):
    koe = koe_factory()
    metrics = with_metrics_port(koe, "notifier-consumer")
    refused, next_alert = alert(1), alert(2)
    smtp_server.fail_with("550 5.1.1 mailbox unavailable")
    [where] = publish(broker.bootstrap, ALERTS, [refused])
    wait_until(lambda: read_topic([broker.bootstrap], DEAD_LETTERS), what="the dead letter")
    smtp_server.fail_with(None)
    publish(broker.bootstrap, ALERTS, [next_alert])
    wait_until(lambda: emails_per_alert(smtp_server.messages), what="the next alert emailed")

    drained(koe, broker.bootstrap)  # the refused alert, if it were retried, is emailed
    assert emails_per_alert(smtp_server.messages) == {next_alert["id"]: 1}
    record = attempts(koe)[refused["id"]]
    assert (record.status, record.attempts) == ("failed", 1)
    assert "550 5.1.1 mailbox unavailable" in record.last_error
    [dead] = read_topic([broker.bootstrap], DEAD_LETTERS)
    headers = {name: value.decode() for name, value in dead.headers}
    assert "550 5.1.1 mailbox unavailable" in headers["koe-dlq-reason"]
    assert (headers["koe-dlq-topic"], headers["koe-dlq-group"]) == (ALERTS, "notifier")
    assert int(headers["koe-dlq-offset"]) == where.offset
    # Operators see it: the dead-letter tool, and the loop's metrics.
    shown = dlq_show(koe)
    assert f"from {ALERTS}@{where.offset} (notifier)" in shown
    assert "550 5.1.1 mailbox unavailable" in shown
    assert f"1 dead letters on {DEAD_LETTERS}" in shown
    assert metric(metrics, "koe_notifier_emails_failed_total") == 1
    assert metric(metrics, "koe_notifier_emails_sent_total") == 1
    assert metric(metrics, "koe_events_dead_lettered_total", group="notifier", topic=ALERTS) == 1
    figures(fault="SMTP 550 for one alert (dead-lettered)", in_flight=2, lost=0, doubled=0)
