"""The Kafka settings every loop process (consumer, relay) and tool shares."""

from __future__ import annotations

from dataclasses import dataclass

from koe_kit.config import EnvReader
from koe_kit.kafka_security import PLAINTEXT, KafkaSecurity, load_kafka_security


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: list[str]
    client_id: str
    # Consumer group timing. Real Kafka is happy with kafka-python's defaults;
    # the local Tansu broker answers JoinGroup only after about half the
    # rebalance timeout, so `make run` and the tests set these small.
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    batch_max_messages: int = 500
    batch_max_wait_ms: int = 200
    max_invalid_in_row: int = 100
    retry_backoff_initial_s: float = 0.5
    retry_backoff_max_s: float = 30.0
    # Every process that reads these settings is a long-running loop (consumer,
    # relay): its metrics port and heartbeat file live here for that reason.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    heartbeat_file: str | None = None
    # How long a loop waits for the broker at start (it may start after us), and how
    # long it may stop turning before it ends itself (koe_kit.heartbeat); None: never.
    start_wait_s: float = 300.0
    stall_exit_s: float | None = None
    security: KafkaSecurity = PLAINTEXT

    @classmethod
    def from_env(
        cls, env: EnvReader, client_id: str, default_batch_messages: int = 500
    ) -> KafkaSettings:
        """`default_batch_messages` is the service's own: large where a batch is one
        cheap DB transaction (the aggregator), small where each message is slow work
        that must fit between polls (the notifier's emails)."""
        return cls(
            bootstrap_servers=env.list(
                "KAFKA_BOOTSTRAP_SERVERS", hint="host:port[,host:port], e.g. 127.0.0.1:9092"
            ),
            client_id=env.str("KAFKA_CLIENT_ID", client_id),
            max_poll_interval_ms=env.int("KAFKA_MAX_POLL_INTERVAL_MS", 300_000, minimum=1000),
            session_timeout_ms=env.int("KAFKA_SESSION_TIMEOUT_MS", 10_000, minimum=1000),
            heartbeat_interval_ms=env.int("KAFKA_HEARTBEAT_INTERVAL_MS", 3_000, minimum=100),
            batch_max_messages=env.int("KOE_BATCH_MAX_MESSAGES", default_batch_messages, minimum=1),
            batch_max_wait_ms=env.int("KOE_BATCH_MAX_WAIT_MS", 200, minimum=1),
            max_invalid_in_row=env.int("KOE_MAX_INVALID_IN_ROW", 100, minimum=1),
            retry_backoff_initial_s=env.float("KOE_RETRY_BACKOFF_INITIAL_S", 0.5, minimum=0.01),
            retry_backoff_max_s=env.float("KOE_RETRY_BACKOFF_MAX_S", 30.0, minimum=0.01),
            metrics_port=env.int("KOE_METRICS_PORT", None, minimum=1, hint="a TCP port"),
            metrics_host=env.str("KOE_METRICS_HOST", "127.0.0.1", hint="0.0.0.0 in a container"),
            heartbeat_file=env.str("KOE_HEARTBEAT_FILE", None, hint="a file path"),
            start_wait_s=env.float("KOE_KAFKA_WAIT_S", 300.0, minimum=0, hint="seconds"),
            # Twice the group's default limit: a rebalance may hold one poll that long.
            stall_exit_s=env.float("KOE_STALL_EXIT_S", 600.0, minimum=10, hint="seconds"),
            security=load_kafka_security(env),
        )
