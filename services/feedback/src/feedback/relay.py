"""`python -m feedback.relay`: publish the outbox to Kafka, in order, and mark what was sent.

A process of its own, so the API never waits for Kafka: a response is safe once
its outbox row is committed, and this loop delivers it whenever the broker is
reachable. Delivery is at least once (a crash between the broker's ack and the
commit publishes a row again); consumers recognise the event id.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from kafka import KafkaProducer
from kafka.errors import KafkaError
from sqlalchemy import Engine, Row, delete, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from feedback.config import RelaySettings, load_relay_settings
from feedback.models import OutboxEntry
from koe_kit import correlation, metrics
from koe_kit.config import ConfigError, exit_on_config_error
from koe_kit.db import among, claim, make_engine, rows_affected, session_factory, transaction
from koe_kit.heartbeat import Heartbeat
from koe_kit.kafka import close_producer, make_producer
from koe_kit.logs import setup_logging
from koe_kit.shutdown import GracefulStop

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 60.0
# The backlog gauges cost one indexed query; a few seconds old is fresh enough to alert on.
MEASURE_EVERY_S = 5.0


class Relay(GracefulStop):
    def __init__(
        self,
        settings: RelaySettings,
        engine: Engine,
        producer_factory: Callable[[], KafkaProducer] | None = None,
    ):
        self.settings = settings
        self.sessions = session_factory(engine)
        self.producer_factory = producer_factory or self._make_producer
        self.producer: KafkaProducer | None = None
        super().__init__()
        self._next_prune = 0.0
        self._next_measure = 0.0
        self.heartbeat = Heartbeat(settings.kafka.heartbeat_file, settings.kafka.stall_exit_s)

    def run(self) -> None:
        """Relay until stopped; a broker outage is waited out, never fatal."""
        initial = self.settings.kafka.retry_backoff_initial_s
        backoff = initial
        metrics.serve(self.settings.kafka.metrics_port, self.settings.kafka.metrics_host)
        self.heartbeat.watch()
        try:
            while not self.stopping:
                self.heartbeat.beat()
                try:
                    self._measure_now_and_then()
                    sent = self.relay_batch()
                    self._prune_now_and_then()
                    backoff = initial
                except (KafkaError, OperationalError) as exc:
                    self._drop_producer()
                    log.warning(
                        "broker or database unreachable, will retry",
                        extra={"error": f"{type(exc).__name__}: {exc}"[:300], "backoff_s": backoff},
                    )
                    self.pause(backoff)
                    backoff = min(backoff * 2, self.settings.kafka.retry_backoff_max_s)
                    continue
                if sent < self.settings.batch_size:
                    self.pause(self.settings.idle_ms / 1000)
        finally:
            self.heartbeat.stop_watching()
            self.close()

    def relay_batch(self) -> int:
        """Publish one batch of unsent rows in id order; return how many were marked sent.

        Raises KafkaError when the broker could not take the batch (after marking
        the rows before the first failure); those rows stay unsent for the next try.
        """
        producer = self._producer()
        with transaction(self.sessions) as session:
            # Rows another relay holds are skipped, so relays can run side by side.
            query = claim(
                session,
                select(OutboxEntry.id, OutboxEntry.topic, OutboxEntry.key, OutboxEntry.payload)
                .where(OutboxEntry.sent_at.is_(None))
                .order_by(OutboxEntry.id)
                .limit(self.settings.batch_size),
            )
            rows = _in_key_order(session, session.execute(query).all())
            if not rows:
                return 0
            futures = [
                producer.send(row.topic, key=row.key, value=row.payload.encode("utf-8"))
                for row in rows
            ]
            producer.flush(timeout=self.settings.send_timeout_s)
            sent: list[int] = []
            failure: KafkaError | None = None
            for row, future in zip(rows, futures, strict=True):
                try:
                    future.get(timeout=self.settings.send_timeout_s)
                except KafkaError as exc:
                    # Stop at the first failure: marking later rows would let a
                    # page's newer event overtake an older one still unsent.
                    failure = exc
                    break
                sent.append(row.id)
            if sent:
                session.execute(
                    update(OutboxEntry)
                    .where(OutboxEntry.id.in_(sent))
                    .values(sent_at=datetime.now(UTC))
                )
        # The request ids of what went out, so a grep for one finds its publication.
        published = {row.id: row.payload for row in rows}
        request_ids = [rid for i in sent if (rid := correlation.of_event(json.loads(published[i])))]
        log.info(
            "relayed",
            extra={
                "sent": len(sent),
                "unsent": len(rows) - len(sent),
                "request_ids": request_ids,
            },
        )
        if failure is not None:
            raise failure
        return len(sent)

    def prune(self, now: datetime | None = None) -> int:
        """Delete sent rows older than KOE_OUTBOX_KEEP_HOURS; return how many."""
        cutoff = (now or datetime.now(UTC)) - timedelta(hours=self.settings.keep_hours)
        with transaction(self.sessions) as session:
            result = session.execute(
                delete(OutboxEntry).where(
                    OutboxEntry.sent_at.is_not(None), OutboxEntry.sent_at < cutoff
                )
            )
        return rows_affected(result)

    def _prune_now_and_then(self) -> None:
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY_S
            pruned = self.prune()
            if pruned:
                log.info("pruned sent outbox rows", extra={"rows": pruned})

    def measure_backlog(self, now: datetime | None = None) -> None:
        """Set the outbox gauges: unsent rows, and how long the oldest has waited."""
        with transaction(self.sessions) as session:
            count, oldest = session.execute(
                select(func.count(), func.min(OutboxEntry.created_at)).where(
                    OutboxEntry.sent_at.is_(None)
                )
            ).one()
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)  # SQLite hands back naive UTC
        age = ((now or datetime.now(UTC)) - oldest).total_seconds() if oldest else 0.0
        metrics.OUTBOX_BACKLOG.labels("feedback").set(count)
        metrics.OUTBOX_OLDEST_AGE.labels("feedback").set(max(0.0, age))

    def _measure_now_and_then(self) -> None:
        if time.monotonic() >= self._next_measure:
            self._next_measure = time.monotonic() + MEASURE_EVERY_S
            self.measure_backlog()

    def _make_producer(self) -> KafkaProducer:
        timeout_ms = int(self.settings.send_timeout_s * 1000)
        # Bound every wait by the send timeout, so an outage surfaces as a
        # KafkaTimeoutError we back off from instead of a call that blocks for minutes.
        return make_producer(
            self.settings.kafka, bootstrap_timeout_ms=timeout_ms, max_block_ms=timeout_ms
        )

    def _producer(self) -> KafkaProducer:
        # Created lazily, and again after a failure: with no broker the
        # constructor itself raises (KafkaTimeoutError, or NoBrokersAvailable in
        # older kafka-python), both KafkaErrors.
        if self.producer is None:
            self.producer = self.producer_factory()
        return self.producer

    def _drop_producer(self) -> None:
        # Records still queued in a failed producer must not go out later behind
        # the retry of the same rows (duplicates out of order); start afresh.
        if self.producer is not None:
            close_producer(self.producer, timeout_s=0)
            self.producer = None

    def close(self) -> None:
        if self.producer is not None:
            close_producer(self.producer, timeout_s=self.settings.send_timeout_s)
            self.producer = None


# A claimed outbox row: id, topic, key, payload.
OutboxRow = Row[int, str, str, str]


def _in_key_order(session: Session, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
    """The claimed rows that no unsent row of their page, held by another relay, precedes.

    Relays side by side each claim rows no other holds (SKIP LOCKED), so another
    relay may hold a page's event that lies between two of ours; publishing past
    it would break the page's order (a replacing response would arrive before the
    response it replaces, and both would count). Rows from there on wait: once the
    other relay has sent its row (and committed, which is after Kafka took it) the
    next claim takes them. One relay alone holds every unsent row it sees.
    """
    if not rows:
        return []
    others = dict(
        session.execute(
            select(OutboxEntry.key, func.min(OutboxEntry.id))
            .where(
                OutboxEntry.sent_at.is_(None),
                among(session, OutboxEntry.key, list({row.key for row in rows})),
                ~among(session, OutboxEntry.id, [row.id for row in rows]),
            )
            .group_by(OutboxEntry.key)
        ).all()
    )
    return [row for row in rows if row.key not in others or row.id < others[row.key]]


def main() -> None:
    try:
        settings = load_relay_settings()
    except ConfigError as exc:
        exit_on_config_error(exc)
    setup_logging("feedback-relay")
    engine = make_engine(settings.database_url)
    relay = Relay(settings, engine)
    relay.install_signal_handlers()
    log.info("relay started", extra={"bootstrap": settings.kafka.bootstrap_servers})
    try:
        relay.run()
    finally:
        engine.dispose()
        log.info("relay stopped")


if __name__ == "__main__":
    main()
