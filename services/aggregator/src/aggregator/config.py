"""Every aggregator knob, read from the environment in one place.

The stats API and the consumer share one `Settings`; each asks only for what it
needs: the API requires `KOE_API_TOKEN` (an unset token must stop it, never
leave it open) and must start without Kafka; the consumer requires Kafka.
The web app also serves the dashboard, which requires `KOE_SECRET_KEY` (it signs
the session cookie; a guessable key would let anyone forge a signed-in session).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from aggregator.counting import DEFAULT_PER_SOURCE_DAY
from aggregator.crowd import CrowdRule
from aggregator.detector import DetectorSettings
from aggregator.ingest import DEFAULT_MAX_AGE_DAYS
from aggregator.page_list import DEFAULT_QUIET_DAYS
from aggregator.pages.registry import DEFAULT_MIN_SOURCES
from aggregator.pruning import DEFAULT_SOURCE_KEEP_DAYS, default_keep_days, shortest_keep_days
from aggregator.retention import DEFAULT_KEEP_YEARS
from koe_contract import AGGREGATOR, FEEDBACK_TOPIC
from koe_directory import Directory, DirectoryError, load_directory
from koe_kit.config import ConfigError, EnvReader
from koe_kit.db import default_database_url
from koe_kit.kafka import KafkaSettings

MIN_TOKEN_LENGTH = 16
MIN_SECRET_KEY_LENGTH = 32


@dataclass(frozen=True)
class Settings:
    database_url: str = default_database_url("aggregator")
    api_token: str | None = None
    timezone: ZoneInfo = ZoneInfo("Asia/Tokyo")
    consumer_group: str = AGGREGATOR
    # Days after which an alert is old news: recorded, not emailed (ingest.py).
    alert_max_age_days: int = DEFAULT_MAX_AGE_DAYS
    # What an alert's evidence needs to be emailed rather than held for review (crowd.py).
    crowd_rule: CrowdRule = CrowdRule()
    # The drop detector's knobs (detector.py).
    detector: DetectorSettings = DetectorSettings()
    # How long after a city day's midnight the daily sweep judges it (daily_sweep.py):
    # answers from its last minutes may still be on their way through the relay.
    sweep_grace: timedelta = timedelta(minutes=60)
    kafka: KafkaSettings | None = None
    secret_key: str | None = None
    # Off only for plain-http tests and local runs: a Secure cookie is never sent over http.
    secure_cookies: bool = True
    divisions_file: str = "divisions.yaml"
    # Reverse proxies in front of the dashboard whose X-Forwarded-For is trusted, so
    # sign-in throttling sees the client's address rather than the proxy's.
    trusted_proxies: int = 0
    # How long a counted event is remembered (pruning.py): as long as Kafka can deliver it.
    processed_keep_days: int = default_keep_days(FEEDBACK_TOPIC)
    # Responses per page, city-local day and source that count (counting.py).
    count_per_source_day: int = DEFAULT_PER_SOURCE_DAY
    # Distinct sources that must answer a page the city's list does not name before it
    # is shown, and that must send a title before it is the page's (pages/registry.py).
    page_min_sources: int = DEFAULT_MIN_SOURCES
    # How long source_counts rows are kept (pruning.py); the counts stay.
    source_keep_days: int = DEFAULT_SOURCE_KEEP_DAYS
    # Years of daily rows kept; older ones fold into monthly rows (retention.py).
    daily_keep_years: int = DEFAULT_KEEP_YEARS
    # Days without an answer after which a page leaves the default pages list
    # (page_list.py); a search or the "quiet pages too" filter still finds it.
    page_quiet_days: int = DEFAULT_QUIET_DAYS


def load_settings(
    env: Mapping[str, str] | None = None, *, need_token: bool = False, need_kafka: bool = False
) -> Settings:
    """Raise ConfigError naming every missing or invalid variable."""
    reader = EnvReader(env)
    database_url = reader.str("DATABASE_URL", default_database_url("aggregator"))
    token = reader.str("KOE_API_TOKEN", None)
    timezone = reader.zone("KOE_TIMEZONE", "Asia/Tokyo")
    group = reader.str("KOE_CONSUMER_GROUP", AGGREGATOR)
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
    # 2,000 events per transaction: 0.58x a raw consumer against 0.48x with 500
    # (bench/bench_aggregator.py); latency is bound by KOE_BATCH_MAX_WAIT_MS, not size.
    kafka = (
        KafkaSettings.from_env(reader, client_id="koe-aggregator", default_batch_messages=2000)
        if need_kafka
        else None
    )
    secret_key = reader.str("KOE_SECRET_KEY", None)
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
    if need_token:
        for problem in (token_problem(token), secret_key_problem(secret_key)):
            if problem:
                reader.problems.append(problem)
    reader.check()
    return Settings(
        database_url=database_url,
        api_token=token,
        timezone=timezone,
        consumer_group=group,
        alert_max_age_days=max_age_days,
        sweep_grace=sweep_grace,
        crowd_rule=crowd_rule,
        detector=detector,
        kafka=kafka,
        secret_key=secret_key,
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


def require_token(settings: Settings) -> str:
    return _required(settings.api_token, token_problem)


def secret_key_problem(key: str | None) -> str | None:
    return _secret_problem(
        "KOE_SECRET_KEY",
        key,
        MIN_SECRET_KEY_LENGTH,
        "it signs the dashboard's session cookie "
        '(e.g. python -c "import secrets; print(secrets.token_urlsafe(48))")',
    )


def require_secret_key(settings: Settings) -> str:
    return _required(settings.secret_key, secret_key_problem)


def _secret_problem(name: str, value: str | None, min_length: int, why: str) -> str | None:
    """What is wrong with a secret setting: unset (`why` it is needed) or too short."""
    if not value:
        return f"{name} is required: {why}"
    if len(value) < min_length:
        return f"{name} is too short: use at least {min_length} characters"
    return None


def _required(value: str | None, problem: Callable[[str | None], str | None]) -> str:
    """The secret for a process that cannot run without it (the web app)."""
    found = problem(value)
    if found:
        raise ConfigError([found])
    assert value is not None
    return value
