"""Flask plumbing shared by the services: health checks, JSON errors, DB session,
the client's address behind reverse proxies."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from flask import Blueprint, Flask, g, jsonify, request
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from koe_kit import correlation
from koe_kit.db import ping, session_factory

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_S = 5


class DatabaseResting(Exception):
    """The database failed a moment ago; this process does not try it again yet."""


def init_db(app: Flask, engine: Engine, rest_s: float = DATABASE_RETRY_AFTER_S) -> None:
    """Bind an engine; views get a per-request session from `db_session()`.

    After the database fails a request (OperationalError), this process answers 503 at
    once for `rest_s` instead of trying it again: with the database unreachable, every
    try waits out the connect timeout, and a few sync workers doing that would keep
    every other citizen waiting in the queue. Clients are told the same in Retry-After.
    """
    app.extensions["koe.engine"] = engine
    app.extensions["koe.sessions"] = session_factory(engine)
    app.extensions["koe.db_rest_s"] = rest_s

    @app.teardown_appcontext
    def close_session(_exc: BaseException | None) -> None:
        session = g.pop("koe_session", None)
        if session is not None:
            session.close()


def db_session() -> Session:
    from flask import current_app

    if "koe_session" not in g:
        if time.monotonic() < current_app.extensions.get("koe.db_resting_until", 0.0):
            raise DatabaseResting()
        g.koe_session = current_app.extensions["koe.sessions"]()
    return g.koe_session


def trust_proxies(app: Flask, trusted_proxies: int) -> None:
    """Make `request.remote_addr` the client's address when `trusted_proxies` reverse
    proxies (KOE_TRUSTED_PROXIES) each append the address they saw to X-Forwarded-For.

    werkzeug's ProxyFix fits every app here: the survey API's per-client limits and the
    dashboard's sign-in throttle both only need the address. It counts from the right,
    so only entries our own proxies wrote are believed, and it sets REMOTE_ADDR, so
    everything reading the address agrees. With 0 nothing is trusted: anyone could
    write any address into the header, so the TCP peer is the client.
    """
    if trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted_proxies)  # type: ignore[method-assign]


def health_blueprint(extra_check: Callable[[], None] | None = None) -> Blueprint:
    """/healthz: the process answers. /readyz: its database (and extras) answer too."""
    bp = Blueprint("health", __name__)

    @bp.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @bp.get("/readyz")
    def readyz():
        from flask import current_app

        try:
            ping(current_app.extensions["koe.engine"])
            if extra_check:
                extra_check()
        except Exception as exc:
            log.warning("not ready", extra={"error": str(exc)[:300]})
            return jsonify(status="unavailable", reason=type(exc).__name__), 503
        return jsonify(status="ok")

    return bp


def json_error(exc: HTTPException):
    """An HTTP error as JSON (an app's HTML pages may answer some errors themselves)."""
    response = jsonify(error=exc.name, message=exc.description)
    # The error's own headers stay (a 405's Allow, RFC 9110), all but its HTML type.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, exc.code or 500


def init_json_errors(app: Flask) -> None:
    """Every error answers JSON, and every response carries a request id."""

    @app.before_request
    def request_id() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        # Only accept ids that are safe to echo and log.
        g.request_id = incoming if _safe_id(incoming) else str(uuid.uuid4())
        # Log lines and events made while answering carry it (koe_kit.correlation).
        correlation.set_request_id(g.request_id)

    @app.after_request
    def echo_request_id(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        log.info(
            "answered",
            extra={"method": request.method, "path": request.path, "status": response.status_code},
        )
        return response

    @app.teardown_request
    def forget_request_id(_exc: BaseException | None) -> None:
        correlation.set_request_id(None)

    app.register_error_handler(HTTPException, json_error)

    @app.errorhandler(OperationalError)
    def database_unavailable(exc: OperationalError):
        # The database is down or unreachable: nothing was stored (the transaction
        # never committed), so the client may safely send the same thing again.
        log.warning("database unavailable", extra={"error": str(exc)[:300]})
        app.extensions["koe.db_resting_until"] = time.monotonic() + app.extensions.get(
            "koe.db_rest_s", DATABASE_RETRY_AFTER_S
        )
        return _unavailable()

    @app.errorhandler(DatabaseResting)
    def database_resting(_exc: DatabaseResting):
        return _unavailable()

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error", extra={"request_id": g.get("request_id")})
        return jsonify(error="Internal Server Error", request_id=g.get("request_id")), 500


def _unavailable():
    response = jsonify(error="Service Unavailable", message="database unavailable, retry")
    response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response, 503


def _safe_id(value: str) -> bool:
    return 0 < len(value) <= 64 and all(c.isalnum() or c in "-_." for c in value)
