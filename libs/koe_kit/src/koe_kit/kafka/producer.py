"""The producer every koe process sends with, and how to close it in bounded time."""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError
from kafka.serializer import Serializer

from koe_kit.kafka.settings import KafkaSettings

log = logging.getLogger(__name__)


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
