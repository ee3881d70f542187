"""/metrics as an operator reads it: behind its token, routes by URL rule, every
gunicorn worker counted (multiprocess mode), and the consumer loop's own numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from flask import Flask
from prometheus_client import REGISTRY

from koe_devkit.local_broker import free_port, wait_for_port
from koe_devkit.testing import running, wait_until
from koe_kit import correlation, events
from koe_kit.config import ConfigError, load
from koe_kit.kafka import ConsumerLoop, ensure_topics, make_producer
from koe_kit.metrics import MetricsSettings, init_metrics, read_metrics_settings
from support import CHALLENGE_KEY, CHALLENGE_MAX_NUMBER, REPO, solving

TOKEN = "metrics-token-" + "m" * 20
FEEDBACK_EXAMPLE = REPO / "schemas/examples/koe.feedback.submitted.v1/tsu-dx-page.json"


def app_with_metrics(token: str | None) -> Flask:
    app = Flask(__name__)
    init_metrics(app, "test-app", MetricsSettings(token=token))

    @app.get("/things/<thing_id>")
    def thing(thing_id: str):
        return {"id": thing_id}

    return app


def test_metrics_need_the_token_and_are_off_without_one():
    client = app_with_metrics(TOKEN).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    shown = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert shown.status_code == 200
    assert shown.content_type.startswith("text/plain")
    assert "# TYPE koe_http_requests_total counter" in shown.get_data(as_text=True)

    assert app_with_metrics(None).test_client().get("/metrics").status_code == 404


def test_a_short_metrics_token_stops_the_app():
    with pytest.raises(ConfigError, match="KOE_METRICS_TOKEN is too short"):
        load(read_metrics_settings, {"KOE_METRICS_TOKEN": "short"})


def test_requests_are_counted_by_route_not_by_raw_path():
    client = app_with_metrics(TOKEN).test_client()

    def count(route: str, status: str) -> float:
        labels = {"service": "test-app", "method": "GET", "route": route, "status": status}
        return REGISTRY.get_sample_value("koe_http_requests_total", labels) or 0.0

    before = count("/things/<thing_id>", "200"), count("(unmatched)", "404")
    for n in range(3):
        assert client.get(f"/things/{n}").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    assert count("/things/<thing_id>", "200") == before[0] + 3
    assert count("(unmatched)", "404") == before[1] + 1
    assert REGISTRY.get_sample_value(
        "koe_http_request_duration_seconds_count",
        {"service": "test-app", "method": "GET", "route": "/things/<thing_id>"},
    )


@pytest.mark.integration
def test_gunicorn_workers_are_summed_and_a_restart_starts_from_zero(tmp_path: Path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left over from a previous run")
    database = f"sqlite:///{tmp_path / 'notifier.db'}"
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
        "KOE_METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    port = free_port()
    gunicorn = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "-c", "python:koe_kit.gunicorn_conf"),
            *("notifier.wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", "3"),
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout_s=30)
        assert not (metrics_dir / "counter_999999.db").exists(), "old values not cleared"
        with requests.Session() as http:
            for _ in range(30):
                # A fresh connection each time, so the requests spread over the workers.
                assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).ok
            text = http.get(
                f"http://127.0.0.1:{port}/metrics",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=10,
            ).text
        healthz = [
            line
            for line in text.splitlines()
            if line.startswith("koe_http_requests_total{") and 'route="/healthz"' in line
        ]
        assert len(healthz) == 1, healthz
        assert float(healthz[0].rsplit(" ", 1)[1]) == 30.0
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        assert gunicorn.wait(timeout=30) == 0


def feedback_event(n: int, request_id: str | None = None) -> dict:
    event = json.loads(FEEDBACK_EXAMPLE.read_text(encoding="utf-8"))
    event["id"] = event["data"]["response_id"] = f"00000000-0000-4000-8000-{n:012d}"
    if request_id:
        event[correlation.ATTRIBUTE] = request_id
    return event


def test_the_consumer_loop_counts_batches_dead_letters_and_lag(broker, fast_kafka_env):
    from koe_kit.config import EnvReader
    from koe_kit.kafka import KafkaSettings

    settings = KafkaSettings.from_env(
        EnvReader({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, **fast_kafka_env}), "test"
    )
    topic = "koe.feedback.submitted.v1"
    ensure_topics([broker.bootstrap])
    producer = make_producer(settings)
    for n in range(5):
        producer.send(topic, key="p1", value=events.encode(feedback_event(n, f"req-{n}")))
    producer.send(topic, key="p1", value=b"{poison")
    producer.flush()
    producer.close()

    group = "metrics-test"
    labels = {"group": group, "topic": topic}
    made: list[dict] = []

    def handler(batch) -> None:
        # What the aggregator does when a batch tips a page: make an event about it.
        made.append(
            events.make_event(
                "koe.feedback.submitted.v1",
                source="koe/test",
                subject=batch[-1].event["subject"],
                data=batch[-1].event["data"],
            )
        )

    def lags() -> list[float | None]:
        return [
            REGISTRY.get_sample_value(
                "koe_consumer_lag_messages", {"group": group, "topic": topic, "partition": str(p)}
            )
            for p in range(6)
        ]

    loop = ConsumerLoop(settings, group_id=group, topic=topic, handler=handler)
    with running(loop):
        wait_until(
            lambda: REGISTRY.get_sample_value("koe_consumer_events_total", labels) == 5,
            what="5 events handled",
        )
        # Caught up: the partition it read reports no lag.
        assert 0 in lags() and all(lag in (None, 0) for lag in lags()), lags()
    # Stopped: its partitions are another member's to report.
    assert lags() == [None] * 6
    assert REGISTRY.get_sample_value("koe_events_dead_lettered_total", labels) == 1
    assert REGISTRY.get_sample_value("koe_consumer_batch_messages_sum", labels) == 5
    assert REGISTRY.get_sample_value("koe_consumer_batch_duration_seconds_count", labels) >= 1
    # The event made while handling carries the request id of its subject's latest event.
    assert correlation.of_event(made[-1]) == "req-4"


def test_consumer_lag_is_what_the_group_has_left_after_each_batch(broker, fast_kafka_env):
    from koe_kit.config import EnvReader
    from koe_kit.kafka import KafkaSettings

    settings = KafkaSettings.from_env(
        EnvReader(
            {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                **fast_kafka_env,
                "KOE_BATCH_MAX_MESSAGES": "2",
            }
        ),
        "test",
    )
    topic = "koe.feedback.submitted.v1"
    ensure_topics([broker.bootstrap])
    producer = make_producer(settings)
    for n in range(6):  # one key: one partition, six messages behind the group
        producer.send(topic, key="p1", value=events.encode(feedback_event(n)))
    producer.flush()
    producer.close()

    group = "lag-test"
    second_batch_started, release = threading.Event(), threading.Event()
    batches: list[int] = []

    def handler(batch) -> None:
        batches.append(len(batch))
        if len(batches) == 2:
            second_batch_started.set()
            assert release.wait(30), "the test never released the second batch"

    def lags() -> dict[int, float]:
        found = {}
        for p in range(6):
            value = REGISTRY.get_sample_value(
                "koe_consumer_lag_messages", {"group": group, "topic": topic, "partition": str(p)}
            )
            if value is not None:
                found[p] = value
        return found

    loop = ConsumerLoop(settings, group_id=group, topic=topic, handler=handler)
    with running(loop):
        assert second_batch_started.wait(60), "no second batch"
        # The first batch (2 messages) is committed; 4 wait on its partition.
        assert list(lags().values()) == [4.0]
        release.set()
        wait_until(lambda: sum(batches) == 6, what="all six handled")
        wait_until(lambda: list(lags().values()) == [0.0], what="the lag back at 0")


def test_emails_sent_retried_and_failed_are_counted(smtp_server):
    from email.message import EmailMessage

    from notifier.config import SmtpSettings
    from notifier.mailer import PermanentMailError, SmtpMailer, TransientMailError

    def counts() -> tuple[float, ...]:
        return tuple(
            REGISTRY.get_sample_value(f"koe_notifier_emails_{outcome}_total") or 0.0
            for outcome in ("sent", "retried", "failed")
        )

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "koe@city.example", "ka@city.example", "t"
    message.set_content("本文")
    mailer = SmtpMailer(SmtpSettings(host=smtp_server.host, port=smtp_server.port))
    before = counts()
    mailer.send(message)
    smtp_server.fail_with("451 4.3.0 try again later")
    with pytest.raises(TransientMailError):
        mailer.send(message)
    smtp_server.fail_with("550 5.1.1 no such mailbox")
    with pytest.raises(PermanentMailError):
        mailer.send(message)
    after = counts()
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    assert len(smtp_server.messages) == 1


def test_the_relay_shows_its_backlog_while_kafka_is_away(new_pg_database):
    from feedback.app import create_app
    from feedback.config import load_settings
    from feedback.migrate import migrate

    database = new_pg_database()
    migrate(database)
    settings = {
        "DATABASE_URL": database,
        "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
        "KOE_ALLOWED_ORIGINS": "https://www.info.city.tsu.mie.jp",
        "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
        "KOE_CHALLENGE_MAX_NUMBER": CHALLENGE_MAX_NUMBER,
    }
    app = solving(create_app(load_settings(settings)))
    client = app.test_client()
    for n in range(3):
        answer = client.post(
            "/api/v1/feedback",
            json={
                "page_url": f"https://www.info.city.tsu.mie.jp/kurashi/{n}.html",
                "answers": {"clarity": "yes"},
            },
        )
        assert answer.status_code == 202, answer.get_json()
    app.extensions["koe.engine"].dispose()

    metrics_port = free_port()
    relay = subprocess.Popen(
        [sys.executable, "-m", "feedback.relay"],
        env={
            **os.environ,
            **settings,
            # Nothing listens there: the broker is away.
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "KOE_RELAY_SEND_TIMEOUT_S": "1",
            "KOE_METRICS_PORT": str(metrics_port),
        },
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", metrics_port, timeout_s=30)

        def backlog() -> tuple[float, float]:
            text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            values = {}
            for line in text.splitlines():
                for name in ("koe_outbox_backlog_rows", "koe_outbox_oldest_age_seconds"):
                    if line.startswith(name + '{service="feedback"}'):
                        values[name] = float(line.rsplit(" ", 1)[1])
            return values.get("koe_outbox_backlog_rows", -1), values.get(
                "koe_outbox_oldest_age_seconds", -1
            )

        rows, age = wait_until(lambda: backlog()[0] == 3 and backlog(), what="3 rows waiting")
        assert age > 0
    finally:
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(timeout=30) == 0
