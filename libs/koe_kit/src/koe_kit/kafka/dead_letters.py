"""Dead letters: where messages go that can never be processed, and when to stop.

One DeadLetterPolicy per consumer, handed at construction both to the loop (records
that fail decoding or validation) and to the handler (a valid event it can never
process, e.g. an email an SMTP server refuses for good). A dead letter is stored
before the offset that skips it is committed; its headers say where it came from
and why, for `python -m koe_kit.dlq show|redrive`.

Too many invalid records in a row smell like a bad deploy, not a bad message: the
policy stops the consumer then (arroyo's DlqLimit). A handler's dead letters do not
count towards that limit: their events were valid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from kafka import KafkaProducer, TopicPartition

from koe_kit import events, metrics
from koe_kit.kafka.messages import Message, record_key
from koe_kit.kafka.producer import close_producer, make_producer
from koe_kit.kafka.settings import KafkaSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    value: bytes
    key: str
    reason: str
    # where the message came from
    topic: str
    partition: int
    offset: int

    def headers(self, group_id: str) -> list[tuple[str, bytes]]:
        return [
            ("koe-dlq-reason", self.reason.encode("utf-8")[:1000]),
            ("koe-dlq-topic", self.topic.encode()),
            ("koe-dlq-partition", str(self.partition).encode()),
            ("koe-dlq-offset", str(self.offset).encode()),
            ("koe-dlq-group", group_id.encode()),
        ]


class DeadLetterSink(Protocol):
    """Stores dead letters; `send` returns once the letter is stored."""

    def open(self) -> None: ...

    def send(
        self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None: ...

    def close(self) -> None: ...


class KafkaDeadLetterSink:
    """Dead letters to a Kafka topic, with a producer of their own opened by the loop."""

    def __init__(self, settings: KafkaSettings):
        self.settings = settings
        self.producer: KafkaProducer | None = None

    def open(self) -> None:
        self.producer = make_producer(self.settings)

    def send(self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        if self.producer is None:
            raise RuntimeError("dead letters sent before the consumer loop started")
        self.producer.send(topic, key=key, value=value, headers=headers).get(timeout=30)

    def close(self) -> None:
        if self.producer is not None:
            close_producer(self.producer, timeout_s=10)
            self.producer = None


class InvalidInARow:
    """Counts invalid records since the last valid one; says when there were too many."""

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0

    def invalid(self) -> bool:
        """One more invalid record; True once `limit` came in a row."""
        self.count += 1
        return self.count >= self.limit

    def valid(self) -> None:
        self.count = 0


class DeadLetterPolicy:
    def __init__(self, sink: DeadLetterSink, *, group_id: str, topic: str, max_invalid_in_row: int):
        self.sink = sink
        self.group_id = group_id
        self.source_topic = topic
        # Declared beside the topic in schemas/topics.yaml, the one list of topics.
        self.topic = events.dead_letter_topic(topic)
        self.in_a_row = InvalidInARow(max_invalid_in_row)
        # At 0 from the start: Prometheus' increase() needs a value before the first
        # dead letter to see it (deploy/prometheus/koe-rules.yml).
        metrics.DEAD_LETTERED.labels(group_id, topic)

    @classmethod
    def to_kafka(cls, settings: KafkaSettings, *, group_id: str, topic: str) -> DeadLetterPolicy:
        """The policy of a consumer of `topic` in `group_id`: to the topic's dead-letter
        topic, stopping after settings.max_invalid_in_row invalid records in a row."""
        return cls(
            KafkaDeadLetterSink(settings),
            group_id=group_id,
            topic=topic,
            max_invalid_in_row=settings.max_invalid_in_row,
        )

    def open(self) -> None:
        self.sink.open()

    def close(self) -> None:
        self.sink.close()

    def valid(self) -> None:
        """A record decoded: the run of invalid ones is over."""
        self.in_a_row.valid()

    def invalid(self, tp: TopicPartition, record: Any, reason: str) -> None:
        """For the loop: a record that is not a valid event. Raise SystemExit once too
        many came in a row (after storing this one too)."""
        too_many = self.in_a_row.invalid()
        self._send(
            DeadLetter(
                record.value or b"",
                record_key(record) or "",
                reason,
                tp.topic,
                tp.partition,
                record.offset,
            )
        )
        if too_many:
            raise SystemExit(
                f"{self.in_a_row.count} invalid messages in a row on {self.source_topic}: "
                "stopping; is a producer sending the wrong format?"
            )

    def dead_letter(self, message: Message, reason: str) -> None:
        """For handlers: a valid event that can never be processed (e.g. SMTP 550)."""
        self._send(
            DeadLetter(
                events.encode(message.event),
                message.key or "",
                reason,
                message.topic,
                message.partition,
                message.offset,
            )
        )

    def _send(self, letter: DeadLetter) -> None:
        metrics.DEAD_LETTERED.labels(self.group_id, letter.topic).inc()
        log.warning(
            "dead-lettered",
            extra={
                "reason": letter.reason,
                "topic": letter.topic,
                "partition": letter.partition,
                "offset": letter.offset,
            },
        )
        self.sink.send(self.topic, letter.key, letter.value, letter.headers(self.group_id))


class DeadLetters(Protocol):
    """What a handler needs of the policy: somewhere to put what it can never process."""

    def dead_letter(self, message: Message, reason: str) -> None: ...
