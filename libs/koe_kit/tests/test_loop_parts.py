"""The consumer loop's decisions without a broker: what a record is, what a batch
commits and when it is full, where dead letters go and when there are too many, and
what a handler's failure means. The broker tests (test_consumer_loop.py) prove the
wiring."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata
from sqlalchemy.exc import OperationalError

from koe_kit import events
from koe_kit.kafka import ConsumerLoop, DeadLetterPolicy, KafkaSettings, Message, Retryable
from koe_kit.kafka.batch import Batch, BatchLimits, Poll
from koe_kit.kafka.messages import Decoder
from koe_kit.kafka.retry import Backoff, Decision, decide

FEEDBACK = "koe.feedback.submitted.v1"
ALERTS = "koe.alerts.v1"
EXAMPLE = Path(__file__).parents[3] / "schemas/examples/koe.feedback.submitted.v1/tsu-dx-page.json"
P0, P1 = TopicPartition(FEEDBACK, 0), TopicPartition(FEEDBACK, 1)


def good_value() -> bytes:
    return EXAMPLE.read_bytes()


def record(tp: TopicPartition, offset: int, value: bytes | None, key: bytes | None = b"p1"):
    return ConsumerRecord(tp.topic, tp.partition, -1, offset, 0, 0, key, value, [], None, 0, 0, 0)


class StoredLetters:
    """A dead-letter sink that keeps what it is sent (an in-memory twin of the topic)."""

    def __init__(self) -> None:
        self.letters: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.opened = False

    def open(self) -> None:
        self.opened = True

    def send(self, topic: str, key: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.letters.append((topic, key, value, {k: v.decode() for k, v in headers}))

    def close(self) -> None:
        self.opened = False


def policy(sink: StoredLetters, max_invalid_in_row: int = 3) -> DeadLetterPolicy:
    return DeadLetterPolicy(
        sink, group_id="aggregator", topic=FEEDBACK, max_invalid_in_row=max_invalid_in_row
    )


# --- decoding -------------------------------------------------------------------------


def test_a_valid_record_becomes_a_message_with_its_place_and_key():
    message = Decoder(FEEDBACK)(P1, record(P1, 7, good_value(), key=b"page-\xff"))
    assert (message.topic, message.partition, message.offset) == (FEEDBACK, 1, 7)
    assert message.key == "page-\ufffd"  # a bad byte in a key does not stop the consumer
    assert message.event == json.loads(good_value())


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not JSON"),
        (None, "empty message (tombstone)"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_record_that_is_no_event_is_invalid_with_the_reason(value, reason):
    with pytest.raises(events.InvalidEvent) as invalid:
        Decoder(FEEDBACK)(P0, record(P0, 0, value))
    assert invalid.value.reason.startswith(reason)


def test_a_valid_event_on_the_wrong_topic_is_invalid():
    alerts = TopicPartition(ALERTS, 0)
    with pytest.raises(events.InvalidEvent) as invalid:
        Decoder(ALERTS)(alerts, record(alerts, 0, good_value()))
    assert invalid.value.reason == (f"type: {FEEDBACK!r} does not belong on topic {ALERTS}")


# --- batching -------------------------------------------------------------------------


def test_a_batch_commits_past_the_last_record_of_each_partition_invalid_ones_too():
    batch = Batch()
    assert not batch
    for tp, offset in [(P0, 4), (P1, 10), (P0, 5), (P0, 6)]:
        batch.note(tp, offset)
    assert batch  # nothing valid in it, but offsets to commit: the dead letters' skip
    assert batch.messages == []
    assert batch.offsets_to_commit() == {
        P0: OffsetAndMetadata(7, "", -1),
        P1: OffsetAndMetadata(11, "", -1),
    }


def test_a_batch_polls_for_the_room_it_has_until_full_or_its_time_is_up():
    limits = BatchLimits(max_messages=3, max_wait_s=0.2)
    batch = Batch()
    started = 100.0
    deadline = started + limits.max_wait_s
    assert limits.next_poll(batch, deadline, now=started) == Poll(max_records=3, timeout_ms=200)
    batch.note(P0, 0)  # an invalid record takes no room
    batch.messages.append(Message(FEEDBACK, 0, 1, "p1", {}))
    assert limits.next_poll(batch, deadline, now=started + 0.05) == Poll(2, 150)
    assert limits.next_poll(batch, deadline, now=deadline) is None
    batch.messages += [Message(FEEDBACK, 0, n, "p1", {}) for n in (2, 3)]
    assert limits.next_poll(batch, deadline, now=started) is None


# --- dead letters ---------------------------------------------------------------------


def test_an_invalid_record_is_stored_unchanged_with_where_it_came_from_and_why():
    sink = StoredLetters()
    policy(sink).invalid(P1, record(P1, 42, b"{not json", key=b"p9"), "not JSON: oops")
    assert sink.letters == [
        (
            "koe.feedback.submitted.dlq.v1",
            "p9",
            b"{not json",
            {
                "koe-dlq-reason": "not JSON: oops",
                "koe-dlq-topic": FEEDBACK,
                "koe-dlq-partition": "1",
                "koe-dlq-offset": "42",
                "koe-dlq-group": "aggregator",
            },
        )
    ]


def test_too_many_invalid_in_a_row_stop_the_consumer_after_storing_the_last():
    sink = StoredLetters()
    dead_letters = policy(sink, max_invalid_in_row=3)
    offsets = itertools.count()
    for _ in range(2):
        dead_letters.invalid(P0, record(P0, next(offsets), b"garbage"), "not JSON")
    with pytest.raises(SystemExit, match=f"3 invalid messages in a row on {FEEDBACK}"):
        dead_letters.invalid(P0, record(P0, next(offsets), b"garbage"), "not JSON")
    assert len(sink.letters) == 3


def test_a_valid_record_ends_the_run_of_invalid_ones():
    sink = StoredLetters()
    dead_letters = policy(sink, max_invalid_in_row=3)
    for offset in range(10):
        if offset % 3 == 2:
            dead_letters.valid()
        else:
            dead_letters.invalid(P0, record(P0, offset, b"garbage"), "not JSON")
    assert len(sink.letters) == 7  # never three in a row: still consuming


def test_a_handlers_dead_letters_are_valid_events_and_do_not_count_towards_the_limit():
    sink = StoredLetters()
    dead_letters = policy(sink, max_invalid_in_row=1)
    event = json.loads(good_value())
    for offset in range(3):
        dead_letters.dead_letter(Message(FEEDBACK, 0, offset, None, event), "SMTP 550")
    assert [(key, json.loads(value)) for _, key, value, _ in sink.letters] == [("", event)] * 3
    assert [headers["koe-dlq-offset"] for *_, headers in sink.letters] == ["0", "1", "2"]


def test_the_loop_takes_the_policy_its_handler_got_and_refuses_anothers():
    settings = KafkaSettings(["127.0.0.1:9"], "test")
    dead_letters = policy(StoredLetters())
    loop = ConsumerLoop(
        settings, group_id="aggregator", topic=FEEDBACK, handler=print, dead_letters=dead_letters
    )
    assert loop.dead_letters is dead_letters
    assert loop.dead_letter_topic == "koe.feedback.submitted.dlq.v1"
    with pytest.raises(ValueError, match="given to the loop of koe.alerts.v1"):
        ConsumerLoop(
            settings, group_id="aggregator", topic=ALERTS, handler=print, dead_letters=dead_letters
        )


# --- retries --------------------------------------------------------------------------


def test_transient_failures_are_retried_others_raised():
    database_down = OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert decide(Retryable("SMTP 451"), stopping=False) is Decision.RETRY
    assert decide(database_down, stopping=False) is Decision.RETRY
    assert decide(KeyError("alert_id"), stopping=False) is Decision.RAISE


def test_while_stopping_a_transient_failure_leaves_the_batch_to_the_next_member():
    assert decide(Retryable("SMTP 451"), stopping=True) is Decision.GIVE_UP
    assert decide(KeyError("alert_id"), stopping=True) is Decision.RAISE


def test_the_backoff_doubles_up_to_its_limit():
    delays = Backoff(initial_s=0.5, max_s=3.0).delays()
    assert list(itertools.islice(delays, 6)) == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


# --- before a rebalance ---------------------------------------------------------------


class ConsumerTwin:
    """What the loop asks of a KafkaConsumer while it finishes a batch; `on_poll` is what
    happens inside a poll (kafka-python calls the rebalance listener from there)."""

    def __init__(self, on_poll=lambda: None) -> None:
        self.commits: list[dict] = []
        self.on_poll = on_poll

    def commit(self, offsets: dict) -> None:
        self.commits.append(offsets)

    def highwater(self, tp: TopicPartition) -> None:
        return None

    def assignment(self) -> set[TopicPartition]:
        return {P0}

    def pause(self, *partitions: TopicPartition) -> None:
        pass

    def resume(self, *partitions: TopicPartition) -> None:
        pass

    def poll(self, timeout_ms: int) -> dict:
        self.on_poll()
        return {}


def loop_holding(handler, offsets: list[int], consumer: ConsumerTwin) -> ConsumerLoop:
    """A loop whose batch holds valid events at `offsets` of P0, as after a poll."""
    settings = KafkaSettings(["127.0.0.1:9"], "test", retry_backoff_initial_s=0.01)
    loop = ConsumerLoop(
        settings,
        group_id="aggregator",
        topic=FEEDBACK,
        handler=handler,
        dead_letters=policy(StoredLetters()),
    )
    loop.consumer = consumer  # type: ignore[assignment]
    for offset in offsets:
        loop._take(P0, record(P0, offset, good_value()))
    return loop


def test_before_a_rebalance_the_batch_in_hand_is_handled_and_committed():
    handled: list[int] = []
    consumer = ConsumerTwin()
    loop = loop_holding(lambda batch: handled.extend(m.offset for m in batch), [3, 4], consumer)
    loop.flush_before_revoke()
    assert handled == [3, 4]
    assert consumer.commits == [{P0: OffsetAndMetadata(5, "", -1)}]
    loop.flush_before_revoke()  # nothing left in hand: nothing handled or committed again
    assert (handled, len(consumer.commits)) == ([3, 4], 1)


def test_a_rebalance_during_a_retry_gives_the_batch_up_uncommitted():
    attempts: list[int] = []

    def database_down(batch: list[Message]) -> None:
        attempts.append(len(batch))
        raise Retryable("database is down")

    consumer = ConsumerTwin()
    loop = loop_holding(database_down, [3], consumer)
    # The partitions are revoked while the loop waits out its backoff.
    consumer.on_poll = loop.flush_before_revoke
    loop._process_batch()
    assert attempts == [1]  # not retried for partitions no longer ours
    assert consumer.commits == []  # the new owner delivers it again


def test_a_batch_that_fails_for_good_before_a_rebalance_is_left_to_the_new_owner():
    def broken(batch: list[Message]) -> None:
        raise KeyError("alert_id")

    consumer = ConsumerTwin()
    loop = loop_holding(broken, [3], consumer)
    loop.flush_before_revoke()  # logged, not raised into kafka-python's poll
    assert consumer.commits == []
    loop.flush_before_revoke()
    assert consumer.commits == []  # given up, not tried again
