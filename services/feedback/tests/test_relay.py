"""The relay against a real broker: published in order with the page id as key, exactly once
through an outage, and marked sent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from feedback.config import load_relay_settings
from feedback.migrate import MIGRATIONS
from feedback.models import OutboxEntry
from feedback.relay import Relay
from koe_devkit.local_broker import LocalBroker, free_port
from koe_devkit.testing import running, wait_until
from koe_directory import page_id_for_url
from koe_kit import events
from koe_kit.db import make_engine, session_factory, transaction, upgrade
from koe_kit.kafka import ensure_topics, read_topic

TOPIC = "koe.feedback.submitted.v1"
SITE = "https://www.info.city.tsu.mie.jp"
DEADLINE_S = 60

# Small waits so an outage is noticed and retried quickly in tests.
FAST = {
    "KOE_RELAY_IDLE_MS": "50",
    "KOE_RELAY_SEND_TIMEOUT_S": "2",
    "KOE_RETRY_BACKOFF_INITIAL_S": "0.2",
    "KOE_RETRY_BACKOFF_MAX_S": "1",
}


def submit(client, n: int) -> list[tuple[str, str]]:
    """n responses over two pages; [(response id, page id)] in submission order."""
    accepted = []
    for i in range(n):
        page_url = f"{SITE}/kurashi/gomi/{i % 2}.html"
        page_id = page_id_for_url(page_url)
        answer = client.post(
            "/api/v1/feedback",
            json={"page_url": page_url, "answers": {"clarity": ["yes", "neutral", "no"][i % 3]}},
        )
        assert answer.status_code == 202, answer.get_json()
        accepted.append((answer.get_json()["id"], page_id))
    return accepted


def on_topic(bootstrap: str) -> list[tuple[str, dict, int]]:
    """Everything on the topic, as (key, event, partition), each partition in offset order."""
    return [
        (r.key.decode(), events.decode(r.value), r.partition)
        for r in read_topic([bootstrap], TOPIC, timeout_s=DEADLINE_S)
    ]


def unsent(engine) -> int:
    with engine.connect() as connection:
        return len(
            connection.execute(select(OutboxEntry.id).where(OutboxEntry.sent_at.is_(None))).all()
        )


def relay_for(env: dict[str, str], bootstrap: str, engine, **extra: str) -> Relay:
    settings = load_relay_settings({**env, **FAST, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, **extra})
    return Relay(settings, engine)


def test_relay_publishes_in_order_keyed_by_page_and_marks_sent(client, env, engine, broker):
    ensure_topics([broker.bootstrap])
    accepted = submit(client, 5)
    relay = relay_for(env, broker.bootstrap, engine, KOE_RELAY_BATCH="3")

    try:
        assert relay.relay_batch() == 3
        assert relay.relay_batch() == 2
        assert relay.relay_batch() == 0
    finally:
        relay.close()

    assert unsent(engine) == 0
    published = on_topic(broker.bootstrap)
    assert sorted(event["id"] for _, event, _ in published) == sorted(i for i, _ in accepted)
    for key, event, _ in published:
        assert key == event["subject"] == event["data"]["page_id"]
    for page in {p for _, p in accepted}:
        in_topic = [event["id"] for key, event, _ in published if key == page]
        assert in_topic == [i for i, p in accepted if p == page]  # a page's order holds
        assert len({part for key, _, part in published if key == page}) == 1


def test_broker_outage_api_keeps_accepting_and_relay_catches_up_exactly_once(
    client, env, engine, broker, caplog
):
    # Leaving each `running` block stops the relay and fails the test if it crashed.
    with running(relay_for(env, f"127.0.0.1:{free_port()}", engine)) as run:
        accepted = submit(client, 4)
        wait_until(
            lambda: sum("unreachable" in r.getMessage() for r in caplog.records) >= 2,
            DEADLINE_S,
            "the relay to try the dead broker twice",
        )
        assert run.alive
        assert unsent(engine) == 4
        accepted += submit(client, 2)  # still accepting during the outage

    ensure_topics([broker.bootstrap])
    with running(relay_for(env, broker.bootstrap, engine)):
        wait_until(lambda: unsent(engine) == 0, DEADLINE_S, "the relay to publish the backlog")

    published = on_topic(broker.bootstrap)
    assert sorted(event["id"] for _, event, _ in published) == sorted(i for i, _ in accepted)


def test_broker_dying_under_a_running_relay_and_coming_back(client, env, engine, tmp_path):
    """The broker goes away while the relay holds a live producer, then returns at
    the same address: the relay survives, and every response is on the topic."""
    port = free_port()
    broker = LocalBroker(port, tmp_path / "broker-1.log").start()
    try:
        ensure_topics([broker.bootstrap])
        with running(relay_for(env, broker.bootstrap, engine)) as run:
            before = submit(client, 3)
            wait_until(lambda: unsent(engine) == 0, DEADLINE_S, "the first responses published")

            broker.stop()
            during = submit(client, 4)  # the relay's producer now sends into the void
            time.sleep(3 * float(FAST["KOE_RELAY_SEND_TIMEOUT_S"]))
            assert run.alive and not run.failures, run.failures
            assert unsent(engine) == 4

            # Tansu keeps nothing across a restart: the new broker has empty topics.
            broker = LocalBroker(port, tmp_path / "broker-2.log").start()
            ensure_topics([broker.bootstrap])
            wait_until(
                lambda: unsent(engine) == 0,
                DEADLINE_S,
                "the relay to publish after the broker returned",
            )
        published = [event["id"] for _, event, _ in on_topic(broker.bootstrap)]
    finally:
        broker.stop()
    assert sorted(published) == sorted(i for i, _ in during)
    assert not {i for i, _ in before} & set(published)


def test_prune_deletes_only_sent_rows_older_than_the_keep_window(client, env, engine, broker):
    ensure_topics([broker.bootstrap])
    submit(client, 2)
    relay = relay_for(env, broker.bootstrap, engine, KOE_OUTBOX_KEEP_HOURS="1")
    try:
        relay.relay_batch()
    finally:
        relay.close()
    submit(client, 1)

    assert relay.prune() == 0  # sent just now: kept
    assert relay.prune(now=datetime.now(UTC) + timedelta(hours=2)) == 2
    assert unsent(engine) == 1
    with engine.connect() as connection:
        assert len(connection.execute(select(OutboxEntry.id)).all()) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_relay_process_publishes_and_stops_on_sigterm(client, env, engine, broker):
    ensure_topics([broker.bootstrap])
    accepted = submit(client, 3)
    process = subprocess.Popen(
        [sys.executable, "-m", "feedback.relay"],
        env={
            **os.environ,
            **env,
            **FAST,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: unsent(engine) == 0 or process.poll() is not None,
            DEADLINE_S,
            "the relay process",
        )
        assert process.poll() is None, process.stderr.read().decode()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()

    published = on_topic(broker.bootstrap)
    assert sorted(event["id"] for _, event, _ in published) == sorted(i for i, _ in accepted)


def test_relays_side_by_side_keep_each_pages_events_in_order(new_pg_database, broker):
    # Relays scaled out on PostgreSQL each claim rows the other does not hold; a page's
    # newer event must still never overtake its older one (a replacement would count
    # twice), and each event goes out once.
    url = new_pg_database()
    upgrade(url, MIGRATIONS)
    engine = make_engine(url)
    written = [(f"page-{i % 10}", str(uuid.uuid4())) for i in range(300)]
    with transaction(session_factory(engine)) as session:
        session.add_all(
            OutboxEntry(
                event_id=event_id,
                topic=TOPIC,
                key=page_id,
                payload=json.dumps({"id": event_id}),
                created_at=datetime.now(UTC),
            )
            for page_id, event_id in written
        )
    ensure_topics([broker.bootstrap])
    env = {"DATABASE_URL": url}
    relays = [relay_for(env, broker.bootstrap, engine, KOE_RELAY_BATCH="7") for _ in range(3)]
    start = threading.Barrier(len(relays))
    failures: list[BaseException] = []

    def drain(relay: Relay) -> None:
        try:
            start.wait()
            while unsent(engine):
                relay.relay_batch()
        except BaseException as exc:  # the test wants to see it
            failures.append(exc)

    threads = [threading.Thread(target=drain, args=(relay,)) for relay in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    for relay in relays:
        relay.close()
    engine.dispose()
    assert not failures, failures

    def by_page(pairs) -> dict[str, list[str]]:
        pages: dict[str, list[str]] = defaultdict(list)
        for page_id, event_id in pairs:
            pages[page_id].append(event_id)
        return dict(pages)

    published = [
        (r.key.decode(), json.loads(r.value)["id"])
        for r in read_topic([broker.bootstrap], TOPIC, timeout_s=DEADLINE_S)
    ]
    assert by_page(published) == by_page(written)
