"""Settings of the feedback API, its relay and the CMS signing tool, read from the
environment in one place (koe_kit.config says the shape).

The API and the relay are separate processes with separate settings: the API
never talks to Kafka, so it must start (and keep accepting) without
KAFKA_BOOTSTRAP_SERVERS; the relay needs Kafka but not the site origins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from feedback.budgets import Budgets
from feedback.challenges import ChallengeSettings
from koe_directory.pages import origin_of
from koe_kit.config import EnvReader, load
from koe_kit.db import default_database_url
from koe_kit.kafka import KafkaSettings
from koe_kit.metrics import MetricsSettings, read_metrics_settings

DEFAULT_DATABASE_URL = default_database_url("feedback")


@dataclass(frozen=True)
class Settings:
    database_url: str
    divisions_file: str
    # Normalised origins ("https://host" or "http://host:port") of the city sites
    # the widget may sit on; page_url and return_to must be on one of them.
    allowed_origins: frozenset[str]
    max_body_bytes: int
    # How many proxies in front of koe append to X-Forwarded-For; 0 trusts none.
    trusted_proxies: int
    # Spam and abuse (README, "Spam and abuse"): the proof of work the JSON API asks for
    # (challenges.py). Its key is a secret with no default: a known key would let anyone
    # sign themselves challenges without work.
    challenges: ChallengeSettings
    # The city's day, for the daily source key (sources.py).
    timezone: ZoneInfo
    budgets: Budgets
    replace_window_s: int
    # The city CMS's secret that signs page ids (pages.py); None: every page_id ignored.
    cms_key: bytes | None
    response_keep_days: int
    source_key_keep_days: int
    metrics: MetricsSettings
    # Where citizens reach this app ("https://koe.city.example", no trailing slash):
    # the snippet that /embed makes and /demo shows loads widget.js from it. Never the
    # request's Host header, which the sender writes. None: those two pages are off.
    public_url: str | None = None


@dataclass(frozen=True)
class RelaySettings:
    database_url: str
    kafka: KafkaSettings
    batch_size: int
    idle_ms: int
    keep_hours: int
    send_timeout_s: float


@dataclass(frozen=True)
class CmsSignSettings:
    """`python -m feedback.cms sign`: the key the API checks page ids with (KOE_CMS_KEY)."""

    cms_key: bytes


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The API's settings; ConfigError names every missing or invalid variable."""
    return load(read_settings, env)


def load_relay_settings(env: Mapping[str, str] | None = None) -> RelaySettings:
    return load(read_relay_settings, env)


def load_cms_sign_settings(env: Mapping[str, str] | None = None) -> CmsSignSettings:
    return load(read_cms_sign_settings, env)


def read_settings(reader: EnvReader) -> Settings:
    return Settings(
        database_url=reader.str("DATABASE_URL", DEFAULT_DATABASE_URL),
        divisions_file=reader.str("KOE_DIVISIONS_FILE", "divisions.yaml"),
        allowed_origins=_origins(reader),
        max_body_bytes=reader.int("KOE_MAX_BODY_BYTES", 16 * 1024, minimum=256),
        trusted_proxies=reader.int("KOE_TRUSTED_PROXIES", 0, minimum=0),
        challenges=ChallengeSettings(
            key=_challenge_key(reader),
            max_number=reader.int(
                "KOE_CHALLENGE_MAX_NUMBER", 100_000, minimum=1, maximum=10_000_000
            ),
            ttl_s=reader.int("KOE_CHALLENGE_TTL_S", 1200, minimum=1, maximum=24 * 3600),
        ),
        timezone=reader.zone("KOE_TIMEZONE", "Asia/Tokyo"),
        # README, "Spam and abuse", says why these numbers.
        budgets=Budgets(
            one_page=reader.int("KOE_BUDGET_ONE_PAGE", 60, minimum=1, maximum=MAX_BUDGET),
            all_pages=reader.int("KOE_BUDGET_ALL_PAGES", 600, minimum=1, maximum=MAX_BUDGET),
            form_one_page=reader.int("KOE_FORM_BUDGET_ONE_PAGE", 10, minimum=1, maximum=MAX_BUDGET),
            form_all_pages=reader.int(
                "KOE_FORM_BUDGET_ALL_PAGES", 60, minimum=1, maximum=MAX_BUDGET
            ),
            new_pages=reader.int("KOE_BUDGET_NEW_PAGES", 10, minimum=1, maximum=MAX_BUDGET),
        ),
        replace_window_s=reader.int("KOE_REPLACE_WINDOW_MINUTES", 30, minimum=0, maximum=1440) * 60,
        cms_key=_cms_key(reader),
        response_keep_days=reader.int("KOE_RESPONSE_KEEP_DAYS", 400, minimum=1, maximum=36500),
        source_key_keep_days=reader.int("KOE_SOURCE_KEY_KEEP_DAYS", 2, minimum=1, maximum=365),
        metrics=read_metrics_settings(reader),
        public_url=_public_url(reader),
    )


def _public_url(reader: EnvReader) -> str | None:
    value = reader.str("KOE_PUBLIC_URL", "") or ""
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        reader.problems.append(
            f"KOE_PUBLIC_URL: {value[:200]!r} is not an http(s) URL without query or fragment"
            " (where citizens reach the feedback API, e.g. https://koe.city.example)"
        )
        return None
    return value.rstrip("/")


MIN_KEY_LENGTH = 32
# A budget beyond a billion an hour is no budget; tests and benches lift them to a million.
MAX_BUDGET = 10**9


def _challenge_key(reader: EnvReader) -> bytes:
    hint = f"a random secret of at least {MIN_KEY_LENGTH} characters, e.g. `openssl rand -hex 32`"
    key = reader.str("KOE_CHALLENGE_KEY", hint=hint) or ""
    if key and len(key) < MIN_KEY_LENGTH:
        reader.problems.append(f"KOE_CHALLENGE_KEY is too short ({hint})")
    return key.encode("utf-8")


def _cms_key(reader: EnvReader) -> bytes | None:
    """Optional: without it no page_id a POST names is believed (pages.py)."""
    key = reader.str("KOE_CMS_KEY", "") or ""
    if key and len(key) < MIN_KEY_LENGTH:
        reader.problems.append(
            f"KOE_CMS_KEY is too short (a random secret of at least {MIN_KEY_LENGTH}"
            " characters, shared with the city's CMS, e.g. `openssl rand -hex 32`)"
        )
    return key.encode("utf-8") or None


def read_relay_settings(reader: EnvReader) -> RelaySettings:
    return RelaySettings(
        database_url=reader.str("DATABASE_URL", DEFAULT_DATABASE_URL),
        kafka=KafkaSettings.from_env(reader, client_id="koe-feedback-relay"),
        batch_size=reader.int("KOE_RELAY_BATCH", 500, minimum=1),
        idle_ms=reader.int("KOE_RELAY_IDLE_MS", 200, minimum=1),
        keep_hours=reader.int("KOE_OUTBOX_KEEP_HOURS", 168, minimum=0),
        send_timeout_s=reader.float("KOE_RELAY_SEND_TIMEOUT_S", 30.0, minimum=0.1),
    )


def read_cms_sign_settings(reader: EnvReader) -> CmsSignSettings:
    # From the environment only, never the command line (which other users of the
    # machine can read in the process list); the key the API would accept.
    key = _cms_key(reader)
    if key is None and not reader.problems:
        reader.problems.append("KOE_CMS_KEY is required (export the key koe's feedback API has)")
    return CmsSignSettings(cms_key=key or b"")


def _origins(reader: EnvReader) -> frozenset[str]:
    hint = (
        "comma-separated site origins, e.g. https://www.info.city.tsu.mie.jp,http://localhost:8000"
    )
    raw = reader.list("KOE_ALLOWED_ORIGINS", hint=hint) or []
    origins = set()
    for item in raw:
        try:
            origin = origin_of(item)
        except ValueError as exc:
            reader.problems.append(f"KOE_ALLOWED_ORIGINS: {item!r} {exc} ({hint})")
            continue
        parts = urlsplit(item)
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            reader.problems.append(
                f"KOE_ALLOWED_ORIGINS: {item!r} must be an origin only, without path ({hint})"
            )
            continue
        origins.add(origin)
    return frozenset(origins)
