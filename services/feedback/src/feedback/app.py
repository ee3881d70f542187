"""The feedback API's app factory."""

from __future__ import annotations

from flask import Flask, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from feedback import demo, embed, metrics
from feedback.config import Settings, load_settings
from feedback.openapi import init_openapi
from feedback.retention import Retention
from feedback.schemas import FeedbackSchema
from feedback.services import Rules
from feedback.sources import Sources
from feedback.views import Intake, blueprint
from koe_directory import load_directory
from koe_kit.db import make_engine
from koe_kit.metrics import init_metrics
from koe_kit.web import health_blueprint, init_db, init_json_errors, trust_proxies


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; the divisions file and settings are read here, once, not per request.

    Raises koe_kit.config.ConfigError or koe_directory.DirectoryError when it cannot start.
    """
    settings = settings or load_settings()
    directory = load_directory(settings.divisions_file)
    app = Flask(__name__)
    trust_proxies(app, settings.trusted_proxies)  # README, "Spam and abuse"
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_body_bytes
    app.extensions["koe.feedback.settings"] = settings
    # No pre-ping on the hot path: it costs a round trip per request (ingest went
    # from 617 to 759 req/s without it, bench/bench_ingest.py). A connection that
    # died with a database restart fails one request with 503 + Retry-After, and
    # SQLAlchemy then invalidates the whole pool.
    init_db(app, make_engine(settings.database_url, pool_pre_ping=False))
    app.extensions["koe.feedback.intake"] = Intake(
        schema=FeedbackSchema(
            origins=settings.allowed_origins, directory=directory, cms_key=settings.cms_key
        ),
        origins=settings.allowed_origins,
        challenges=settings.challenges,
        rules=Rules(budgets=settings.budgets, replace_window_s=settings.replace_window_s),
        sources=Sources(app.extensions["koe.sessions"], settings.timezone),
        retention=Retention(
            response_keep_days=settings.response_keep_days,
            source_key_keep_days=settings.source_key_keep_days,
            replace_window_s=settings.replace_window_s,
        ),
    )
    app.extensions["koe.feedback.directory"] = directory
    init_json_errors(app)
    init_metrics(app, "feedback", settings.metrics)

    @app.before_request
    def whole_chunked_body():
        # A chunked body has no Content-Length for werkzeug to refuse up front: it stops
        # reading at the limit, and a view would see the body cut short (a 400 for bad
        # JSON, or a form missing fields). Read it here: one that reaches the limit is
        # too large. The widget's fetch() sends a Content-Length and never comes here.
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "")
        if chunked and request.content_length is None and _reaches(settings.max_body_bytes):
            raise RequestEntityTooLarge()

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc: RequestEntityTooLarge):
        metrics.REJECTIONS.labels(reason="invalid").inc()  # a flood of these is spam too
        reason = f"request body is larger than {settings.max_body_bytes} bytes"
        return jsonify(errors={"body": [reason]}), 413

    app.register_blueprint(health_blueprint())
    app.register_blueprint(blueprint)
    embed.init_widget(app)
    app.register_blueprint(embed.blueprint)
    app.register_blueprint(demo.blueprint)
    init_openapi(app, settings.allowed_origins, directory.divisions)
    return app


def _reaches(limit: int) -> bool:
    """Whether the request's body (read and kept for the view) is `limit` bytes or more."""
    return len(request.get_data(cache=True)) >= limit
