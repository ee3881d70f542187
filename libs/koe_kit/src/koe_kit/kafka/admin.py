"""Talking to the broker outside a consumer group: wait for it, create topics, read one.

None of these joins a group or commits an offset.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewPartitions, NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, TopicAlreadyExistsError

from koe_kit import events
from koe_kit.heartbeat import Heartbeat
from koe_kit.kafka.settings import KafkaSettings
from koe_kit.kafka_security import PLAINTEXT, KafkaSecurity
from koe_kit.shutdown import GracefulStop

log = logging.getLogger(__name__)


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
