"""`python -m koe_kit.topics`: create every topic in schemas/topics.yaml, and add the
partitions it names to topics that have fewer (see docs/operations.md)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from kafka.errors import KafkaError

from koe_kit.config import EnvReader, load_or_exit
from koe_kit.kafka import ensure_topics
from koe_kit.kafka_security import KafkaSecurity, load_kafka_security


@dataclass(frozen=True)
class TopicsSettings:
    servers: list[str]
    wait_s: float
    replicas: int
    security: KafkaSecurity


def read_topics_settings(reader: EnvReader) -> TopicsSettings:
    return TopicsSettings(
        servers=reader.list("KAFKA_BOOTSTRAP_SERVERS", hint="host:port[,host:port]"),
        wait_s=reader.float("KOE_TOPICS_WAIT_S", 60.0, minimum=0),
        # One broker (make run, the compose file) holds one copy; a cluster wants 3.
        replicas=reader.int("KOE_TOPIC_REPLICATION_FACTOR", 1, minimum=1),
        security=load_kafka_security(reader),
    )


def main() -> None:
    settings = load_or_exit(read_topics_settings)
    deadline = time.monotonic() + settings.wait_s
    while True:
        try:
            ensure_topics(
                settings.servers, replication_factor=settings.replicas, security=settings.security
            )
            print("koe: topics ready")
            return
        except KafkaError as exc:
            # Waiting helps while the broker starts, not when it refuses (e.g. a broker
            # that cannot add partitions).
            if not exc.retriable or time.monotonic() > deadline:
                sys.exit(f"koe: cannot create topics on {settings.servers}: {exc}")
            time.sleep(1)


if __name__ == "__main__":
    main()
