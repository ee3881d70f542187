"""The notifier's settings, read from the environment in one place and checked at start-up
(koe_kit.config says the shape): the shared `Settings`, plus Kafka for the consumer and
the metrics token for the health app, which starts without a broker configured."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from typing import cast
from zoneinfo import ZoneInfo

from koe_contract import NOTIFIER
from koe_directory import Directory, DirectoryError, load_directory
from koe_kit.config import EnvReader, extend, load
from koe_kit.db import default_database_url
from koe_kit.kafka import KafkaSettings
from koe_kit.metrics import MetricsSettings, read_metrics_settings

DEFAULT_DATABASE_URL = default_database_url("notifier")


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 1025
    username: str = ""
    password: str = ""
    starttls: bool = False
    # TLS from the first byte (SMTPS, port 465), instead of STARTTLS on a plain connection.
    tls: bool = False
    # The CAs to check the server's certificate against (the city's own); None: the system's.
    cafile: str | None = None
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Settings:
    database_url: str
    divisions_file: str
    directory: Directory
    smtp: SmtpSettings
    mail_from: str
    dashboard_url: str | None
    # Daily digests: the city's time zone (digest_hour is local) and how often
    # the consumer's digest thread looks for a due digest.
    timezone: ZoneInfo
    digest_check_s: float


@dataclass(frozen=True)
class ConsumerSettings(Settings):
    """`python -m notifier.consumer`, which sends the alerts and the daily digests."""

    kafka: KafkaSettings
    consumer_group: str


@dataclass(frozen=True)
class WebSettings(Settings):
    """`gunicorn notifier.wsgi:app`, the health checks."""

    metrics: MetricsSettings


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Raise ConfigError naming every missing or invalid variable at once."""
    return load(read_settings, env)


def load_consumer_settings(env: Mapping[str, str] | None = None) -> ConsumerSettings:
    return load(read_consumer_settings, env)


def load_web_settings(env: Mapping[str, str] | None = None) -> WebSettings:
    return load(read_web_settings, env)


def read_consumer_settings(reader: EnvReader) -> ConsumerSettings:
    return extend(
        read_settings(reader),
        ConsumerSettings,
        # Each alert is an SMTP conversation; a small batch keeps polls frequent.
        kafka=KafkaSettings.from_env(reader, client_id="koe-notifier", default_batch_messages=20),
        consumer_group=reader.str("KOE_CONSUMER_GROUP", NOTIFIER),
    )


def read_web_settings(reader: EnvReader) -> WebSettings:
    return extend(read_settings(reader), WebSettings, metrics=read_metrics_settings(reader))


def read_settings(reader: EnvReader) -> Settings:
    database_url = reader.str("DATABASE_URL", DEFAULT_DATABASE_URL)
    divisions_file = reader.str(
        "KOE_DIVISIONS_FILE", "divisions.yaml", hint="path to divisions.yaml"
    )
    directory = None
    try:
        directory = load_directory(divisions_file)
    except DirectoryError as exc:
        reader.problems.append(f"KOE_DIVISIONS_FILE: {exc}")

    smtp = SmtpSettings(
        host=reader.str("SMTP_HOST", "127.0.0.1", hint="mail server host name"),
        port=reader.int("SMTP_PORT", 1025, minimum=1, hint="a TCP port, e.g. 587"),
        username=reader.str("SMTP_USERNAME", ""),
        password=reader.str("SMTP_PASSWORD", ""),
        starttls=reader.bool("SMTP_STARTTLS", False),
        tls=reader.bool("SMTP_TLS", False),
        cafile=reader.readable_file("SMTP_CAFILE", None, "a PEM file of CAs"),
        timeout_s=reader.float("KOE_SMTP_TIMEOUT_S", 10.0, minimum=0.1, hint="seconds"),
    )
    if smtp.port > 65535:
        reader.problems.append(f"SMTP_PORT={smtp.port} is invalid: must be at most 65535")
    if smtp.tls and smtp.starttls:
        reader.problems.append(
            "SMTP_TLS and SMTP_STARTTLS are one or the other: SMTP_TLS for a server that"
            " speaks TLS from the start (port 465), SMTP_STARTTLS for one that upgrades (587)"
        )
    if bool(smtp.username) != bool(smtp.password):
        reader.problems.append("SMTP_USERNAME and SMTP_PASSWORD must be set together")

    mail_from = reader.str("MAIL_FROM", "koe <koe@localhost>", hint='e.g. "koe <koe@city.example>"')
    if not _is_mailbox(mail_from):
        reader.problems.append(
            f"MAIL_FROM={mail_from!r} is invalid: needs an address such as koe <koe@city.example>"
        )

    dashboard_url = reader.str("KOE_DASHBOARD_URL", "").strip().rstrip("/") or None
    if dashboard_url and not dashboard_url.startswith(("http://", "https://")):
        reader.problems.append(f"KOE_DASHBOARD_URL={dashboard_url!r} is invalid: an http(s) URL")

    timezone = reader.zone("KOE_TIMEZONE", "Asia/Tokyo")
    digest_check_s = reader.float("KOE_DIGEST_CHECK_S", 60.0, minimum=0.05, hint="seconds")
    return Settings(
        database_url=database_url,
        divisions_file=divisions_file,
        # A failed load is one of the reader's problems: load() raises before anyone sees it.
        directory=cast(Directory, directory),
        smtp=smtp,
        mail_from=mail_from,
        dashboard_url=dashboard_url,
        timezone=timezone,
        digest_check_s=digest_check_s,
    )


def _is_mailbox(value: str) -> bool:
    if any(c in value for c in "\r\n"):
        return False
    _name, address = parseaddr(value)
    local, _, domain = address.rpartition("@")
    return bool(local and domain)
