"""The consumer loop on a real broker: decode, dead-letter poison, commit after the handler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from koe_devkit.testing import running, wait_until
from koe_kit import events
from koe_kit.kafka import (
    ConsumerLoop,
    KafkaSettings,
    Retryable,
    ensure_topics,
    make_producer,
    read_topic,
)

TOPIC = "koe.feedback.submitted.v1"
DLQ = "koe.feedback.submitted.dlq.v1"
EXAMPLE = Path(__file__).parents[3] / "schemas/examples/koe.feedback.submitted.v1/tsu-dx-page.json"


def settings(broker) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=[broker.bootstrap],
        client_id="test",
        max_poll_interval_ms=3000,
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
        batch_max_wait_ms=100,
        retry_backoff_initial_s=0.1,
        retry_backoff_max_s=0.2,
    )


def good_event(n: int) -> dict:
    event = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    event["id"] = event["data"]["response_id"] = f"00000000-0000-4000-8000-{n:012d}"
    return event


def run_until(loop: ConsumerLoop, condition) -> None:
    with running(loop):
        wait_until(condition, 30)


def test_poison_is_dead_lettered_and_valid_events_committed(broker):
    ensure_topics([broker.bootstrap])
    producer = make_producer(settings(broker))
    producer.send(TOPIC, key="p1", value=events.encode(good_event(1)))
    producer.send(TOPIC, key="p1", value=b"{not json")
    wrong = good_event(2)
    wrong["data"]["answers"] = {"findability": "maybe"}
    producer.send(TOPIC, key="p1", value=json.dumps(wrong).encode())
    producer.send(TOPIC, key="p1", value=events.encode(good_event(3)))
    producer.flush()

    seen: list[str] = []
    loop = ConsumerLoop(
        settings(broker),
        group_id="g",
        topic=TOPIC,
        handler=lambda batch: seen.extend(m.event["id"] for m in batch),
    )
    run_until(loop, lambda: len(seen) >= 2)
    assert seen == [good_event(1)["id"], good_event(3)["id"]]

    dead = read_topic([broker.bootstrap], DLQ)
    reasons = [dict(r.headers)["koe-dlq-reason"].decode() for r in dead]
    assert len(dead) == 2
    assert reasons[0].startswith("not JSON")
    assert "data.answers.findability" in reasons[1]
    assert dead[0].value == b"{not json"

    # Offsets were committed: the same group starts after the last message.
    again: list[str] = []
    loop = ConsumerLoop(
        settings(broker),
        group_id="g",
        topic=TOPIC,
        handler=lambda batch: again.extend(m.event["id"] for m in batch),
    )
    producer.send(TOPIC, key="p1", value=events.encode(good_event(4)))
    producer.flush()
    run_until(loop, lambda: len(again) >= 1)
    assert again == [good_event(4)["id"]]


def test_transient_failure_is_retried_not_skipped(broker):
    ensure_topics([broker.bootstrap])
    producer = make_producer(settings(broker))
    producer.send(TOPIC, key="p1", value=events.encode(good_event(1)))
    producer.flush()
    attempts: list[int] = []
    done: list[str] = []

    def flaky(batch):
        attempts.append(len(batch))
        if len(attempts) < 3:
            raise Retryable("database is down")
        done.extend(m.event["id"] for m in batch)

    loop = ConsumerLoop(settings(broker), group_id="g", topic=TOPIC, handler=flaky)
    run_until(loop, lambda: bool(done))
    assert attempts == [1, 1, 1]
    assert done == [good_event(1)["id"]]


def test_too_many_invalid_in_a_row_stops_the_consumer(broker):
    ensure_topics([broker.bootstrap])
    producer = make_producer(settings(broker))
    for _ in range(3):
        producer.send(TOPIC, key="p", value=b"garbage")
    producer.flush()
    s = settings(broker)
    s = KafkaSettings(**{**s.__dict__, "max_invalid_in_row": 3})
    loop = ConsumerLoop(s, group_id="g", topic=TOPIC, handler=print)
    with pytest.raises(SystemExit, match="3 invalid messages in a row"):
        loop.run()


def test_on_idle_runs_while_no_message_comes_and_again_after_a_batch(broker):
    """Work that does not come from the topic (an alert an admin released) is not left
    until the next message."""
    ensure_topics([broker.bootstrap])
    calls: list[str] = []
    loop = ConsumerLoop(
        settings(broker),
        group_id="idle",
        topic=TOPIC,
        handler=lambda batch: calls.extend("batch" for _ in batch),
        on_idle=lambda: calls.append("idle"),
    )
    with running(loop):
        wait_until(lambda: calls.count("idle") >= 3, 30)
        producer = make_producer(settings(broker))
        producer.send(TOPIC, key="p1", value=events.encode(good_event(1)))
        producer.flush()
        wait_until(lambda: "batch" in calls, 30)
        at_batch = calls.index("batch")
        wait_until(lambda: "idle" in calls[at_batch:], 30)
