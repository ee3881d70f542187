"""support.unread, which the "exactly one" checks wait on (support.drained): it sees the
records a group has not committed, so a wait on it cannot pass while one is in flight."""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from support import publish, unread

TOPIC = "koe.test.drained.v1"


def test_unread_counts_what_the_group_has_not_committed(broker):
    sent = publish(broker.bootstrap, TOPIC, [b"one", b"two", b"three"], key="same-key")
    [partition] = {m.partition for m in sent}
    # At least one: Tansu counts a record batch's end as its first record's offset + 1.
    assert unread(broker.bootstrap, "late-group", TOPIC) >= 1

    group = KafkaConsumer(
        bootstrap_servers=[broker.bootstrap], group_id="late-group", enable_auto_commit=False
    )
    try:
        tp = TopicPartition(TOPIC, partition)
        group.commit({tp: OffsetAndMetadata(sent[1].offset + 1, "", -1)})
        # Inside the last record batch, where Tansu's end offset is already passed.
        assert unread(broker.bootstrap, "late-group", TOPIC) == 1
        group.commit({tp: OffsetAndMetadata(sent[2].offset + 1, "", -1)})
        assert unread(broker.bootstrap, "late-group", TOPIC) == 0
    finally:
        group.close()
