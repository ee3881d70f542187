"""Start-up: what each process needs, and how it says what is missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, inspect

from feedback.budgets import Budgets
from feedback.config import load_relay_settings, load_settings
from koe_kit.config import ConfigError

KEY = "k" * 32


def test_api_needs_origins_and_a_challenge_key_but_not_kafka():
    settings = load_settings(
        {
            "KOE_ALLOWED_ORIGINS": "HTTPS://Example.JP:443,http://localhost:8000",
            "KOE_CHALLENGE_KEY": KEY,
        }
    )
    assert settings.allowed_origins == {"https://example.jp", "http://localhost:8000"}
    assert settings.database_url == "sqlite:///var/feedback.db"
    assert settings.max_body_bytes == 16 * 1024
    assert settings.trusted_proxies == 0
    assert settings.challenges.key == KEY.encode()
    assert (settings.challenges.max_number, settings.challenges.ttl_s) == (100_000, 1200)
    assert settings.budgets == Budgets(
        one_page=60, all_pages=600, form_one_page=10, form_all_pages=60, new_pages=10
    )
    assert settings.replace_window_s == 30 * 60
    assert str(settings.timezone) == "Asia/Tokyo"
    assert settings.cms_key is None  # optional: without it every page_id is ignored
    assert (settings.response_keep_days, settings.source_key_keep_days) == (400, 2)

    with pytest.raises(ConfigError) as missing:
        load_settings({})
    assert "KOE_ALLOWED_ORIGINS" in str(missing.value)
    assert "KOE_CHALLENGE_KEY is required" in str(missing.value)


def test_a_short_challenge_key_is_refused():
    with pytest.raises(ConfigError, match="KOE_CHALLENGE_KEY is too short"):
        load_settings({"KOE_ALLOWED_ORIGINS": "https://example.jp", "KOE_CHALLENGE_KEY": "short"})


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("KOE_CHALLENGE_MAX_NUMBER", "0", "must be at least 1"),
        ("KOE_CHALLENGE_MAX_NUMBER", "20000000", "must be at most 10000000"),
        ("KOE_CHALLENGE_TTL_S", "0", "must be at least 1"),
        ("KOE_CHALLENGE_TTL_S", "100000", "must be at most 86400"),
    ],
)
def test_the_challenge_settings_have_bounds(name, value, reason):
    env = {"KOE_ALLOWED_ORIGINS": "https://example.jp", "KOE_CHALLENGE_KEY": KEY, name: value}
    with pytest.raises(ConfigError, match=f"{name}={value!r} is invalid: {reason}"):
        load_settings(env)


def test_the_door_settings_say_what_is_wrong():
    with pytest.raises(ConfigError) as wrong:
        load_settings(
            {
                "KOE_ALLOWED_ORIGINS": "https://example.jp",
                "KOE_CHALLENGE_KEY": KEY,
                "KOE_CMS_KEY": "short",
                "KOE_BUDGET_ONE_PAGE": "0",
                "KOE_BUDGET_NEW_PAGES": str(10**10),
                "KOE_TIMEZONE": "Asia/Nagoya",
                "KOE_RESPONSE_KEEP_DAYS": "0",
            }
        )
    problems = str(wrong.value)
    for name in (
        "KOE_CMS_KEY is too short",
        "KOE_BUDGET_ONE_PAGE",
        "KOE_BUDGET_NEW_PAGES",
        "KOE_TIMEZONE",
        "KOE_RESPONSE_KEEP_DAYS",
    ):
        assert name in problems


@pytest.mark.parametrize("origin", ["ftp://example.jp", "https://example.jp/path", "example.jp"])
def test_an_origin_must_be_scheme_and_host_only(origin):
    with pytest.raises(ConfigError, match="KOE_ALLOWED_ORIGINS"):
        load_settings({"KOE_ALLOWED_ORIGINS": origin, "KOE_CHALLENGE_KEY": KEY})


def test_relay_needs_kafka_but_not_origins():
    settings = load_relay_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"})
    assert (settings.batch_size, settings.idle_ms, settings.keep_hours) == (500, 200, 168)

    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        load_relay_settings({"KOE_RELAY_BATCH": "0"})


def run_module(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KOE_", "KAFKA_"))}
    return subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True
    )


@pytest.mark.integration
def test_wsgi_without_origins_stops_with_a_message(tmp_path):
    done = run_module("import feedback.wsgi", {"DATABASE_URL": f"sqlite:///{tmp_path}/f.db"})
    assert done.returncode == 2
    assert "KOE_ALLOWED_ORIGINS" in done.stderr


@pytest.mark.integration
def test_wsgi_with_a_missing_divisions_file_stops_with_a_message(tmp_path):
    done = run_module(
        "import feedback.wsgi",
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/f.db",
            "KOE_ALLOWED_ORIGINS": "http://localhost:8000",
            "KOE_CHALLENGE_KEY": KEY,
            "KOE_DIVISIONS_FILE": str(tmp_path / "nope.yaml"),
        },
    )
    assert done.returncode == 2
    assert "KOE_DIVISIONS_FILE" in done.stderr


@pytest.mark.integration
def test_migrate_creates_the_tables(tmp_path):
    url = f"sqlite:///{tmp_path}/feedback.db"
    done = run_module(
        "import runpy; runpy.run_module('feedback.migrate', run_name='__main__')",
        {"DATABASE_URL": url},
    )
    assert done.returncode == 0, done.stderr
    engine = create_engine(url)
    try:
        assert {
            "responses",
            "outbox",
            "source_keys",
            "answer_tokens",
            "budgets",
            "known_pages",
        } <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
