"""Helpers for the cross-service tests: koe as real subprocesses, and waiting for it."""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path

import requests

from koe_directory import canonical_url, page_id_for_url
from koe_kit import events
from koe_kit.local_broker import free_port
from koe_kit.local_stack import LocalStack

REPO = Path(__file__).parents[1]
API_TOKEN = "test-token-" + "x" * 24
SECRET_KEY = "test-session-secret-" + "y" * 24  # the dashboard's cookie key
SITE = "https://www.info.city.tsu.mie.jp"
DX_PAGE = f"{SITE}/shisei/dx/1234.html"
DX_TITLE = "津市の自治体DX取組状況"


def answered(**changes) -> dict:
    """The survey answered for the DX page, as widget.js sends it to the API; `changes`
    replace fields, and a field changed to ... is left out."""
    body = {
        "page_url": DX_PAGE,
        "page_title": DX_TITLE,
        "division": "somu-dx",
        "answers": {"findability": "yes", "clarity": "neutral", "usefulness": "no"},
        "locale": "ja",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def submitted(page_url: str, answers: dict[str, str], at: datetime, title: str = DX_TITLE) -> dict:
    """One response to `page_url` as the relay publishes it, dated `at`: for a history of
    weeks, which the API would date today."""
    response_id = str(uuid.uuid4())
    page_id = page_id_for_url(canonical_url(page_url))
    return events.make_event(
        "koe.feedback.submitted.v1",
        source="koe/test-history",
        subject=page_id,
        event_id=response_id,
        time=at,
        data={
            "response_id": response_id,
            "page_id": page_id,
            "page_url": canonical_url(page_url),
            "page_title": title,
            "division": None,
            "locale": "ja",
            "answers": answers,
        },
    )


def stack_env(broker, smtp_server, new_pg_database, fast_kafka_env, **extra: str) -> dict[str, str]:
    # The machine's environment minus any koe setting a developer may have exported.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KOE_", "KAFKA_", "SMTP_", "FEEDBACK_", "AGGREGATOR_", "NOTIFIER_"))
        and k != "DATABASE_URL"
    }
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "SMTP_HOST": smtp_server.host,
        "SMTP_PORT": str(smtp_server.port),
        "KOE_API_TOKEN": API_TOKEN,
        "KOE_SECRET_KEY": SECRET_KEY,
        "KOE_DASHBOARD_SECURE_COOKIES": "false",
        "KOE_ALLOWED_ORIGINS": SITE,
        "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
        "KOE_FEEDBACK_PORT": str(free_port()),
        "KOE_AGGREGATOR_PORT": str(free_port()),
        "KOE_NOTIFIER_PORT": str(free_port()),
        "FEEDBACK_DATABASE_URL": new_pg_database(),
        "AGGREGATOR_DATABASE_URL": new_pg_database(),
        "NOTIFIER_DATABASE_URL": new_pg_database(),
        "KOE_WEB_WORKERS": "2",
        # These tests post many responses from one client (this machine, one user
        # agent) to one page: no folding, no rate limit. tests/test_widget_* test those.
        "KOE_REPLACE_WINDOW_MINUTES": "0",
        "KOE_RATE_LIMIT_MAX": "1000000",
        **fast_kafka_env,
    }
    env.update(extra)
    return env


class Koe:
    """A running koe and the HTTP calls a user would make to it."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.http = requests.Session()

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.stack.port(service)}{path}"

    def submit(self, **body) -> requests.Response:
        return self.http.post(self.url("feedback", "/api/v1/feedback"), json=body, timeout=10)

    def stats(self, path: str = "/api/v1/pages", **params) -> requests.Response:
        return self.http.get(
            self.url("aggregator", path),
            params=params,
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=10,
        )

    def page_n(self, page_id: str) -> int:
        response = self.stats(f"/api/v1/pages/{page_id}")
        if response.status_code == 404:
            return 0
        response.raise_for_status()
        return response.json()["windows"]["all"]["n"]
