"""The consumer loop: poll a batch → decode → handle → commit offsets (offset + 1).

arroyo's shape for kafka-python. Offsets are never auto-committed, so a crash
anywhere before the offset commit means redelivery, and handlers are idempotent.
The decisions live in parts that need no broker: when a batch is full (batch.py),
what a record is (messages.py), where poison goes and when there is too much of it
(dead_letters.py), what a failure means (retry.py). This module only wires them to
a KafkaConsumer, and keeps the group's trust: it polls while it waits out a retry,
and finishes its batch before a rebalance takes its partitions.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError

from koe_kit import correlation, events, metrics
from koe_kit.heartbeat import Heartbeat
from koe_kit.kafka.admin import wait_for_kafka
from koe_kit.kafka.batch import Batch, BatchLimits
from koe_kit.kafka.dead_letters import DeadLetterPolicy
from koe_kit.kafka.messages import Decoder, Handler, Message
from koe_kit.kafka.retry import Backoff, Decision, decide
from koe_kit.kafka.settings import KafkaSettings
from koe_kit.shutdown import GracefulStop

log = logging.getLogger(__name__)


class ConsumerLoop(GracefulStop):
    """Runs one consumer group member until stopped (SIGTERM/SIGINT or `stop()`)."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        topic: str,
        handler: Handler,
        dead_letters: DeadLetterPolicy | None = None,
        after_commit: Callable[[], None] | None = None,
        on_idle: Callable[[], None] | None = None,
    ):
        """`dead_letters`: the policy the handler was given too, if it dead-letters
        events itself; by default one to the topic's dead-letter topic."""
        if dead_letters is None:
            dead_letters = DeadLetterPolicy.to_kafka(settings, group_id=group_id, topic=topic)
        if (dead_letters.group_id, dead_letters.source_topic) != (group_id, topic):
            raise ValueError(
                f"dead letters of {dead_letters.source_topic} in {dead_letters.group_id} "
                f"given to the loop of {topic} in {group_id}"
            )
        self.settings = settings
        self.group_id = group_id
        self.topic = topic
        self.dead_letters = dead_letters
        self.decode = Decoder(topic)
        self.limits = BatchLimits(settings.batch_max_messages, settings.batch_max_wait_ms / 1000)
        self.backoff = Backoff(settings.retry_backoff_initial_s, settings.retry_backoff_max_s)
        self.handler = handler
        self.after_commit = after_commit
        # Called when a batch's wait brought nothing: work that does not come from the
        # topic (e.g. alerts released on a dashboard) is not left until the next message.
        self.on_idle = on_idle
        super().__init__()
        self._batch = Batch()
        self._retrying = False
        self.consumer: KafkaConsumer | None = None
        self.heartbeat = Heartbeat(settings.heartbeat_file, settings.stall_exit_s)
        self._labels = (group_id, topic)
        # Every counter exists at 0 from the start: Prometheus' increase() needs a value
        # before the first retry to see it (deploy/prometheus/koe-rules.yml).
        for counter in (metrics.BATCH_RETRIES, metrics.EVENTS_HANDLED):
            counter.labels(*self._labels)

    @property
    def dead_letter_topic(self) -> str:
        return self.dead_letters.topic

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
        self.dead_letters.open()
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
            self.dead_letters.close()
            log.info("consumer stopped", extra={"group": self.group_id})

    def flush_before_revoke(self) -> None:
        """Finish and commit the batch in hand before its partitions move elsewhere
        (the rebalance listener calls this from inside poll())."""
        if self._retrying:
            # Mid-retry (e.g. database down): give the batch up uncommitted; the
            # new owner of these partitions will deliver it again.
            self._batch = Batch()
            return
        try:
            self._process_batch()
        except Exception:
            # Could not commit: the new owner will redeliver; handlers are idempotent.
            log.exception("could not finish the batch before a rebalance")
            self._batch = Batch()

    def _fill_batch(self) -> None:
        assert self.consumer is not None
        deadline = time.monotonic() + self.limits.max_wait_s
        while not self.stopping:
            poll = self.limits.next_poll(self._batch, deadline, time.monotonic())
            if poll is None:
                return
            records = self.consumer.poll(timeout_ms=poll.timeout_ms, max_records=poll.max_records)
            self.heartbeat.beat()
            for tp, batch in records.items():
                for record in batch:
                    self._take(tp, record)

    def _take(self, tp: TopicPartition, record: Any) -> None:
        self._batch.note(tp, record.offset)
        try:
            message = self.decode(tp, record)
        except events.InvalidEvent as exc:
            self.dead_letters.invalid(tp, record, exc.reason)
            return
        self.dead_letters.valid()
        self._batch.messages.append(message)

    def _process_batch(self) -> None:
        """Hand the batch to the handler, retrying transient failures, then commit."""
        assert self.consumer is not None
        delays = self.backoff.delays()
        while True:
            batch = self._batch
            if not batch:
                return  # empty, or discarded by a rebalance during a retry
            try:
                if batch.messages:
                    self._handle(batch.messages)
                break
            except Exception as exc:
                decision = decide(exc, stopping=self.stopping)
                if decision is Decision.RAISE:
                    raise
                if decision is Decision.GIVE_UP:
                    # Shutting down mid-retry: the next member starts this batch again.
                    self._batch = Batch()
                    return
                delay = next(delays)
                metrics.BATCH_RETRIES.labels(*self._labels).inc()
                log.warning(
                    "transient failure, retrying",
                    extra={"error": str(exc)[:500], "backoff_s": delay},
                )
                self._wait(delay)
        self._batch = Batch()
        try:
            self.consumer.commit(batch.offsets_to_commit())
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
    def __init__(self, loop: ConsumerLoop):
        self.loop = loop

    def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            # Another member reports this partition's lag from now on.
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(self.loop.group_id, tp.topic, str(tp.partition))
        self.loop.flush_before_revoke()

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(str(tp) for tp in assigned)})
