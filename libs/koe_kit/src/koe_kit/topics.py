"""`python -m koe_kit.topics`: create every topic in schemas/topics.yaml, and add the
partitions it names to topics that have fewer (see docs/operations.md)."""

from __future__ import annotations

import sys
import time

from kafka.errors import KafkaError

from koe_kit.config import ConfigError, EnvReader, exit_on_config_error
from koe_kit.kafka import ensure_topics
from koe_kit.kafka_security import load_kafka_security


def main() -> None:
    env = EnvReader()
    servers = env.list("KAFKA_BOOTSTRAP_SERVERS", hint="host:port[,host:port]")
    wait_s = env.float("KOE_TOPICS_WAIT_S", 60.0, minimum=0)
    # One broker (make run, the compose file) holds one copy; a cluster wants 3.
    replicas = env.int("KOE_TOPIC_REPLICATION_FACTOR", 1, minimum=1)
    security = load_kafka_security(env)
    try:
        env.check()
    except ConfigError as exc:
        exit_on_config_error(exc)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            ensure_topics(servers, replication_factor=replicas, security=security)
            print("koe: topics ready")
            return
        except KafkaError as exc:
            # Waiting helps while the broker starts, not when it refuses (e.g. a broker
            # that cannot add partitions).
            if not exc.retriable or time.monotonic() > deadline:
                sys.exit(f"koe: cannot create topics on {servers}: {exc}")
            time.sleep(1)


if __name__ == "__main__":
    main()
