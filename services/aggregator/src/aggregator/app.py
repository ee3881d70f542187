"""The stats API's app factory (`gunicorn aggregator.wsgi:app`)."""

from __future__ import annotations

from flask import Flask

from aggregator.config import Settings, load_settings, require_token
from aggregator.views import api
from koe_kit.db import make_engine
from koe_kit.web import health_blueprint, init_db, init_json_errors


def create_app(settings: Settings | None = None) -> Flask:
    """Raise ConfigError when KOE_API_TOKEN is missing or weak: the API never runs open."""
    settings = settings or load_settings(need_token=True)
    require_token(settings)
    app = Flask(__name__)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["aggregator.settings"] = settings
    init_db(app, make_engine(settings.database_url))
    init_json_errors(app)
    app.register_blueprint(health_blueprint())
    app.register_blueprint(api)
    return app
