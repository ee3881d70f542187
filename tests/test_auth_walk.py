"""Every route of the three web apps (feedback, aggregator, notifier), walked from their
url_map: a route not on the short public list below must refuse a visitor without
credentials and one with wrong ones (a bad bearer token, a session cookie signed with
another key, a well-signed cookie with a made-up session). A route added later without
protection fails here. Then CORS on every feedback endpoint a browser calls."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from aggregator.app import create_app as create_aggregator
from aggregator.config import load_web_settings as aggregator_settings
from aggregator.migrate import migrate as migrate_aggregator
from feedback.app import create_app as create_feedback
from feedback.config import load_settings as feedback_settings
from feedback.migrate import MIGRATIONS as FEEDBACK_MIGRATIONS
from koe_kit.db import upgrade
from notifier.app import create_app as create_notifier
from notifier.config import load_web_settings as notifier_settings
from notifier.migrate import migrate as migrate_notifier
from support import (
    API_TOKEN,
    CHALLENGE_KEY,
    CHALLENGE_MAX_NUMBER,
    REPO,
    SECRET_KEY,
    SITE,
    answered,
    solving,
)

METRICS_TOKEN = "walk-test-metrics-token-" + "m" * 8
WRONG_TOKEN = "wrong-token-" + "w" * 24
FORGED_CSRF = "forged-csrf"  # noqa: S105 (the CSRF token a forged session carries)
# Endpoints anyone may call, by app: the reason is on each line. Everything else must
# refuse a visitor without credentials.
PUBLIC = {
    "feedback": {
        "health.healthz": "liveness probe",
        "health.readyz": "readiness probe",
        "static": "widget.js and widget.css, loaded by every city page",
        "feedback.submit_json": "the survey itself: citizens are anonymous",
        "feedback.submit_form": "the survey without JavaScript",
        "feedback.challenge": "the widget's proof-of-work challenge",
        "feedback.preflight": "CORS preflight of the two above",
        "embed.generator": "fills the public snippet in",
        "embed.strings": "the widget's words in the page's language",
        "demo.index": "the demo",
        "demo.tsu_dx": "the demo city page",
        "openapi.openapi_json": "the API's public description",
    },
    "aggregator": {
        "health.healthz": "liveness probe",
        "health.readyz": "readiness probe",
        "static": "the app's static folder (empty: the dashboard's files are below)",
        "dashboard.static": "the dashboard's stylesheet",
        "dashboard.sign_in": "the way in",
        "dashboard.sign_out": "ends the caller's own session, if any",
        "dashboard.home": "a redirect to /pages, which is protected",
    },
    "notifier": {
        "health.healthz": "liveness probe",
        "health.readyz": "readiness probe",
        "static": "Flask's default static route; the notifier has no files to serve",
    },
}
# A value for each URL variable the apps use.
URL_VALUES = {
    "page_id": "u-0000000000000001",
    "alert_id": "3c1e7a4e-8f0e-5b7a-9d2c-6e4f1a0b9c33",
    "filename": "dashboard.css",
    "lang": "en",
    "locale": "pt",
}


def make_apps(tmp_path: Path, metrics_token: str | None) -> dict[str, Flask]:
    """The three apps on SQLite databases of their own, as ops configure them."""
    metrics = {"KOE_METRICS_TOKEN": metrics_token} if metrics_token else {}
    urls = {name: f"sqlite:///{tmp_path / f'{name}.db'}" for name in PUBLIC}
    upgrade(urls["feedback"], FEEDBACK_MIGRATIONS)
    migrate_aggregator(urls["aggregator"])
    migrate_notifier(urls["notifier"])
    divisions = str(REPO / "divisions.yaml")
    return {
        "feedback": solving(
            create_feedback(
                feedback_settings(
                    {
                        "DATABASE_URL": urls["feedback"],
                        "KOE_DIVISIONS_FILE": divisions,
                        "KOE_ALLOWED_ORIGINS": SITE,
                        "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
                        "KOE_CHALLENGE_MAX_NUMBER": CHALLENGE_MAX_NUMBER,
                        **metrics,
                    }
                )
            )
        ),
        "aggregator": create_aggregator(
            aggregator_settings(
                {
                    "DATABASE_URL": urls["aggregator"],
                    "KOE_API_TOKEN": API_TOKEN,
                    "KOE_SECRET_KEY": SECRET_KEY,
                    "KOE_DASHBOARD_SECURE_COOKIES": "false",
                    "KOE_DIVISIONS_FILE": divisions,
                    **metrics,
                }
            )
        ),
        "notifier": create_notifier(
            notifier_settings(
                {"DATABASE_URL": urls["notifier"], "KOE_DIVISIONS_FILE": divisions, **metrics}
            )
        ),
    }


@pytest.fixture
def apps(tmp_path):
    apps = make_apps(tmp_path, METRICS_TOKEN)
    yield apps
    for app in apps.values():
        app.extensions["koe.engine"].dispose()


def routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, path with its variables filled in) of every route."""
    found = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?(\w+)>", lambda m: URL_VALUES[m.group(1)], rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}) or ["OPTIONS"]:
            found.append((rule.endpoint, method, path))
    return found


def forged_cookie(app: Flask, secret: str, session_token: str) -> str:
    """A dashboard session cookie saying `session_token`, signed with `secret`."""
    forger = Flask("forger")
    forger.secret_key = secret
    serializer = SecureCookieSessionInterface().get_signing_serializer(forger)
    assert serializer is not None
    return serializer.dumps({"auth": session_token, "csrf": FORGED_CSRF})


def visitors(app: Flask) -> dict[str, dict[str, str]]:
    """Headers of each kind of visitor without valid credentials."""
    cookie = app.config.get("SESSION_COOKIE_NAME", "session")
    return {
        "nobody": {},
        "bad bearer token": {"Authorization": f"Bearer {WRONG_TOKEN}"},
        "not a bearer token": {"Authorization": f"Basic {API_TOKEN}"},
        "cookie signed with another key": {
            "Cookie": f"{cookie}={forged_cookie(app, 'another-key-' + 'x' * 32, 'any')}"
        },
        "cookie with a made-up session": {
            "Cookie": f"{cookie}={forged_cookie(app, SECRET_KEY, 'made-up-session-token')}"
        },
    }


def anonymous_csrf_token(client) -> str:
    """The CSRF token of the anonymous session the sign-in page gives a visitor."""
    found = re.search(
        r'name="csrf_token" value="([^"]+)"', client.get("/sign-in").get_data(as_text=True)
    )
    return found.group(1) if found else ""


def refused(answer) -> bool:
    """401/403, or a redirect to the sign-in page."""
    if answer.status_code in (401, 403):
        return True
    location = answer.headers.get("Location", "")
    return answer.status_code in (302, 303) and "/sign-in" in location


@pytest.mark.parametrize("service", list(PUBLIC))
def test_every_non_public_route_refuses_without_credentials(apps, service):
    app = apps[service]
    walked = routes(app)
    endpoints = {endpoint for endpoint, _, _ in walked}
    assert set(PUBLIC[service]) <= endpoints, "the public list names routes that are gone"
    protected = [route for route in walked if route[0] not in PUBLIC[service]]
    assert protected or service == "notifier" and {"metrics"} <= endpoints

    for endpoint, method, path in protected:
        for who, headers in visitors(app).items():
            client = app.test_client()
            headers = dict(headers)
            if cookie := headers.pop("Cookie", None):
                # The test client sends its own cookie jar and drops a Cookie header.
                name, _, value = cookie.partition("=")
                client.set_cookie(name, value)
            data = None
            if method == "POST":
                # Past the CSRF check, so what refuses is the sign-in check, not CSRF: a
                # well-signed made-up session carries its own token; anyone else gets an
                # anonymous session's (a cookie signed with another key is one anyway).
                if who == "cookie with a made-up session":
                    token = FORGED_CSRF
                else:
                    token = anonymous_csrf_token(client)
                data = {"csrf_token": token, "note": "x"}
            answer = client.open(path, method=method, headers=headers, data=data)
            assert refused(answer), (service, endpoint, method, path, who, answer.status_code)


def test_the_routes_that_need_credentials_are_the_ones_expected(apps):
    # If this list changes, a route was added or removed: check it is protected.
    protected = {
        service: sorted({e for e, _, _ in routes(app)} - set(PUBLIC[service]))
        for service, app in apps.items()
    }
    assert protected == {
        "feedback": ["metrics"],
        "aggregator": [
            "api.list_pages",
            "api.page_detail",
            "dashboard.alert_handled",
            "dashboard.alerts",
            "dashboard.held",
            "dashboard.held_alert",
            "dashboard.held_dismiss",
            "dashboard.held_release",
            "dashboard.overview",
            "dashboard.page",
            "dashboard.pages",
            "export.daily_csv",
            "export.pages_csv",
            "metrics",
        ],
        "notifier": ["metrics"],
    }


def test_the_right_credentials_open_what_the_wrong_ones_do_not(apps):
    for app in apps.values():
        shown = app.test_client().get(
            "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert shown.status_code == 200
        assert "koe_http_requests_total" in shown.get_data(as_text=True)
    stats = apps["aggregator"].test_client()
    allowed = stats.get("/api/v1/pages", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert allowed.status_code == 200
    refused_api = stats.get("/api/v1/pages")
    assert refused_api.headers["WWW-Authenticate"] == 'Bearer realm="koe"'


def test_metrics_are_not_served_at_all_without_a_token(tmp_path):
    apps = make_apps(tmp_path, None)
    for service, app in apps.items():
        for headers in (
            {},
            {"Authorization": f"Bearer {WRONG_TOKEN}"},
            {"Authorization": "Bearer "},
        ):
            answer = app.test_client().get("/metrics", headers=headers)
            assert answer.status_code == 404, (service, headers)
        app.extensions["koe.engine"].dispose()


# -- CORS: the feedback endpoints a browser calls from a city's page ---------------------

BROWSER_CALLS = [
    ("POST", "/api/v1/feedback", {"json": answered()}),
    ("GET", "/api/v1/feedback/challenge", {"query_string": {"page_url": answered()["page_url"]}}),
    ("OPTIONS", "/api/v1/feedback", {"headers": {"Access-Control-Request-Method": "POST"}}),
    (
        "OPTIONS",
        "/api/v1/feedback/challenge",
        {"headers": {"Access-Control-Request-Method": "GET"}},
    ),
    ("POST", "/feedback", {"data": {"page_url": answered()["page_url"], "clarity": "yes"}}),
]
FOREIGN = [
    "https://evil.example",
    "null",  # a sandboxed iframe, a data: URL, a file
    "http://www.info.city.tsu.mie.jp",  # the city's site, but not over https
    "https://www.info.city.tsu.mie.jp.evil.example",
    "https://evil-www.info.city.tsu.mie.jp",
    "https://www.info.city.tsu.mie.jp:8443",
    "https://evil.example/https://www.info.city.tsu.mie.jp",
    "",
]


def _call(client, method: str, path: str, origin: str, request: dict):
    headers = {**request.get("headers", {}), "Origin": origin}
    rest = {k: v for k, v in request.items() if k != "headers"}
    return client.open(path, method=method, headers=headers, **rest)


@pytest.mark.parametrize(("method", "path", "request_kwargs"), BROWSER_CALLS)
def test_cors_refuses_every_foreign_origin(apps, method, path, request_kwargs):
    client = apps["feedback"].test_client()
    for origin in FOREIGN:
        answer = _call(client, method, path, origin, request_kwargs)
        assert answer.status_code == 403, (origin, answer.status_code)
        assert "origin" in answer.get_json()["errors"], origin
        assert "Access-Control-Allow-Origin" not in answer.headers, origin
        assert "Access-Control-Allow-Credentials" not in answer.headers, origin


@pytest.mark.parametrize(("method", "path", "request_kwargs"), BROWSER_CALLS)
def test_cors_allows_the_city_site_with_the_right_headers(apps, method, path, request_kwargs):
    answer = _call(apps["feedback"].test_client(), method, path, SITE, request_kwargs)

    assert answer.status_code in (200, 202, 204, 303), answer.get_data(as_text=True)
    assert answer.headers["Access-Control-Allow-Origin"] == SITE
    assert "Origin" in answer.headers["Vary"]  # no cache hands it to another site
    assert "Access-Control-Allow-Credentials" not in answer.headers  # no cookies, ever
    if method == "OPTIONS":
        assert set(answer.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "POST"}
        assert answer.headers["Access-Control-Allow-Headers"] == "Content-Type"
