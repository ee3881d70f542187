"""The consumer on a real broker, SMTP server and database: alerts in, one email each out."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from koe_contract import ALERTS_TOPIC as TOPIC
from koe_devkit.testing import count_handled, running, wait_until
from koe_kit import events
from koe_kit.db import session_factory
from koe_kit.kafka import ConsumerLoop, ensure_topics, make_producer, read_topic
from notifier.config import load_consumer_settings
from notifier.consumer import build_consumer
from notifier.models import SentAlert


@pytest.fixture
def consumer_settings(env, engine, broker, fast_kafka_env):
    ensure_topics([broker.bootstrap])
    return load_consumer_settings(
        {**env, **fast_kafka_env, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}
    )


@pytest.fixture
def publish(consumer_settings) -> Iterator[Callable[[dict], None]]:
    producer = make_producer(consumer_settings.kafka)

    def send(event: dict) -> None:
        producer.send(TOPIC, key=event["subject"], value=events.encode(event)).get(timeout=10)

    yield send
    producer.close()


@contextmanager
def running_counted(loop: ConsumerLoop) -> Iterator[list[str]]:
    """Run the loop in a thread; yields the alert ids its handler has finished."""
    handled = count_handled(loop)
    with running(loop):
        yield handled


def read_dead_letters(bootstrap: str) -> list:
    return read_topic([bootstrap], "koe.alerts.dlq.v1")


def test_an_alert_becomes_one_email_to_its_division(
    consumer_settings, engine, publish, smtp_server, make_alert
):
    owned = make_alert()
    unowned = make_alert(url="https://www.info.city.tsu.mie.jp/kanko/event.html", division=None)
    loop = build_consumer(consumer_settings, engine)
    with running_counted(loop) as handled:
        publish(owned)
        wait_until(lambda: len(smtp_server.messages) == 1)
        publish(owned)  # the aggregator replaying the same alert
        publish(unowned)
        wait_until(lambda: len(handled) == 3)

    mails = smtp_server.messages
    assert len(mails) == 2
    by_recipient = {m["To"]: m for m in mails}
    assert set(by_recipient) == {"digital-kaikaku@city-tsu.example", "webmaster@city-tsu.example"}
    first = by_recipient["digital-kaikaku@city-tsu.example"]
    assert first["Subject"] == "【koe】ページの評価が下がりました: 津市の自治体DX取組状況"
    assert "27.5点 (回答20件)" in first.get_body(preferencelist=("plain",)).get_content()
    assert read_dead_letters(consumer_settings.kafka.bootstrap_servers[0]) == []


def test_a_permanent_refusal_is_dead_lettered_and_the_consumer_goes_on(
    consumer_settings, engine, publish, smtp_server, make_alert
):
    refused, next_alert = make_alert(), make_alert()
    bootstrap = consumer_settings.kafka.bootstrap_servers[0]
    smtp_server.fail_with("550 5.1.1 mailbox unavailable")
    loop = build_consumer(consumer_settings, engine)
    with running_counted(loop) as handled:
        publish(refused)
        wait_until(lambda: refused["id"] in handled)
        smtp_server.fail_with(None)
        publish(next_alert)
        wait_until(lambda: next_alert["id"] in handled)

    assert len(smtp_server.messages) == 1
    assert smtp_server.messages[0]["Message-ID"].startswith(f"<koe-alert-{next_alert['id']}@")
    dead = read_dead_letters(bootstrap)
    assert len(dead) == 1
    assert events.decode(dead[0].value)["id"] == refused["id"]
    headers = dict(dead[0].headers)
    assert "550 5.1.1 mailbox unavailable" in headers["koe-dlq-reason"].decode()
    assert headers["koe-dlq-group"] == b"notifier"
    with session_factory(engine)() as session:
        row = session.scalar(select(SentAlert).where(SentAlert.alert_id == refused["id"]))
    assert row.status == "failed"


def test_a_mail_server_saying_later_delays_the_email_never_drops_it(
    consumer_settings, engine, publish, smtp_server, make_alert
):
    alert = make_alert()
    smtp_server.fail_with("451 4.3.0 try later")
    sessions = session_factory(engine)

    def attempts() -> int:
        with sessions() as session:
            row = session.get(SentAlert, alert["id"])
            return row.attempts if row else 0

    loop = build_consumer(consumer_settings, engine)
    with running_counted(loop) as handled:
        publish(alert)
        wait_until(lambda: attempts() >= 2)  # retried with backoff, not skipped
        assert smtp_server.messages == []
        smtp_server.fail_with(None)
        wait_until(lambda: alert["id"] in handled)

    assert len(smtp_server.messages) == 1
    with sessions() as session:
        assert session.get(SentAlert, alert["id"]).status == "sent"
