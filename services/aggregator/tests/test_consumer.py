"""The consumer on a real broker: events in, counts in the database, one alert out."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import func, select

from aggregator.config import load_settings
from aggregator.consumer import TOPIC, build_loop
from aggregator.drop_rule import DropRule
from aggregator.ingest import handle_batch
from aggregator.models import AlertOutbox, DailyCount
from koe_kit import events
from koe_kit.db import transaction
from koe_kit.kafka import ensure_topics, make_producer

ALERTS = "koe.alerts.v1"


def settings_for(broker, database_url, fast_kafka_env):
    env = {
        **fast_kafka_env,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "DATABASE_URL": database_url,
    }
    return load_settings(env, need_kafka=True)


def produce(broker, settings, batch):
    producer = make_producer(settings.kafka)
    for event in batch:
        producer.send(TOPIC, key=event["subject"], value=events.encode(event))
    producer.flush()
    producer.close()


def run_until(settings, condition, timeout_s: float = 60, seen: list | None = None) -> None:
    loop, publisher = build_loop(settings)
    if seen is not None:
        handler = loop.handler

        def counting(messages):
            handler(messages)
            seen.extend(m.event["id"] for m in messages)

        loop.handler = counting
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        loop.stop()
        thread.join(timeout=20)
        publisher.producer.close()
    assert not thread.is_alive(), "consumer did not stop"
    assert condition(), "condition not reached before the timeout"


def read_alerts(broker) -> list:
    consumer = KafkaConsumer(bootstrap_servers=[broker.bootstrap], enable_auto_commit=False)
    partitions = [TopicPartition(ALERTS, p) for p in range(events.topics()[ALERTS]["partitions"])]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records = []
    for _ in range(15):
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
    consumer.close()
    return records


def test_consumer_counts_events_from_the_topic(
    broker, migrated_url, sessions, make_feedback, fast_kafka_env
):
    ensure_topics([broker.bootstrap])
    settings = settings_for(broker, migrated_url, fast_kafka_env)
    batch = [
        make_feedback(
            "2026-11-20T15:30:00Z", {"clarity": "yes", "usefulness": "no"}, page_id=f"page-{i % 3}"
        )
        for i in range(30)
    ]
    produce(broker, settings, batch + batch[:5])  # redelivered duplicates count once

    handled: list[str] = []
    run_until(settings, lambda: len(handled) >= 35, seen=handled)
    with sessions() as session:
        rows = session.execute(
            select(DailyCount.day, func.sum(DailyCount.yes), func.sum(DailyCount.no)).group_by(
                DailyCount.day
            )
        ).all()
    assert [(d, y, n) for d, y, n in rows] == [(date(2026, 11, 21), 30, 30)]


def test_a_drop_publishes_exactly_one_alert(
    broker, migrated_url, sessions, make_feedback, fast_kafka_env
):
    ensure_topics([broker.bootstrap])
    settings = settings_for(broker, migrated_url, fast_kafka_env)
    start = date(2026, 10, 20)
    history = []
    for offset in range(35):
        day = start + timedelta(days=offset)
        answer = "yes" if offset < 28 else "no"
        history += [make_feedback(f"{day}T0{h}:00:00Z", {"usefulness": answer}) for h in (1, 2)]
    produce(broker, settings, history)

    def sent():
        with sessions() as session:
            rows = session.execute(select(AlertOutbox.sent_at)).scalars().all()
            return len(rows) == 1 and rows[0] is not None

    run_until(settings, sent)
    records = read_alerts(broker)
    assert len(records) == 1
    alert = events.decode(records[0].value)
    assert alert["type"] == ALERTS
    assert records[0].key.decode() == alert["subject"] == "u-5f1c9a2d7e3b4c60"
    assert [q["question"] for q in alert["data"]["questions"]] == ["usefulness"]
    assert alert["data"]["recent"]["end"] <= "2026-11-23"


def test_unsent_alerts_go_out_when_the_consumer_starts(
    broker, migrated_url, sessions, make_feedback, fast_kafka_env
):
    start = date(2026, 10, 20)
    history = [
        make_feedback(
            f"{start + timedelta(days=d)}T03:00:00Z", {"clarity": "yes" if d < 28 else "no"}
        )
        for d in range(35)
        for _ in range(2)
    ]
    with transaction(sessions) as session:
        handle_batch(session, history, timezone=ZoneInfo("Asia/Tokyo"), rule=DropRule())

    # Committed but never published (the broker was away): the consumer sends it at start.
    settings = settings_for(broker, migrated_url, fast_kafka_env)
    ensure_topics([broker.bootstrap])

    def sent():
        with sessions() as session:
            return session.scalars(select(AlertOutbox.sent_at)).all() != [None]

    run_until(settings, sent)
    assert len(read_alerts(broker)) == 1
