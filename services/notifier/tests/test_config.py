"""Settings: defaults, and a process that cannot start says why."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from koe_kit.config import ConfigError
from notifier.config import load_consumer_settings, load_settings, load_web_settings

DIVISIONS = str(Path(__file__).resolve().parents[3] / "divisions.yaml")


def test_defaults():
    settings = load_settings({"KOE_DIVISIONS_FILE": DIVISIONS})
    assert settings.database_url == "sqlite:///var/notifier.db"
    assert (settings.smtp.host, settings.smtp.port) == ("127.0.0.1", 1025)
    assert settings.smtp.starttls is False
    assert settings.mail_from == "koe <koe@localhost>"
    assert settings.dashboard_url is None
    assert settings.directory.knows("somu-dx")


def test_the_health_app_starts_without_kafka():
    settings = load_web_settings({"KOE_DIVISIONS_FILE": DIVISIONS})
    assert settings.metrics.token is None
    assert "kafka" not in {field.name for field in fields(settings)}


def test_consumer_settings_need_kafka():
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS is required"):
        load_consumer_settings({"KOE_DIVISIONS_FILE": DIVISIONS})
    settings = load_consumer_settings(
        {"KOE_DIVISIONS_FILE": DIVISIONS, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}
    )
    assert settings.kafka.client_id == "koe-notifier"
    assert settings.consumer_group == "notifier"


def test_a_missing_divisions_file_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="KOE_DIVISIONS_FILE: .*nowhere.yaml: file not found"):
        load_settings({"KOE_DIVISIONS_FILE": str(tmp_path / "nowhere.yaml")})


def test_an_invalid_divisions_file_names_the_problem(tmp_path):
    bad = tmp_path / "divisions.yaml"
    bad.write_text("divisions:\n  - code: x\n    name: 課\n    emails: [not-an-address]\n")
    with pytest.raises(ConfigError, match=r"divisions\[0\]\.emails"):
        load_settings({"KOE_DIVISIONS_FILE": str(bad)})


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {
                "KOE_DIVISIONS_FILE": DIVISIONS,
                "SMTP_PORT": "smtp",
                "SMTP_STARTTLS": "maybe",
                "SMTP_USERNAME": "koe",
                "MAIL_FROM": "nobody",
                "KOE_DASHBOARD_URL": "koe.example",
            }
        )
    problems = "\n".join(caught.value.problems)
    for name in ("SMTP_PORT", "SMTP_STARTTLS", "SMTP_PASSWORD", "MAIL_FROM", "KOE_DASHBOARD_URL"):
        assert name in problems


def test_dashboard_url_loses_its_trailing_slash():
    settings = load_settings(
        {"KOE_DIVISIONS_FILE": DIVISIONS, "KOE_DASHBOARD_URL": "https://koe.example/"}
    )
    assert settings.dashboard_url == "https://koe.example"
