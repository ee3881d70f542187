"""Start-up: what each process needs, and how it says what is missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, inspect

from feedback.config import load_relay_settings, load_settings
from koe_kit.config import ConfigError

KEY = "k" * 32
CHALLENGE_KEY = "c" * 32


def test_api_needs_origins_and_keys_but_not_kafka():
    settings = load_settings(
        {
            "KOE_ALLOWED_ORIGINS": "HTTPS://Example.JP:443,http://localhost:8000",
            "KOE_CLIENT_KEY": KEY,
            "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
        }
    )
    assert settings.allowed_origins == {"https://example.jp", "http://localhost:8000"}
    assert settings.database_url == "sqlite:///var/feedback.db"
    assert settings.max_body_bytes == 16 * 1024
    assert settings.client_key == KEY.encode()
    assert settings.trusted_proxies == 0
    assert settings.challenges.key == CHALLENGE_KEY.encode()
    assert (settings.challenges.max_number, settings.challenges.ttl_s) == (100_000, 1200)
    assert (settings.rate_limit_max, settings.rate_limit_window_s) == (10, 3600)
    assert settings.replace_window_s == 30 * 60

    with pytest.raises(ConfigError) as missing:
        load_settings({})
    assert "KOE_ALLOWED_ORIGINS" in str(missing.value)
    assert "KOE_CLIENT_KEY is required" in str(missing.value)
    assert "KOE_CHALLENGE_KEY is required" in str(missing.value)


@pytest.mark.parametrize("name", ["KOE_CLIENT_KEY", "KOE_CHALLENGE_KEY"])
def test_a_short_key_is_refused(name):
    keys = {"KOE_CLIENT_KEY": KEY, "KOE_CHALLENGE_KEY": CHALLENGE_KEY, name: "short"}
    with pytest.raises(ConfigError, match=f"{name} is too short"):
        load_settings({"KOE_ALLOWED_ORIGINS": "https://example.jp", **keys})


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
    env = {
        "KOE_ALLOWED_ORIGINS": "https://example.jp",
        "KOE_CLIENT_KEY": KEY,
        "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
        name: value,
    }
    with pytest.raises(ConfigError, match=f"{name}={value!r} is invalid: {reason}"):
        load_settings(env)


@pytest.mark.parametrize("origin", ["ftp://example.jp", "https://example.jp/path", "example.jp"])
def test_an_origin_must_be_scheme_and_host_only(origin):
    with pytest.raises(ConfigError, match="KOE_ALLOWED_ORIGINS"):
        load_settings(
            {
                "KOE_ALLOWED_ORIGINS": origin,
                "KOE_CLIENT_KEY": KEY,
                "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
            }
        )


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


def test_wsgi_without_origins_stops_with_a_message(tmp_path):
    done = run_module("import feedback.wsgi", {"DATABASE_URL": f"sqlite:///{tmp_path}/f.db"})
    assert done.returncode == 2
    assert "KOE_ALLOWED_ORIGINS" in done.stderr


def test_wsgi_with_a_missing_divisions_file_stops_with_a_message(tmp_path):
    done = run_module(
        "import feedback.wsgi",
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/f.db",
            "KOE_ALLOWED_ORIGINS": "http://localhost:8000",
            "KOE_CLIENT_KEY": KEY,
            "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
            "KOE_DIVISIONS_FILE": str(tmp_path / "nope.yaml"),
        },
    )
    assert done.returncode == 2
    assert "KOE_DIVISIONS_FILE" in done.stderr


def test_migrate_creates_the_tables(tmp_path):
    url = f"sqlite:///{tmp_path}/feedback.db"
    done = run_module(
        "import runpy; runpy.run_module('feedback.migrate', run_name='__main__')",
        {"DATABASE_URL": url},
    )
    assert done.returncode == 0, done.stderr
    engine = create_engine(url)
    try:
        assert {"responses", "outbox", "client_guard"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
