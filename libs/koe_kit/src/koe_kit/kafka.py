"""Kafka transport: producer, topic creation, and the consumer loop.

The consumer loop follows arroyo's shape for kafka-python: poll a batch (by
size and by time) → decode and validate each message → hand the valid events to
the service's handler, which commits its own DB transaction → commit offsets
(offset + 1). Offsets are never auto-committed, so a crash anywhere before the
offset commit means redelivery, and handlers are idempotent.

Invalid messages are dead-lettered with the reason and skipped; too many in a
row stop the consumer (that smells like a bad deploy, not a bad message).
Transient failures (the database down, an SMTP 4xx) rewind the batch and retry
it with exponential backoff, polling meanwhile so the group keeps us.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewPartitions, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
)
from kafka.serializer import Serializer
from kafka.structs import OffsetAndMetadata
from sqlalchemy.exc import OperationalError

from koe_kit import correlation, events, metrics
from koe_kit.config import EnvReader
from koe_kit.heartbeat import Heartbeat
from koe_kit.kafka_security import PLAINTEXT, KafkaSecurity, load_kafka_security
from koe_kit.shutdown import GracefulStop

log = logging.getLogger(__name__)


class Retryable(Exception):
    """A failure that may pass by itself (a server down, a timeout): retry later."""


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: list[str]
    client_id: str
    # Consumer group timing. Real Kafka is happy with kafka-python's defaults;
    # the local Tansu broker answers JoinGroup only after about half the
    # rebalance timeout, so `make run` and the tests set these small.
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    batch_max_messages: int = 500
    batch_max_wait_ms: int = 200
    max_invalid_in_row: int = 100
    retry_backoff_initial_s: float = 0.5
    retry_backoff_max_s: float = 30.0
    # Every process that reads these settings is a long-running loop (consumer,
    # relay): its metrics port and heartbeat file live here for that reason.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    heartbeat_file: str | None = None
    # How long a loop waits for the broker at start (it may start after us), and how
    # long it may stop turning before it ends itself (koe_kit.heartbeat); None: never.
    start_wait_s: float = 300.0
    stall_exit_s: float | None = None
    security: KafkaSecurity = PLAINTEXT

    @classmethod
    def from_env(
        cls, env: EnvReader, client_id: str, default_batch_messages: int = 500
    ) -> KafkaSettings:
        """`default_batch_messages` is the service's own: large where a batch is one
        cheap DB transaction (the aggregator), small where each message is slow work
        that must fit between polls (the notifier's emails)."""
        return cls(
            bootstrap_servers=env.list(
                "KAFKA_BOOTSTRAP_SERVERS", hint="host:port[,host:port], e.g. 127.0.0.1:9092"
            ),
            client_id=env.str("KAFKA_CLIENT_ID", client_id),
            max_poll_interval_ms=env.int("KAFKA_MAX_POLL_INTERVAL_MS", 300_000, minimum=1000),
            session_timeout_ms=env.int("KAFKA_SESSION_TIMEOUT_MS", 10_000, minimum=1000),
            heartbeat_interval_ms=env.int("KAFKA_HEARTBEAT_INTERVAL_MS", 3_000, minimum=100),
            batch_max_messages=env.int("KOE_BATCH_MAX_MESSAGES", default_batch_messages, minimum=1),
            batch_max_wait_ms=env.int("KOE_BATCH_MAX_WAIT_MS", 200, minimum=1),
            max_invalid_in_row=env.int("KOE_MAX_INVALID_IN_ROW", 100, minimum=1),
            retry_backoff_initial_s=env.float("KOE_RETRY_BACKOFF_INITIAL_S", 0.5, minimum=0.01),
            retry_backoff_max_s=env.float("KOE_RETRY_BACKOFF_MAX_S", 30.0, minimum=0.01),
            metrics_port=env.int("KOE_METRICS_PORT", None, minimum=1, hint="a TCP port"),
            metrics_host=env.str("KOE_METRICS_HOST", "127.0.0.1", hint="0.0.0.0 in a container"),
            heartbeat_file=env.str("KOE_HEARTBEAT_FILE", None, hint="a file path"),
            start_wait_s=env.float("KOE_KAFKA_WAIT_S", 300.0, minimum=0, hint="seconds"),
            # Twice the group's default limit: a rebalance may hold one poll that long.
            stall_exit_s=env.float("KOE_STALL_EXIT_S", 600.0, minimum=10, hint="seconds"),
            security=load_kafka_security(env),
        )


class _Utf8Key(Serializer):
    def serialize(self, topic: str, headers: Any, data: Any) -> bytes | None:
        return None if data is None else str(data).encode("utf-8")


def make_producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer that waits for all in-sync replicas and keeps per-key order."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "acks": "all",
        "retries": 5,
        # One request in flight per connection: a retried batch cannot overtake
        # the next one, so a page's events stay in order.
        "max_in_flight_requests_per_connection": 1,
        "linger_ms": 5,
        "key_serializer": _Utf8Key(),
        **settings.security.client_options(),
    }
    options.update(overrides)
    return KafkaProducer(**options)


def close_producer(producer: KafkaProducer, timeout_s: float) -> None:
    """Close a producer in bounded time, even with records an absent broker never took.

    kafka-python's close() flushes first and raises KafkaTimeoutError when records
    are still buffered at the timeout (close(0) always does then), and a record
    sent just as the broker went away was seen to outlive its delivery timeout
    (kafka-python 3.0). Callers keep what they send in an outbox, so dropping the
    buffered records here loses nothing: they are sent again later.
    """
    try:
        producer.close(timeout=timeout_s)
        return
    except KafkaTimeoutError:
        log.warning("producer closed with records still buffered; they stay unsent")
    # No public way to drop buffered records: make the sender abort them.
    producer._sender.force_close()
    try:
        producer.close(timeout=1)
    except KafkaTimeoutError:
        log.warning("producer sender did not stop within 1 s; abandoning it")


def wait_for_kafka(
    settings: KafkaSettings,
    stop: GracefulStop | None = None,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Return once the broker answers; back off between tries (1 s doubling to 15 s),
    and give up after settings.start_wait_s with a message saying what to check.

    Without this a client's constructor waits 30 s for a broker still starting and
    dies with a traceback; compose starts Kafka and koe together."""
    started = time.monotonic()
    backoff = 1.0
    attempt = 0
    while stop is None or not stop.stopping:
        attempt += 1
        waited = time.monotonic() - started
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=settings.bootstrap_servers,
                client_id=settings.client_id,
                bootstrap_timeout_ms=int(min(5.0, max(1.0, settings.start_wait_s - waited)) * 1000),
                **settings.security.client_options(),
            )
        except KafkaError as exc:
            waited = time.monotonic() - started
            if waited + backoff > settings.start_wait_s:
                raise SystemExit(
                    f"koe: cannot start, Kafka at {','.join(settings.bootstrap_servers)} did not "
                    f"answer in {waited:.0f} s ({type(exc).__name__}). Check that the broker "
                    "runs and KAFKA_BOOTSTRAP_SERVERS / KAFKA_SECURITY_PROTOCOL; "
                    "KOE_KAFKA_WAIT_S sets how long to wait."
                ) from None
            log.warning(
                "waiting for Kafka",
                extra={
                    "bootstrap_servers": settings.bootstrap_servers,
                    "attempt": attempt,
                    "waited_s": round(waited, 1),
                    "next_try_s": backoff,
                    "error": type(exc).__name__,
                },
            )
            if heartbeat is not None:
                heartbeat.beat()  # waiting is the loop turning, not hanging
            if stop is None:
                time.sleep(backoff)
            else:
                stop.pause(backoff)
            backoff = min(backoff * 2, 15.0)
            continue
        admin.close()
        if attempt > 1:
            log.info("Kafka answered", extra={"waited_s": round(time.monotonic() - started, 1)})
        return


def ensure_topics(
    bootstrap_servers: Sequence[str],
    names: Sequence[str] | None = None,
    replication_factor: int = 1,
    security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Create the topics of schemas/topics.yaml that do not exist yet, and give existing
    ones the partitions topics.yaml added (Kafka cannot take partitions away).

    With replicas, a write needs all but one in sync (min.insync.replicas): with
    acks=all an accepted event then survives the loss of a broker."""
    wanted = events.topics()
    configs = {} if replication_factor < 2 else {"min.insync.replicas": str(replication_factor - 1)}
    admin = KafkaAdminClient(
        bootstrap_servers=list(bootstrap_servers),
        client_id="koe-topics",
        **security.client_options(),
    )
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(
                name,
                spec["partitions"],
                replication_factor,
                topic_configs={"retention.ms": str(spec["retention_ms"]), **configs},
            )
            for name, spec in wanted.items()
            if name not in existing and (names is None or name in names)
        ]
        if missing:
            # Another process may create one between list and create.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
        grow = {}
        present = [n for n in wanted if n in existing]
        for described in admin.describe_topics(present) if present else []:
            name, have = described["name"], len(described["partitions"])
            if (names is None or name in names) and wanted[name]["partitions"] > have:
                grow[name] = NewPartitions(total_count=wanted[name]["partitions"])
        if grow:
            log.info(
                "adding partitions", extra={"topics": {n: p.total_count for n, p in grow.items()}}
            )
            admin.create_partitions(grow)
    finally:
        admin.close()


def read_topic(
    bootstrap_servers: Sequence[str],
    topic: str,
    timeout_s: float = 30.0,
    security: KafkaSecurity = PLAINTEXT,
) -> list[ConsumerRecord]:
    """Every record on a topic, from the beginning to the end offsets read at the
    start, in partition then offset order. For tests and for operators inspecting a
    dead-letter topic; it joins no group and commits nothing."""
    consumer = KafkaConsumer(
        bootstrap_servers=list(bootstrap_servers),
        enable_auto_commit=False,
        **security.client_options(),
    )
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout_s}s")
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        # Tansu (the local broker) reports as end offset the last record batch's base
        # offset + 1, so a fetch cut short inside that batch looks like the end: read on
        # until a poll brings nothing more (with Kafka it brings nothing at once).
        while time.monotonic() < deadline and (more := consumer.poll(timeout_ms=100)):
            for batch in more.values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


@dataclass
class Message:
    """One consumed message that passed decoding and schema validation."""

    topic: str
    partition: int
    offset: int
    key: str | None
    event: dict[str, Any]


Handler = Callable[[list[Message]], None]


@dataclass
class _Batch:
    messages: list[Message] = field(default_factory=list)
    # first offset seen and next offset to commit, per partition
    first: dict[TopicPartition, int] = field(default_factory=dict)
    next: dict[TopicPartition, int] = field(default_factory=dict)

    def note(self, tp: TopicPartition, offset: int) -> None:
        self.first.setdefault(tp, offset)
        self.next[tp] = offset + 1

    def __bool__(self) -> bool:
        return bool(self.next)


class ConsumerLoop(GracefulStop):
    """Runs one consumer group member until stopped (SIGTERM/SIGINT or `stop()`)."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        topic: str,
        handler: Handler,
        after_commit: Callable[[], None] | None = None,
        on_idle: Callable[[], None] | None = None,
    ):
        self.settings = settings
        self.group_id = group_id
        self.topic = topic
        # Declared beside the topic in schemas/topics.yaml, the one list of topics.
        self.dead_letter_topic = events.dead_letter_topic(topic)
        self.event_types = events.event_types_on(topic)
        self.handler = handler
        self.after_commit = after_commit
        # Called when a batch's wait brought nothing: work that does not come from the
        # topic (e.g. alerts released on a dashboard) is not left until the next message.
        self.on_idle = on_idle
        super().__init__()
        self._batch = _Batch()
        self._invalid_in_row = 0
        self._retrying = False
        self.consumer: KafkaConsumer | None = None
        self.dlq: KafkaProducer | None = None
        self.heartbeat = Heartbeat(settings.heartbeat_file, settings.stall_exit_s)
        self._labels = (group_id, topic)
        # Every counter exists at 0 from the start: Prometheus' increase() needs a value
        # before the first dead letter to see it (deploy/prometheus/koe-rules.yml).
        for counter in (metrics.DEAD_LETTERED, metrics.BATCH_RETRIES, metrics.EVENTS_HANDLED):
            counter.labels(*self._labels)

    def run(self) -> None:
        s = self.settings
        metrics.serve(s.metrics_port, s.metrics_host)
        self.heartbeat.watch()
        wait_for_kafka(s, self, self.heartbeat)
        if self.stopping:
            self.heartbeat.stop_watching()
            return
        self.consumer = KafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=s.client_id,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=s.max_poll_interval_ms,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_records=s.batch_max_messages,
            **s.security.client_options(),
        )
        self.dlq = make_producer(s)
        self.consumer.subscribe([self.topic], listener=_FlushOnRevoke(self))
        log.info("consumer started", extra={"group": self.group_id, "topic": self.topic})
        if self.after_commit:
            self.after_commit()  # finish what a previous run committed but did not publish
        try:
            while not self.stopping:
                self._fill_batch()
                if not self._batch and self.on_idle and not self.stopping:
                    self.on_idle()
                self._process_batch()
            self._process_batch()
        finally:
            self.heartbeat.stop_watching()
            self.consumer.close(autocommit=False)
            close_producer(self.dlq, timeout_s=10)
            log.info("consumer stopped", extra={"group": self.group_id})

    def _fill_batch(self) -> None:
        assert self.consumer is not None
        s = self.settings
        deadline = time.monotonic() + s.batch_max_wait_ms / 1000
        while not self.stopping:
            room = s.batch_max_messages - len(self._batch.messages)
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if room <= 0 or remaining_ms <= 0:
                return
            records = self.consumer.poll(timeout_ms=remaining_ms, max_records=room)
            self.heartbeat.beat()
            for tp, batch in records.items():
                for record in batch:
                    self._take(tp, record)

    def _take(self, tp: TopicPartition, record: Any) -> None:
        self._batch.note(tp, record.offset)
        try:
            event = events.decode(record.value)
            if event["type"] not in self.event_types:
                raise events.InvalidEvent(
                    f"type: {event['type']!r} does not belong on topic {self.topic}"
                )
        except events.InvalidEvent as exc:
            self._dead_letter(tp, record, exc.reason)
            return
        self._invalid_in_row = 0
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        self._batch.messages.append(Message(tp.topic, tp.partition, record.offset, key, event))

    def dead_letter(self, message: Message, reason: str) -> None:
        """For handlers: a valid event that can never be processed (e.g. SMTP 550)."""
        assert self.dlq is not None
        self._send_dead_letter(
            events.encode(message.event),
            message.key,
            reason,
            message.topic,
            message.partition,
            message.offset,
        )

    def _dead_letter(self, tp: TopicPartition, record: Any, reason: str) -> None:
        self._invalid_in_row += 1
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        self._send_dead_letter(record.value, key, reason, tp.topic, tp.partition, record.offset)
        if self._invalid_in_row >= self.settings.max_invalid_in_row:
            raise SystemExit(
                f"{self._invalid_in_row} invalid messages in a row on {self.topic}: "
                "stopping; is a producer sending the wrong format?"
            )

    def _send_dead_letter(
        self,
        value: bytes | None,
        key: str | None,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        assert self.dlq is not None
        metrics.DEAD_LETTERED.labels(self.group_id, topic).inc()
        log.warning(
            "dead-lettered",
            extra={"reason": reason, "topic": topic, "partition": partition, "offset": offset},
        )
        headers = [
            ("koe-dlq-reason", reason.encode("utf-8")[:1000]),
            ("koe-dlq-topic", topic.encode()),
            ("koe-dlq-partition", str(partition).encode()),
            ("koe-dlq-offset", str(offset).encode()),
            ("koe-dlq-group", self.group_id.encode()),
        ]
        # The dead letter must be stored before the offset that skips it is committed.
        self.dlq.send(
            self.dead_letter_topic, key=key or "", value=value or b"", headers=headers
        ).get(timeout=30)

    def _process_batch(self) -> None:
        """Hand the batch to the handler, retrying transient failures, then commit."""
        assert self.consumer is not None
        backoff = self.settings.retry_backoff_initial_s
        while True:
            batch = self._batch
            if not batch:
                return  # empty, or discarded by a rebalance during a retry
            try:
                if batch.messages:
                    self._handle(batch.messages)
                break
            except (Retryable, OperationalError) as exc:
                if self.stopping:
                    # Shutting down mid-retry: leave offsets uncommitted; the next
                    # member starts this batch again.
                    self._batch = _Batch()
                    return
                metrics.BATCH_RETRIES.labels(*self._labels).inc()
                log.warning(
                    "transient failure, retrying",
                    extra={"error": str(exc)[:500], "backoff_s": backoff},
                )
                self._wait(backoff)
                backoff = min(backoff * 2, self.settings.retry_backoff_max_s)
        self._batch = _Batch()
        try:
            self.consumer.commit(
                {tp: OffsetAndMetadata(nxt, "", -1) for tp, nxt in batch.next.items()}
            )
        except CommitFailedError:
            # The group moved on while we worked; the DB already has the batch and
            # the new owner's redelivery is skipped by the idempotent handler.
            log.warning("offset commit refused after a rebalance; redelivery is harmless")
        self._measure_lag(batch.next)
        if self.after_commit:
            self.after_commit()

    def _handle(self, messages: list[Message]) -> None:
        """Run the handler with the batch's request ids in context, measured and logged."""
        started = time.perf_counter()
        with correlation.for_batch([m.event for m in messages]):
            self.handler(messages)
        metrics.BATCH_SECONDS.labels(*self._labels).observe(time.perf_counter() - started)
        metrics.BATCH_MESSAGES.labels(*self._labels).observe(len(messages))
        metrics.EVENTS_HANDLED.labels(*self._labels).inc(len(messages))
        # One line per batch (not per event: the aggregator takes thousands a second)
        # naming every request id in it, so a grep for one id finds its batch.
        request_ids = [rid for m in messages if (rid := correlation.of_event(m.event))]
        log.info(
            "batch handled",
            extra={
                "group": self.group_id,
                "events": len(messages),
                "event_ids": [m.event["id"] for m in messages],
                "request_ids": request_ids,
            },
        )

    def _measure_lag(self, committed: dict[TopicPartition, int]) -> None:
        """Lag of the partitions just committed: the high watermark the last fetch
        reported (no extra request) minus the offset committed."""
        assert self.consumer is not None
        for tp, offset in committed.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(
                    max(0, highwater - offset)
                )

    def _wait(self, seconds: float) -> None:
        """Sleep while polling with every partition paused, so the group keeps us."""
        assert self.consumer is not None
        assignment = self.consumer.assignment()
        self.consumer.pause(*assignment)
        deadline = time.monotonic() + seconds
        self._retrying = True
        try:
            while not self.stopping and time.monotonic() < deadline:
                self.heartbeat.beat()
                records = self.consumer.poll(timeout_ms=min(500, int(seconds * 1000) + 1))
                assert not records, "paused partitions returned records"
        finally:
            self._retrying = False
            self.consumer.resume(*self.consumer.assignment())


class _FlushOnRevoke(ConsumerRebalanceListener):
    """Finish and commit the batch in hand before its partitions move elsewhere."""

    def __init__(self, loop: ConsumerLoop):
        self.loop = loop

    def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            # Another member reports this partition's lag from now on.
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(self.loop.group_id, tp.topic, str(tp.partition))
        if self.loop._retrying:
            # Mid-retry (e.g. database down): give the batch up uncommitted; the
            # new owner of these partitions will deliver it again.
            self.loop._batch = _Batch()
            return
        try:
            self.loop._process_batch()
        except Exception:
            # Could not commit: the new owner will redeliver; handlers are idempotent.
            log.exception("could not finish the batch before a rebalance")
            self.loop._batch = _Batch()

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(str(tp) for tp in assigned)})
