"""What a handler receives: a consumed message that decoded and validated.

Decoding is a pure step between the poll and the batch: a record that is not a
valid event of a type its topic carries raises events.InvalidEvent, which the loop
dead-letters (koe_kit.kafka.dead_letters) instead of handing on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition

from koe_kit import events


@dataclass
class Message:
    """One consumed message that passed decoding and schema validation."""

    topic: str
    partition: int
    offset: int
    key: str | None
    event: dict[str, Any]


Handler = Callable[[list[Message]], None]


def record_key(record: Any) -> str | None:
    """A record's key as text (koe's keys are page ids; a bad byte must not stop us)."""
    return record.key.decode("utf-8", "replace") if record.key is not None else None


class Decoder:
    """Turns the records of one topic into Messages, or raises events.InvalidEvent."""

    def __init__(self, topic: str):
        self.topic = topic
        # Declared beside the topic in schemas/topics.yaml, the one list of topics.
        self.event_types = events.event_types_on(topic)

    def __call__(self, tp: TopicPartition, record: Any) -> Message:
        event = events.decode(record.value)
        if event["type"] not in self.event_types:
            raise events.InvalidEvent(
                f"type: {event['type']!r} does not belong on topic {self.topic}"
            )
        return Message(tp.topic, tp.partition, record.offset, record_key(record), event)
