"""A loop's start and liveness on a real broker: it waits for a broker that starts late
(with JSON log lines saying so), gives up after its limit with a message instead of a
traceback, and ends its own process when it hangs so Docker's restart policy acts."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from koe_devkit.local_broker import LocalBroker, free_port
from koe_devkit.testing import running, wait_until
from koe_kit import events
from koe_kit.heartbeat import STALLED_EXIT_CODE
from koe_kit.kafka import ConsumerLoop, KafkaSettings, ensure_topics, make_producer, wait_for_kafka
from koe_kit.logs import JsonFormatter

TOPIC = "koe.feedback.submitted.v1"
EXAMPLE = Path(__file__).parents[3] / "schemas/examples/koe.feedback.submitted.v1/tsu-dx-page.json"


def settings(bootstrap: str, **overrides) -> KafkaSettings:
    options = dict(
        bootstrap_servers=[bootstrap],
        client_id="test",
        max_poll_interval_ms=3000,
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
        batch_max_wait_ms=100,
    )
    return KafkaSettings(**(options | overrides))


@pytest.mark.integration
def test_a_consumer_started_before_the_broker_waits_for_it(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="koe_kit.kafka")
    port = free_port()
    seen: list[str] = []
    loop = ConsumerLoop(
        settings(f"127.0.0.1:{port}", start_wait_s=60),
        group_id="late",
        topic=TOPIC,
        handler=lambda batch: seen.extend(m.event["id"] for m in batch),
    )
    broker = LocalBroker(port=port, log_path=tmp_path / "broker.log")
    with running(loop):
        wait_until(
            lambda: any(r.getMessage() == "waiting for Kafka" for r in caplog.records),
            30,
            what="a line saying the consumer waits",
        )
        broker.start()
        try:
            ensure_topics([broker.bootstrap], [TOPIC])
            event = json.loads(EXAMPLE.read_text(encoding="utf-8"))
            producer = make_producer(settings(broker.bootstrap))
            producer.send(TOPIC, key="p", value=events.encode(event)).get(timeout=30)
            producer.close()
            wait_until(lambda: seen, 60, what="the event, once the broker is up")
        finally:
            broker.stop()
    assert seen == [event["id"]]
    waiting = next(r for r in caplog.records if r.getMessage() == "waiting for Kafka")
    line = json.loads(JsonFormatter("test").format(waiting))
    assert line["bootstrap_servers"] == [f"127.0.0.1:{port}"]
    assert line["attempt"] == 1 and line["next_try_s"] == 1.0


@pytest.mark.integration
def test_without_a_broker_it_gives_up_after_its_limit_saying_what_to_check():
    port = free_port()
    with pytest.raises(SystemExit) as stopped:
        wait_for_kafka(settings(f"127.0.0.1:{port}", start_wait_s=3))
    message = str(stopped.value.code)
    assert message.startswith(f"koe: cannot start, Kafka at 127.0.0.1:{port} did not answer")
    assert "KOE_KAFKA_WAIT_S" in message


HANGING_CONSUMER = textwrap.dedent(
    """
    import sys, threading
    from koe_kit.kafka import ConsumerLoop, KafkaSettings
    from koe_kit.logs import setup_logging

    setup_logging("hang-test")
    settings = KafkaSettings(
        [sys.argv[1]], "hang", max_poll_interval_ms=3000, session_timeout_ms=3000,
        heartbeat_interval_ms=500, batch_max_wait_ms=100, stall_exit_s=3,
    )
    def hang(batch):
        print("handling", flush=True)
        threading.Event().wait()  # a handler stuck for good (a lock, a dead socket)
    ConsumerLoop(settings, group_id="hang", topic=sys.argv[2], handler=hang).run()
    """
)


def test_a_loop_that_hangs_ends_its_process_so_the_restart_policy_can_act(broker):
    ensure_topics([broker.bootstrap], [TOPIC])
    process = subprocess.Popen(
        [sys.executable, "-c", HANGING_CONSUMER, broker.bootstrap, TOPIC],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Alive and turning while there is nothing to do: no false alarm.
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=8)
        event = json.loads(EXAMPLE.read_text(encoding="utf-8"))
        producer = make_producer(settings(broker.bootstrap))
        producer.send(TOPIC, key="p", value=events.encode(event)).get(timeout=30)
        producer.close()
        code = process.wait(timeout=60)
    finally:
        process.kill()
        stdout, stderr = process.communicate()
    assert "handling" in stdout
    assert code == STALLED_EXIT_CODE
    last = json.loads(stderr.strip().splitlines()[-1])
    assert last["level"] == "critical" and last["message"].startswith("loop stalled")
    assert last["limit_s"] == 3
