"""libs/koe_contract and schemas/topics.yaml say the same (topics, event types, who
produces and who consumes), each payload type matches its schema, and each service's
consumer loop and producers are wired the way the contract says."""

from __future__ import annotations

import json
from pathlib import Path

import koe_contract as contract
from koe_contract import AGGREGATOR, DLQ_REDRIVE, NOTIFIER, payloads
from koe_kit import dlq, events

SCHEMAS = Path(__file__).parents[1] / "schemas"
DIVISIONS = Path(__file__).parents[1] / "divisions.yaml"
# Nothing connects while a loop is built: an address where no broker listens will do.
NO_BROKER = "127.0.0.1:9"


def test_the_contract_module_says_what_topics_yaml_says():
    declared = events.topics()
    assert {t.name for t in contract.TOPICS} == set(declared)
    for topic in contract.TOPICS:
        spec = declared[topic.name]
        assert topic.producers == set(spec["producers"]), topic.name
        assert topic.consumers == set(spec["consumers"]), topic.name
        assert topic.dead_letters_of == spec.get("dead_letters_of"), topic.name
        # A dead-letter topic holds whatever could not be used: no event type of its own.
        carried = set() if topic.dead_letters_of else events.event_types_on(topic.name)
        assert topic.event_types == carried, topic.name


def test_every_event_type_has_a_schema_and_a_payload_type_with_its_fields():
    event_types = set().union(*(t.event_types for t in contract.TOPICS))
    assert event_types == {p.stem for p in SCHEMAS.glob("koe.*.json")}
    assert set(payloads.BY_EVENT_TYPE) == event_types
    for event_type, payload in payloads.BY_EVENT_TYPE.items():
        schema = json.loads((SCHEMAS / f"{event_type}.json").read_text(encoding="utf-8"))
        data = schema["properties"]["data"]
        assert set(payload.__annotations__) == set(data["properties"]), event_type
        assert payload.__required_keys__ == set(data["required"]), event_type


def test_the_aggregator_consumes_dead_letters_and_publishes_what_the_contract_says(tmp_path):
    from aggregator.alerts.outbox import OutboxPublisher
    from aggregator.config import load_consumer_settings
    from aggregator.consumer import build_loop
    from koe_kit.db import make_engine, session_factory

    settings = load_consumer_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": NO_BROKER,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'aggregator.db'}",
            "KOE_DIVISIONS_FILE": str(DIVISIONS),
        }
    )
    engine = make_engine(settings.database_url)
    loop, publisher = build_loop(settings, OutboxPublisher(session_factory(engine), None))
    try:
        assert loop.group_id == AGGREGATOR
        assert contract.consumed_by(AGGREGATOR) == {loop.topic}
        assert contract.produced_by(AGGREGATOR) == {publisher.topic, loop.dead_letter_topic}
    finally:
        engine.dispose()


def test_the_notifier_consumes_and_dead_letters_what_the_contract_says(tmp_path):
    from koe_kit.db import make_engine
    from notifier.config import load_consumer_settings
    from notifier.consumer import build_consumer

    settings = load_consumer_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": NO_BROKER,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'notifier.db'}",
            "KOE_DIVISIONS_FILE": str(DIVISIONS),
            "SMTP_HOST": "127.0.0.1",
            "MAIL_FROM": "koe <koe@city-tsu.example>",
        }
    )
    engine = make_engine(settings.database_url)
    try:
        loop = build_consumer(settings, engine)
        assert loop.group_id == NOTIFIER
        assert contract.consumed_by(NOTIFIER) == {loop.topic}
        assert contract.produced_by(NOTIFIER) == {loop.dead_letter_topic}
    finally:
        engine.dispose()


def test_the_redrive_reads_every_dead_letter_topic_and_writes_back_to_their_origins():
    dead_letter_topics = {t.name for t in contract.TOPICS if t.dead_letters_of}
    origins = {t.dead_letters_of for t in contract.TOPICS if t.dead_letters_of}
    assert dlq.REDRIVE_GROUP == DLQ_REDRIVE
    assert contract.consumed_by(DLQ_REDRIVE) == dead_letter_topics
    assert contract.produced_by(DLQ_REDRIVE) == origins
