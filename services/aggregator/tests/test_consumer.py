"""The consumer on a real broker: events in, counts in the database, one alert out."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from prometheus_client import REGISTRY
from sqlalchemy import func, select

from aggregator.alerts.models import AlertOutbox
from aggregator.alerts.outbox import OutboxPublisher
from aggregator.config import load_consumer_settings
from aggregator.consumer import build_loop
from aggregator.counting.ingest import handle_batch
from aggregator.counting.models import DailyCount, ProcessedEvent
from koe_contract import FEEDBACK_TOPIC as TOPIC
from koe_devkit.local_broker import LocalBroker
from koe_devkit.testing import count_handled, running, wait_until
from koe_directory import load_directory
from koe_kit import events
from koe_kit.db import transaction
from koe_kit.kafka import ensure_topics, make_producer, read_topic

DIVISIONS = Path(__file__).resolve().parents[3] / "divisions.yaml"
DIRECTORY = load_directory(DIVISIONS)

ALERTS = "koe.alerts.v1"
PRUNED = "koe_aggregator_processed_events_pruned_total"
TOKYO = ZoneInfo("Asia/Tokyo")


def settings_for(broker, database_url, fast_kafka_env):
    env = {
        **fast_kafka_env,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "DATABASE_URL": database_url,
        "KOE_DIVISIONS_FILE": str(DIVISIONS),
        # The histories here have fixed dates; judge them whatever today is.
        "KOE_ALERT_MAX_AGE_DAYS": "0",
    }
    return load_consumer_settings(env)


def produce(broker, settings, batch):
    producer = make_producer(settings.kafka)
    for event in batch:
        producer.send(TOPIC, key=event["subject"], value=events.encode(event))
    producer.flush()
    producer.close()


def run_until(
    settings,
    condition,
    seen: list | None = None,
    publisher: OutboxPublisher | None = None,
) -> None:
    loop, publisher = build_loop(settings, publisher)
    if seen is not None:
        count_handled(loop, seen)
    try:
        with running(loop):
            wait_until(condition, 60)
    finally:
        publisher.close()


def read_alerts(broker) -> list:
    return read_topic([broker.bootstrap], ALERTS)


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
    start = date(2026, 8, 1)
    history = []
    for offset in range(105):
        day = start + timedelta(days=offset)
        answer = "yes" if offset < 100 else "no"
        history += [make_feedback(f"{day}T0{h}:00:00Z", {"usefulness": answer}) for h in (1, 2, 3)]
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
    assert alert["data"]["recent"]["end"] <= "2026-11-13"


def test_unsent_alerts_go_out_when_the_consumer_starts(
    broker, migrated_url, sessions, make_feedback, fast_kafka_env
):
    start = date(2026, 8, 1)
    history = [
        make_feedback(
            f"{start + timedelta(days=d)}T03:00:00Z", {"clarity": "yes" if d < 100 else "no"}
        )
        for d in range(105)
        for _ in range(3)
    ]
    with transaction(sessions) as session:
        # The histories have fixed dates: judge them whatever today is.
        handle_batch(
            session, history, timezone=ZoneInfo("Asia/Tokyo"), directory=DIRECTORY, max_age_days=0
        )

    # Committed but never published (the broker was away): the consumer sends it at start.
    settings = settings_for(broker, migrated_url, fast_kafka_env)
    ensure_topics([broker.bootstrap])

    def sent():
        with sessions() as session:
            return session.scalars(select(AlertOutbox.sent_at)).all() != [None]

    run_until(settings, sent)
    assert len(read_alerts(broker)) == 1


def test_a_broker_outage_keeps_the_alert_until_a_broker_takes_it(
    broker, migrated_url, sessions, make_feedback, fast_kafka_env, tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="aggregator.alerts.outbox")
    ensure_topics([broker.bootstrap])
    settings = settings_for(broker, migrated_url, fast_kafka_env)
    start = date(2026, 8, 1)
    history = [
        make_feedback(
            f"{start + timedelta(days=d)}T03:00:00Z", {"clarity": "yes" if d < 100 else "no"}
        )
        for d in range(105)
        for _ in range(3)
    ]
    produce(broker, settings, history)

    # The publisher's broker goes away after the producer learned its partitions, so
    # sends are buffered (not refused) and outlive the publisher's short wait.
    away = LocalBroker(log_path=tmp_path / "away.log").start()
    try:
        ensure_topics([away.bootstrap], [ALERTS])
        producer = make_producer(
            settings_for(away, migrated_url, fast_kafka_env).kafka,
            max_block_ms=500,
            request_timeout_ms=500,
            delivery_timeout_ms=3000,
        )
        assert producer.partitions_for(ALERTS)
    finally:
        away.stop()
    publisher = OutboxPublisher(sessions, producer, send_timeout_s=0.5)

    def failed_to_publish():
        return any("could not publish" in r.getMessage() for r in caplog.records)

    def counted_and_unsent():
        with sessions() as session:
            answers = session.scalar(select(func.sum(DailyCount.yes + DailyCount.no)))
            unsent = session.scalars(select(AlertOutbox.sent_at)).all()
        return answers == len(history) and unsent == [None] and failed_to_publish()

    # run_until stops the loop and closes the publisher with records still buffered:
    # both finish, and the hook's failure neither raised out of the loop nor stopped it.
    run_until(settings, counted_and_unsent, publisher=publisher)
    assert read_alerts(broker) == []

    def sent():
        with sessions() as session:
            return session.scalars(select(AlertOutbox.sent_at)).all() != [None]

    # A reachable broker: the consumer sends the waiting alert at start, exactly once.
    run_until(settings, sent)
    records = read_alerts(broker)
    assert len(records) == 1
    with sessions() as session:
        row = session.scalars(select(AlertOutbox)).one()
    assert events.decode(records[0].value)["id"] == row.alert_id


def test_the_consumer_forgets_old_ids_but_not_those_the_topic_can_deliver_again(
    broker, migrated_url, sessions, make_feedback, fast_kafka_env
):
    ensure_topics([broker.bootstrap])
    # A group reading the topic from its start (its offsets expired after a long
    # stop): these events are still on it, counted 36½ days ago (30 days of retention,
    # and Kafka deletes a segment once its newest record is past them); others,
    # counted 40 days ago, have left it.
    now = datetime.now(UTC)
    on_topic = [make_feedback("2026-11-20T03:00:00Z", {"clarity": "yes"}) for _ in range(20)]
    gone = [make_feedback("2026-11-19T03:00:00Z", {"clarity": "no"}) for _ in range(15)]
    for batch, age in ((on_topic, timedelta(days=36, hours=12)), (gone, timedelta(days=40))):
        with transaction(sessions) as session:
            handle_batch(session, batch, timezone=TOKYO, directory=DIRECTORY, now=now - age)
    fresh = [make_feedback("2026-11-21T03:00:00Z", {"clarity": "yes"}) for _ in range(5)]
    settings = settings_for(broker, migrated_url, fast_kafka_env)
    produce(broker, settings, on_topic + fresh)
    pruned_before = REGISTRY.get_sample_value(PRUNED) or 0.0

    handled: list[str] = []
    run_until(settings, lambda: len(handled) >= len(on_topic + fresh), seen=handled)

    with sessions() as session:
        kept = set(session.scalars(select(ProcessedEvent.event_id)))
        rows = session.execute(
            select(DailyCount.day, DailyCount.yes, DailyCount.no).order_by(DailyCount.day)
        ).all()
    assert kept == {e["id"] for e in on_topic + fresh}
    assert (REGISTRY.get_sample_value(PRUNED) or 0.0) - pruned_before == len(gone)
    # Read twice, counted once; the forgotten ids' counts stay.
    assert [tuple(r) for r in rows] == [
        (date(2026, 11, 19), 0, 15),
        (date(2026, 11, 20), 20, 0),
        (date(2026, 11, 21), 5, 0),
    ]


def test_a_replay_through_the_consumer_gives_the_same_counts(
    broker,
    migrated_url,
    sessions,
    replay_url,
    replay_sessions,
    mixed_history,
    counting_tables,
    fast_kafka_env,
):
    """Floods beyond the cap, replacements and older events without a source, delivered
    twice and cut into small batches; then the topic read again by a new group into an
    empty database (docs/operations.md, "Replaying a topic"): the same counts, excess,
    sources and pages."""
    ensure_topics([broker.bootstrap])
    history = mixed_history()
    small_batches = {**fast_kafka_env, "KOE_BATCH_MAX_MESSAGES": "17"}
    live = settings_for(broker, migrated_url, small_batches)
    produce(broker, live, history + history[100:160])  # a relay that published twice
    handled: list[str] = []
    run_until(live, lambda: len(handled) >= len(history) + 60, seen=handled)

    replay = settings_for(
        broker, replay_url, {**fast_kafka_env, "KOE_CONSUMER_GROUP": "aggregator-replay"}
    )
    replayed: list[str] = []
    run_until(replay, lambda: len(replayed) >= len(history) + 60, seen=replayed)

    counted = counting_tables(sessions)
    assert counted["excess_events"] and counted["daily_excess"]
    assert counting_tables(replay_sessions) == counted
