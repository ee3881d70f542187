"""How koe's Kafka clients authenticate and encrypt: TLS and SASL settings.

A managed Kafka (and most city data centres' clusters) accepts only TLS, often with
SASL on top (PLAIN or SCRAM). These settings are read once, next to the bootstrap
servers, and every producer, consumer and admin client koe opens gets the same
`client_options()`, so no client can be forgotten on the plaintext default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from koe_kit.config import EnvReader

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    # None: the system's CA bundle (a public CA, as managed Kafka services use).
    ssl_cafile: str | None = None
    # A client certificate, for brokers that authenticate clients by TLS (mTLS).
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and
        KafkaAdminClient (all three take the same names)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                if getattr(self, name):
                    options[name] = getattr(self, name)
        if self.uses_sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        return options

    def __repr__(self) -> str:
        # Settings objects end up in logs and tracebacks: never the password.
        hidden = "***" if self.sasl_password else None
        return (
            f"KafkaSecurity(protocol={self.protocol!r}, ssl_cafile={self.ssl_cafile!r}, "
            f"sasl_mechanism={self.sasl_mechanism!r}, sasl_username={self.sasl_username!r}, "
            f"sasl_password={hidden!r})"
        )


# The default: a broker on a private network (make run, the compose file's Kafka).
PLAINTEXT = KafkaSecurity()


def load_kafka_security(reader: EnvReader) -> KafkaSecurity:
    """KAFKA_SECURITY_PROTOCOL and the TLS/SASL settings it needs; every gap is a problem
    named on the reader (a SASL protocol without a user would fail later, less clearly)."""
    protocol = reader.choice("KAFKA_SECURITY_PROTOCOL", PROTOCOLS, "PLAINTEXT")
    security = KafkaSecurity(
        protocol=protocol,
        ssl_cafile=reader.readable_file("KAFKA_SSL_CAFILE", None, "a PEM file of CAs"),
        ssl_certfile=reader.readable_file(
            "KAFKA_SSL_CERTFILE", None, "the client certificate, PEM"
        ),
        ssl_keyfile=reader.readable_file("KAFKA_SSL_KEYFILE", None, "its key, PEM"),
        ssl_check_hostname=reader.bool("KAFKA_SSL_CHECK_HOSTNAME", True),
        sasl_mechanism=reader.choice("KAFKA_SASL_MECHANISM", SASL_MECHANISMS, None),
        sasl_username=reader.str("KAFKA_SASL_USERNAME", None),
        sasl_password=reader.str("KAFKA_SASL_PASSWORD", None, hint="from a secret"),
    )
    if security.uses_sasl:
        for name, value in (
            ("KAFKA_SASL_MECHANISM", security.sasl_mechanism),
            ("KAFKA_SASL_USERNAME", security.sasl_username),
            ("KAFKA_SASL_PASSWORD", security.sasl_password),
        ):
            if not value:
                reader.problems.append(
                    f"{name} is required with KAFKA_SECURITY_PROTOCOL={protocol}"
                )
    elif security.sasl_username or security.sasl_mechanism:
        reader.problems.append(
            "KAFKA_SASL_* is set but KAFKA_SECURITY_PROTOCOL is "
            f"{protocol}: use SASL_SSL (or SASL_PLAINTEXT) for the credentials to be used"
        )
    if (security.ssl_certfile is None) != (security.ssl_keyfile is None):
        reader.problems.append("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
    if not security.uses_tls and (security.ssl_cafile or security.ssl_certfile):
        reader.problems.append(
            f"KAFKA_SSL_* is set but KAFKA_SECURITY_PROTOCOL is {protocol}: use SSL or SASL_SSL"
        )
    return security
