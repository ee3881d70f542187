"""koe's Kafka clients over TLS: a TLS-terminating proxy in front of the local broker,
which advertises the proxy's address, so every connection (bootstrap and data) is TLS.

The certificates come from a test CA made with openssl for the test; a client that
trusts another CA is refused, which shows the clients really check the broker.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.errors import KafkaError

from faults.tcp_proxy import TcpProxy
from koe_devkit.local_broker import LocalBroker, free_port
from koe_devkit.testing import issue_certificate, make_ca, running, wait_until
from koe_kit import events
from koe_kit.config import EnvReader
from koe_kit.kafka import ConsumerLoop, KafkaSettings, ensure_topics, make_producer, read_topic
from koe_kit.kafka_security import load_kafka_security

TOPIC = "koe.feedback.submitted.v1"
EXAMPLE = Path(__file__).parents[1] / "schemas/examples/koe.feedback.submitted.v1/tsu-dx-page.json"


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """(bootstrap address that speaks TLS, the CA that signed it, another CA)."""
    ca = make_ca(tmp_path, "koe-test-ca")
    stranger, _ = make_ca(tmp_path, "other-ca")
    cert, key = issue_certificate(tmp_path, ca, "broker", "IP:127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    broker_port = free_port()
    proxy = TcpProxy("127.0.0.1", broker_port, tls=context).start()
    broker = LocalBroker(
        port=broker_port, advertised_port=proxy.port, log_path=tmp_path / "broker.log"
    ).start()
    try:
        yield proxy.address, ca[0], stranger
    finally:
        broker.stop()
        proxy.stop()


def tls_settings(bootstrap: str, cafile: Path) -> KafkaSettings:
    reader = EnvReader(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CAFILE": str(cafile),
            "KAFKA_MAX_POLL_INTERVAL_MS": "3000",
            "KAFKA_SESSION_TIMEOUT_MS": "3000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "KOE_BATCH_MAX_WAIT_MS": "100",
        }
    )
    settings = KafkaSettings.from_env(reader, client_id="tls-test")
    reader.check()
    return settings


@pytest.mark.integration
def test_topics_producer_consumer_and_reader_all_speak_tls(tls_broker):
    bootstrap, ca, _ = tls_broker
    settings = tls_settings(bootstrap, ca)
    assert settings.security.protocol == "SSL"

    ensure_topics(settings.bootstrap_servers, [TOPIC], security=settings.security)
    event = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    producer = make_producer(settings)
    producer.send(TOPIC, key="p1", value=events.encode(event)).get(timeout=30)
    producer.close()

    seen: list[str] = []
    loop = ConsumerLoop(
        settings,
        group_id="tls",
        topic=TOPIC,
        handler=lambda batch: seen.extend(m.event["id"] for m in batch),
    )
    with running(loop):
        wait_until(lambda: seen, 30, what="the event through TLS")
    assert seen == [event["id"]]
    records = read_topic(settings.bootstrap_servers, TOPIC, security=settings.security)
    assert [events.decode(r.value)["id"] for r in records] == [event["id"]]


def send_one(settings: KafkaSettings) -> None:
    # Short waits: these clients never get through.
    producer = make_producer(settings, bootstrap_timeout_ms=3000, max_block_ms=3000)
    try:
        producer.send(TOPIC, key="p1", value=b"{}").get(timeout=5)
    finally:
        producer.close(timeout=0)


@pytest.mark.integration
def test_a_client_that_trusts_another_ca_is_refused(tls_broker):
    bootstrap, ca, stranger = tls_broker
    ensure_topics([bootstrap], [TOPIC], security=tls_settings(bootstrap, ca).security)
    with pytest.raises(KafkaError):
        send_one(tls_settings(bootstrap, stranger))


@pytest.mark.integration
def test_plaintext_clients_cannot_talk_to_the_tls_listener(tls_broker):
    bootstrap, ca, _ = tls_broker
    ensure_topics([bootstrap], [TOPIC], security=tls_settings(bootstrap, ca).security)
    with pytest.raises(KafkaError):
        send_one(KafkaSettings([bootstrap], "plain"))


def test_sasl_settings_are_passed_to_every_client_and_incomplete_ones_named():
    reader = EnvReader(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "kafka.example.jp:9096",
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "KAFKA_SASL_MECHANISM": "scram-sha-512",
            "KAFKA_SASL_USERNAME": "koe",
            "KAFKA_SASL_PASSWORD": "a-long-secret-from-the-vault",
        }
    )
    security = load_kafka_security(reader)
    reader.check()
    assert security.client_options() == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "koe",
        "sasl_plain_password": "a-long-secret-from-the-vault",
    }
    assert "a-long-secret" not in repr(security)

    incomplete = EnvReader({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "koe"})
    load_kafka_security(incomplete)
    assert incomplete.problems == [
        "KAFKA_SASL_MECHANISM is required with KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        "KAFKA_SASL_PASSWORD is required with KAFKA_SECURITY_PROTOCOL=SASL_SSL",
    ]
    wrong = EnvReader({"KAFKA_SECURITY_PROTOCOL": "TLS", "KAFKA_SSL_CAFILE": "/nonexistent.pem"})
    load_kafka_security(wrong)
    named = [problem.split(" is ", 1)[0] for problem in wrong.problems]
    assert named == ["KAFKA_SECURITY_PROTOCOL='TLS'", "KAFKA_SSL_CAFILE='/nonexistent.pem'"]
