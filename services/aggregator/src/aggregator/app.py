"""The stats API's and the dashboard's app factory (`gunicorn aggregator.wsgi:app`)."""

from __future__ import annotations

from flask import Flask

from aggregator.api.views import api
from aggregator.config import WebSettings, load_web_settings, read_divisions
from aggregator.dashboard.access import unknown_url
from aggregator.dashboard.export import export
from aggregator.dashboard.views import dashboard
from koe_kit.db import make_engine
from koe_kit.metrics import init_metrics
from koe_kit.web import health_blueprint, init_db, init_json_errors, trust_proxies


def create_app(settings: WebSettings | None = None) -> Flask:
    """Raise ConfigError when KOE_API_TOKEN or KOE_SECRET_KEY is missing or weak (the API
    never runs open, the dashboard's cookies are never forgeable) or divisions.yaml is
    unreadable."""
    settings = settings or load_web_settings()
    directory = read_divisions(settings)
    # /static/ as before the dashboard's files moved into dashboard/ (its blueprint
    # serves them at /static/dashboard/ too).
    app = Flask(__name__, static_folder="dashboard/static")
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="koe_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        MAX_CONTENT_LENGTH=64 * 1024,  # the dashboard's forms are a few fields
    )
    trust_proxies(app, settings.trusted_proxies)  # the sign-in throttle counts per client
    app.extensions["aggregator.directory"] = directory
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["aggregator.settings"] = settings
    init_db(app, make_engine(settings.database_url))
    init_json_errors(app)
    app.register_error_handler(404, unknown_url)
    init_metrics(app, "aggregator", settings.metrics)
    app.register_blueprint(health_blueprint())
    app.register_blueprint(api)
    app.register_blueprint(dashboard)
    app.register_blueprint(export)
    return app
