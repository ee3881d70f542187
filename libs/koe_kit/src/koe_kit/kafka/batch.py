"""A batch in the making, and when to stop filling it: pure, no broker.

A batch closes when it holds `max_messages` valid events or `max_wait_s` after it
started, whichever comes first. Its offsets cover every record it saw, the invalid
ones too (they are dead-lettered, and committing past them is what skips them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from koe_kit.kafka.messages import Message


@dataclass
class Batch:
    messages: list[Message] = field(default_factory=list)
    # the next offset to commit (last seen + 1), per partition
    next: dict[TopicPartition, int] = field(default_factory=dict)

    def note(self, tp: TopicPartition, offset: int) -> None:
        """A record was seen, valid or not: the commit moves past it."""
        self.next[tp] = offset + 1

    def offsets_to_commit(self) -> dict[TopicPartition, OffsetAndMetadata]:
        return {tp: OffsetAndMetadata(nxt, "", -1) for tp, nxt in self.next.items()}

    def __bool__(self) -> bool:
        # A batch of dead letters only still has offsets to commit.
        return bool(self.next)


class Poll(NamedTuple):
    max_records: int
    timeout_ms: int


@dataclass(frozen=True)
class BatchLimits:
    max_messages: int
    max_wait_s: float

    def next_poll(self, batch: Batch, deadline: float, now: float) -> Poll | None:
        """How much the next poll may bring and how long it may wait; None once the
        batch is full or its time (`deadline`, monotonic seconds) is up."""
        room = self.max_messages - len(batch.messages)
        remaining_ms = int((deadline - now) * 1000)
        if room <= 0 or remaining_ms <= 0:
            return None
        return Poll(room, remaining_ms)
