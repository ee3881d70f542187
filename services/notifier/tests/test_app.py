"""/healthz and /readyz of the notifier's web process."""

from __future__ import annotations

from notifier.app import create_app
from notifier.config import load_web_settings


def test_ready_once_migrated(env, engine):
    client = create_app(load_web_settings(env)).test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").json == {"status": "ok"}


def test_not_ready_before_migrations(env):
    client = create_app(load_web_settings(env)).test_client()
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
