"""`python -m koe_kit.dlq show|redrive <dead-letter topic>`: look at dead letters, and
send them back to the topic they came from once their cause is fixed.

Dead letters are messages a consumer could not use: invalid JSON, a schema it did
not know yet, a type on the wrong topic (koe_kit.kafka.dead_letters). After the cause
is fixed (a consumer upgraded to the new schema, a producer repaired), `redrive` publishes
each one again, unchanged, to the topic named in its koe-dlq-topic header. Its
progress is committed as consumer group `koe-dlq-redrive`, so running it twice
sends nothing twice, and a dead letter that fails again comes back as a new one.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from koe_kit import events
from koe_kit.config import load_or_exit
from koe_kit.kafka import KafkaSettings, close_producer, make_producer, read_topic
from koe_kit.kafka_security import PLAINTEXT, KafkaSecurity

REDRIVE_GROUP = "koe-dlq-redrive"


def _header(record, name: str) -> str:
    return dict(record.headers or []).get(name, b"").decode("utf-8", "replace")


def show(
    bootstrap_servers: Sequence[str], topic: str, security: KafkaSecurity = PLAINTEXT
) -> list[str]:
    """One line per dead letter (partition, offset, origin, reason) and a count per reason."""
    records = read_topic(bootstrap_servers, topic, security=security)
    lines = [
        f"{r.partition}:{r.offset} from {_header(r, 'koe-dlq-topic')}"
        f"@{_header(r, 'koe-dlq-offset')} ({_header(r, 'koe-dlq-group')}): "
        f"{_header(r, 'koe-dlq-reason')}"
        for r in records
    ]
    reasons = Counter(_header(r, "koe-dlq-reason").split(":", 1)[0] for r in records)
    lines += [f"{count} × {reason}" for reason, count in reasons.most_common()]
    lines.append(f"{len(records)} dead letters on {topic}")
    return lines


def redrive(settings: KafkaSettings, topic: str, timeout_s: float = 300.0) -> int:
    """Send every dead letter not redriven before back to its topic; return how many."""
    if not events.topics().get(topic, {}).get("dead_letters_of"):
        raise SystemExit(f"koe: {topic} is not a dead-letter topic in schemas/topics.yaml")
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=REDRIVE_GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **settings.security.client_options(),
    )
    producer = make_producer(settings)
    sent = 0
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return 0
        consumer.assign(partitions)
        end = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise SystemExit(f"koe: {topic} not read to its end in {timeout_s:.0f}s; run again")
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    if record.offset >= end[tp]:
                        continue
                    origin = _header(record, "koe-dlq-topic")
                    key = record.key.decode("utf-8", "replace") if record.key else None
                    producer.send(origin, key=key, value=record.value).get(timeout=30)
                    sent += 1
                # Committed after the sends: a crash here redrives again, never loses one.
                done = min(records[-1].offset + 1, end[tp])
                consumer.commit({tp: OffsetAndMetadata(done, "", -1)})
    finally:
        close_producer(producer, timeout_s=10)
        consumer.close(autocommit=False)
    return sent


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m koe_kit.dlq", description=__doc__)
    parser.add_argument("action", choices=["show", "redrive"])
    parser.add_argument("topic", help="a dead-letter topic, e.g. koe.feedback.submitted.dlq.v1")
    args = parser.parse_args(argv)
    settings = load_or_exit(lambda reader: KafkaSettings.from_env(reader, client_id="koe-dlq"))
    if args.action == "show":
        print("\n".join(show(settings.bootstrap_servers, args.topic, settings.security)))
    else:
        count = redrive(settings, args.topic)
        print(f"koe: redrove {count} dead letters from {args.topic}", file=sys.stderr)


if __name__ == "__main__":
    main()
