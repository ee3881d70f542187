"""Every aggregator knob, read from the environment in one place (koe_kit.config says
the shape).

Each process has its own settings, the shared `Settings` plus what only it needs:
the web app (stats API and dashboard) requires `KOE_API_TOKEN` (an unset token
must stop it, never leave it open) and `KOE_SECRET_KEY` (it signs the session
cookie; a guessable key would let anyone forge a signed-in session) and must
start without Kafka; the consumer requires Kafka; the CLIs need neither.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from aggregator.accounts.words import LANGUAGES
from aggregator.alerts.crowd import CrowdRule
from aggregator.alerts.detector import DetectorSettings
from aggregator.counting.ingest import DEFAULT_MAX_AGE_DAYS
from aggregator.counting.pruning import (
    DEFAULT_SOURCE_KEEP_DAYS,
    default_keep_days,
    shortest_keep_days,
)
from aggregator.counting.retention import DEFAULT_KEEP_YEARS
from aggregator.counting.source_ledger import DEFAULT_PER_SOURCE_DAY
from aggregator.dashboard.page_list import DEFAULT_QUIET_DAYS
from aggregator.pages.registry import DEFAULT_MIN_SOURCES
from koe_contract import AGGREGATOR, FEEDBACK_TOPIC
from koe_directory import Directory, DirectoryError, load_directory
from koe_kit.config import ConfigError, EnvReader, extend, load
from koe_kit.db import default_database_url
from koe_kit.kafka import KafkaSettings
from koe_kit.metrics import MetricsSettings, read_metrics_settings

MIN_TOKEN_LENGTH = 16
MIN_SECRET_KEY_LENGTH = 32


@dataclass(frozen=True)
class Settings:
    """What every aggregator process reads: the consumer, the web app and the CLIs.

    No defaults here: `read_settings` holds them, so nothing reads schemas/topics.yaml
    (processed_keep_days') at import.
    """

    database_url: str
    timezone: ZoneInfo
    # Days after which an alert is old news: recorded, not emailed (ingest.py).
    alert_max_age_days: int
    # What an alert's evidence needs to be emailed rather than held for review (crowd.py).
    crowd_rule: CrowdRule
    # The drop detector's knobs (detector.py).
    detector: DetectorSettings
    # How long after a city day's midnight the daily sweep judges it (daily_sweep.py):
    # answers from its last minutes may still be on their way through the relay.
    sweep_grace: timedelta
    # Off only for plain-http tests and local runs: a Secure cookie is never sent over http.
    secure_cookies: bool
    divisions_file: str
    # Reverse proxies in front of the dashboard whose X-Forwarded-For is trusted, so
    # sign-in throttling sees the client's address rather than the proxy's.
    trusted_proxies: int
    # How long a counted event is remembered (pruning.py): as long as Kafka can deliver it.
    processed_keep_days: int
    # Responses per page, city-local day and source that count (counting/source_ledger.py).
    count_per_source_day: int
    # Distinct sources that must answer a page the city's list does not name before it
    # is shown, and that must send a title before it is the page's (pages/registry.py).
    page_min_sources: int
    # How long source_counts rows are kept (pruning.py); the counts stay.
    source_keep_days: int
    # Years of daily rows kept; older ones fold into monthly rows (retention.py).
    daily_keep_years: int
    # Days without an answer after which a page leaves the default pages list
    # (page_list.py); a search or the "quiet pages too" filter still finds it.
    page_quiet_days: int


@dataclass(frozen=True)
class ConsumerSettings(Settings):
    """`python -m aggregator.consumer`: the shared settings and Kafka."""

    kafka: KafkaSettings
    consumer_group: str


@dataclass(frozen=True)
class WebSettings(Settings):
    """`gunicorn aggregator.wsgi:app`: the shared settings and the web app's secrets.

    The stats API never runs open (KOE_API_TOKEN) and the dashboard's session cookie is
    never forgeable (KOE_SECRET_KEY): both are required, and no Kafka is.
    """

    api_token: str
    secret_key: str
    metrics: MetricsSettings


@dataclass(frozen=True)
class AccountsCliSettings:
    """What `python -m aggregator.accounts` reads before the service's settings: where
    koe lives (KOE_HOME: relative paths such as divisions.yaml are read from there;
    "" unset) and the language it speaks (KOE_LANGUAGE, else Japanese)."""

    home: str
    language: str


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The CLIs' settings; ConfigError names every missing or invalid variable."""
    return load(read_settings, env)


def load_consumer_settings(env: Mapping[str, str] | None = None) -> ConsumerSettings:
    return load(read_consumer_settings, env)


def load_web_settings(env: Mapping[str, str] | None = None) -> WebSettings:
    return load(read_web_settings, env)


def read_consumer_settings(reader: EnvReader) -> ConsumerSettings:
    return extend(
        read_settings(reader),
        ConsumerSettings,
        # 2,000 events per transaction: 0.58x a raw consumer against 0.48x with 500
        # (bench/bench_aggregator.py); latency is bound by KOE_BATCH_MAX_WAIT_MS, not size.
        kafka=KafkaSettings.from_env(
            reader, client_id="koe-aggregator", default_batch_messages=2000
        ),
        consumer_group=reader.str("KOE_CONSUMER_GROUP", AGGREGATOR),
    )


def read_web_settings(reader: EnvReader) -> WebSettings:
    shared = read_settings(reader)
    token = reader.str("KOE_API_TOKEN", None)
    secret_key = reader.str("KOE_SECRET_KEY", None)
    for problem in (token_problem(token), secret_key_problem(secret_key)):
        if problem:
            reader.problems.append(problem)
    return extend(
        shared,
        WebSettings,
        api_token=token or "",
        secret_key=secret_key or "",
        metrics=read_metrics_settings(reader),
    )


def read_accounts_cli_settings(reader: EnvReader) -> AccountsCliSettings:
    language = reader.str("KOE_LANGUAGE", "")
    return AccountsCliSettings(
        home=reader.str("KOE_HOME", "", hint="the folder of divisions.yaml and var/"),
        language=language if language in LANGUAGES else "ja",
    )


def read_settings(reader: EnvReader) -> Settings:
    database_url = reader.str("DATABASE_URL", default_database_url("aggregator"))
    timezone = reader.zone("KOE_TIMEZONE", "Asia/Tokyo")
    max_age_days = reader.int("KOE_ALERT_MAX_AGE_DAYS", DEFAULT_MAX_AGE_DAYS, minimum=0)
    detector = read_detector(reader)
    sweep_grace = timedelta(
        minutes=reader.int("KOE_ALERT_SWEEP_GRACE_MINUTES", 60, minimum=0, maximum=24 * 60 - 1)
    )
    crowd_defaults = CrowdRule()
    crowd_rule = CrowdRule(
        min_sources=reader.int("KOE_ALERT_MIN_SOURCES", crowd_defaults.min_sources, minimum=1),
        max_source_share=reader.float(
            "KOE_ALERT_MAX_SOURCE_SHARE", crowd_defaults.max_source_share, minimum=0.01, maximum=1
        ),
        max_day_share=reader.float(
            "KOE_ALERT_MAX_DAY_SHARE", crowd_defaults.max_day_share, minimum=0.01, maximum=1
        ),
    )
    secure_cookies = reader.bool("KOE_DASHBOARD_SECURE_COOKIES", True)
    divisions_file = reader.str("KOE_DIVISIONS_FILE", "divisions.yaml", hint="path")
    trusted_proxies = reader.int("KOE_TRUSTED_PROXIES", 0, minimum=0)
    processed_keep_days = reader.int(
        "KOE_PROCESSED_KEEP_DAYS",
        default_keep_days(FEEDBACK_TOPIC),
        minimum=shortest_keep_days(FEEDBACK_TOPIC),
        hint=f"days; {FEEDBACK_TOPIC} can deliver an event again until its retention in "
        "schemas/topics.yaml + 7 days (Kafka deletes whole segments), and a shorter "
        "memory would count such an event twice",
    )
    count_per_source_day = reader.int("KOE_COUNT_PER_SOURCE_DAY", DEFAULT_PER_SOURCE_DAY, minimum=1)
    page_min_sources = reader.int("KOE_PAGE_MIN_SOURCES", DEFAULT_MIN_SOURCES, minimum=1)
    # The crowd check reads the sources of the detector's chart window.
    judged_days = detector.span_days
    source_keep_days = reader.int(
        "KOE_SOURCE_KEEP_DAYS",
        max(DEFAULT_SOURCE_KEEP_DAYS, judged_days),
        minimum=judged_days,
        hint="days; alerts read the sources of the days they judge (KOE_DETECTOR_SPAN_DAYS)",
    )
    # The detector reads its reference window back from the day it judges: those days
    # must still be days, not months.
    detector_reach_years = math.ceil((detector.reference_days + detector.gap_days) / 365)
    daily_keep_years = reader.int(
        "KOE_DAILY_KEEP_YEARS",
        max(DEFAULT_KEEP_YEARS, detector_reach_years),
        minimum=detector_reach_years,
        hint="years; the drop detector reads daily rows back KOE_DETECTOR_REFERENCE_DAYS + "
        "KOE_DETECTOR_GAP_DAYS days",
    )
    page_quiet_days = reader.int(
        "KOE_PAGE_QUIET_DAYS",
        DEFAULT_QUIET_DAYS,
        minimum=1,
        hint="days without an answer before a page leaves the default pages list",
    )
    return Settings(
        database_url=database_url,
        timezone=timezone,
        alert_max_age_days=max_age_days,
        sweep_grace=sweep_grace,
        crowd_rule=crowd_rule,
        detector=detector,
        secure_cookies=secure_cookies,
        divisions_file=divisions_file,
        trusted_proxies=trusted_proxies,
        processed_keep_days=processed_keep_days,
        count_per_source_day=count_per_source_day,
        page_min_sources=page_min_sources,
        source_keep_days=source_keep_days,
        daily_keep_years=daily_keep_years,
        page_quiet_days=page_quiet_days,
    )


# KOE_DETECTOR_<FIELD>: (minimum, maximum) of each DetectorSettings field.
DETECTOR_BOUNDS: dict[str, tuple[float, float]] = {
    "reference_days": (28, 365),
    "gap_days": (0, 56),
    "half_life_days": (0.5, 28),
    "span_days": (7, 90),
    "limit_sigmas": (1, 6),
    "drift_points": (0, 20),
    "min_drop_points": (0, 100),
    "min_weight": (1, 1000),
    "min_reference": (1, 100_000),
    "cooldown_days": (0, 365),
    "recovery_days": (1, 90),
    "recovery_tolerance_points": (0, 50),
    "evidence_days": (1, 90),
}


def read_detector(reader: EnvReader) -> DetectorSettings:
    """The detector's knobs, KOE_DETECTOR_* (docs/alerts.md says how the defaults were
    chosen)."""
    defaults = DetectorSettings()
    values: dict[str, float] = {}
    for name, (low, high) in DETECTOR_BOUNDS.items():
        default = getattr(defaults, name)
        env = f"KOE_DETECTOR_{name.upper()}"
        if isinstance(default, int):
            values[name] = reader.int(env, default, minimum=int(low), maximum=int(high))
        else:
            values[name] = reader.float(env, default, minimum=low, maximum=high)
    return DetectorSettings(**values)  # type: ignore[arg-type]


def read_divisions(settings: Settings) -> Directory:
    """divisions.yaml, or ConfigError saying why it cannot be read."""
    try:
        return load_directory(settings.divisions_file)
    except DirectoryError as exc:
        raise ConfigError([f"KOE_DIVISIONS_FILE: {exc}"]) from None


def token_problem(token: str | None) -> str | None:
    return _secret_problem(
        "KOE_API_TOKEN",
        token,
        MIN_TOKEN_LENGTH,
        "the stats API never runs open "
        f"(set a random secret of at least {MIN_TOKEN_LENGTH} characters)",
    )


def secret_key_problem(key: str | None) -> str | None:
    return _secret_problem(
        "KOE_SECRET_KEY",
        key,
        MIN_SECRET_KEY_LENGTH,
        "it signs the dashboard's session cookie "
        '(e.g. python -c "import secrets; print(secrets.token_urlsafe(48))")',
    )


def _secret_problem(name: str, value: str | None, min_length: int, why: str) -> str | None:
    """What is wrong with a secret setting: unset (`why` it is needed) or too short."""
    if not value:
        return f"{name} is required: {why}"
    if len(value) < min_length:
        return f"{name} is too short: use at least {min_length} characters"
    return None
