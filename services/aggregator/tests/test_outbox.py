"""Several aggregator consumers publishing one alert outbox on PostgreSQL (compose's
`--scale aggregator-consumer=3`): each alert goes out once, a page's in order."""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from aggregator.alerts.models import AlertOutbox
from aggregator.alerts.outbox import OutboxPublisher
from aggregator.migrate import migrate
from koe_kit.db import make_engine, session_factory, transaction
from koe_kit.kafka import KafkaSettings, ensure_topics, make_producer, read_topic

ALERTS = "koe.alerts.v1"


@pytest.fixture
def pg_url(new_pg_database) -> str:
    url = new_pg_database()
    migrate(url)
    return url


def write_outbox(url: str, pages: int, per_page: int) -> list[tuple[str, str]]:
    """Unsent alerts, each page's `per_page` ones written one after another:
    (page id, alert id) in the order they were written."""
    written = [(f"page-{p:03d}", str(uuid.uuid4())) for p in range(pages) for _ in range(per_page)]
    engine = make_engine(url)
    try:
        with transaction(session_factory(engine)) as session:
            for page_id, alert_id in written:
                session.add(
                    AlertOutbox(
                        alert_id=alert_id,
                        page_id=page_id,
                        payload=json.dumps({"id": alert_id, "subject": page_id}),
                        created_at=datetime.now(UTC),
                    )
                )
    finally:
        engine.dispose()
    return written


def race(url: str, bootstrap: str, publishers: int, chunk: int) -> list[int]:
    """Publishers of their own (engine, producer), started at one moment; what each sent."""
    settings = KafkaSettings(bootstrap_servers=[bootstrap], client_id="koe-outbox-test")
    engines = [make_engine(url) for _ in range(publishers)]
    racers = [
        OutboxPublisher(session_factory(engine), make_producer(settings), chunk=chunk)
        for engine in engines
    ]
    start = threading.Barrier(publishers)
    sent = [0] * publishers
    failures: list[BaseException] = []

    def publish(i: int) -> None:
        try:
            start.wait()
            sent[i] = racers[i]()
        except BaseException as exc:  # the test wants to see it
            failures.append(exc)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(publishers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for racer, engine in zip(racers, engines, strict=True):
        racer.close()
        engine.dispose()
    assert not failures, failures
    return sent


def published(bootstrap: str) -> list[tuple[str, str]]:
    """(page id, alert id) of every record on the alerts topic, in partition order."""
    records = read_topic([bootstrap], ALERTS)
    return [(r.key.decode(), json.loads(r.value)["id"]) for r in records]


def unsent(url: str) -> int:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            return len(
                session.scalars(select(AlertOutbox.id).where(AlertOutbox.sent_at.is_(None))).all()
            )
    finally:
        engine.dispose()


def test_racing_publishers_publish_each_alert_exactly_once(broker, pg_url):
    ensure_topics([broker.bootstrap], [ALERTS])
    written = write_outbox(pg_url, pages=90, per_page=1)

    sent = race(pg_url, broker.bootstrap, publishers=3, chunk=4)

    out = published(broker.bootstrap)
    assert sorted(alert for _, alert in out) == sorted(alert for _, alert in written)
    assert sum(sent) == len(written)
    assert unsent(pg_url) == 0


def test_racing_publishers_keep_each_pages_alerts_in_order(broker, pg_url):
    # A page's drop and its recovery, both waiting (the broker was away): the recovery
    # must not overtake the drop on the page's partition.
    ensure_topics([broker.bootstrap], [ALERTS])
    written = write_outbox(pg_url, pages=20, per_page=3)

    race(pg_url, broker.bootstrap, publishers=2, chunk=1)

    def by_page(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
        pages: dict[str, list[str]] = defaultdict(list)
        for page_id, alert_id in pairs:
            pages[page_id].append(alert_id)
        return dict(pages)

    assert by_page(published(broker.bootstrap)) == by_page(written)
    assert unsent(pg_url) == 0
