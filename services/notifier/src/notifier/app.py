"""The notifier's HTTP side: health checks only (it has no API of its own yet)."""

from __future__ import annotations

from flask import Flask, current_app
from sqlalchemy import select

from koe_kit.db import make_engine
from koe_kit.metrics import init_metrics
from koe_kit.web import health_blueprint, init_db, init_json_errors
from notifier.config import WebSettings, load_web_settings
from notifier.models import SentAlert


def create_app(settings: WebSettings | None = None) -> Flask:
    settings = settings or load_web_settings()
    app = Flask(__name__)
    app.extensions["koe.settings"] = settings
    init_json_errors(app)
    init_metrics(app, "notifier", settings.metrics)
    init_db(app, make_engine(settings.database_url))
    app.register_blueprint(health_blueprint(extra_check=_migrated))
    return app


def _migrated() -> None:
    """Ready means the database answers *and* has our table (migrate has run)."""
    with current_app.extensions["koe.engine"].connect() as connection:
        connection.execute(select(SentAlert.alert_id).limit(1))
