"""The feedback API's OpenAPI description (feedback/openapi.yaml) against the app itself:
every route the app serves is described, and schemathesis, driving the app in-process on a
real database (SQLite and PostgreSQL), finds no 5xx and no answer the description does not
allow (status code, body schema, content type, headers)."""

from __future__ import annotations

import re

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from feedback.app import create_app
from feedback.config import load_settings
from feedback.openapi import load_spec

OPENAPI_PATH = "/api/v1/openapi.json"
# Examples per operation and phase: enough to find what the hand-written cases in
# test_api.py and test_hostile_input.py miss, few enough for `make test`.
MAX_EXAMPLES = 40
METHODS = {"get", "post", "put", "patch", "delete", "options"}
METRICS_TOKEN = "openapi-test-metrics-token"  # noqa: S105 (a test token)


def described(spec: dict) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }


def served(app) -> set[tuple[str, str]]:
    """(path in OpenAPI's form, method) of every route; HEAD and the OPTIONS Flask adds to
    every route are left out, an OPTIONS route of our own (a CORS preflight) is not."""
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD"}:
            if method == "OPTIONS" and rule.provide_automatic_options:
                continue
            routes.add((path, method))
    return routes


def test_every_route_the_app_serves_is_described_and_nothing_more(app):
    spec = load_spec()

    assert served(app) - described(spec) == set(), "describe these in feedback/openapi.yaml"
    assert described(spec) - served(app) == set(), "openapi.yaml describes routes that are gone"


def test_the_description_is_served_public_and_cacheable_with_the_deployments_sites(client):
    answer = client.get(OPENAPI_PATH)

    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    assert answer.headers["Cache-Control"] == "public, max-age=3600"
    spec = answer.get_json()
    assert spec["openapi"].startswith("3.1")
    assert described(spec) == described(load_spec())
    schemas = spec["components"]["schemas"]
    assert "somu-dx" in schemas["Division"]["enum"]
    page_url = re.compile(schemas["PageUrl"]["pattern"])
    assert page_url.match("https://www.info.city.tsu.mie.jp/shisei/dx/1234.html")
    assert page_url.match("http://localhost:8000/demo/tsu-dx")
    assert not page_url.match("https://evil.example/x.html")
    assert not page_url.match("https://www.info.city.tsu.mie.jp.evil.example/x.html")
    # A cache asks again cheaply.
    again = client.get(OPENAPI_PATH, headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304


# -- schemathesis ------------------------------------------------------------------

CONFIG = {
    # Every built-in check: no 5xx; status code, content type, headers and body as the
    # description says; invalid data refused (4xx), valid data not refused for its shape.
    "checks": {
        "positive_data_acceptance": {
            # Redirects are answers too (the form's 303, /demo/tsu-dx/ja's 308). Valid by
            # the description and still refused, rightly: 403 for an `altcha` that is
            # well-formed but no solution of a challenge koe issued, 429 once a client
            # answered one page too often. The description cannot express a proof of
            # work or a rate.
            "expected-statuses": ["2XX", "3XX", "403", "422", "429"],
        },
        # Off: in-process (WSGI) it re-sends with socket options werkzeug's test client
        # does not take (schemathesis 4.32.5: "EnvironBuilder got an unexpected keyword
        # argument 'max_redirects'"). tests/test_auth.py sends /metrics without and with
        # a wrong token instead.
        "ignored_auth": {"enabled": False},
        "negative_data_rejection": {
            # The plain form answers a person with a redirect either way: 303 to the
            # page's "could not be sent" message (check_the_form_sends_refusals_to_error).
            "expected-statuses": ["4XX", "303"],
        },
    },
    # The ops' token for /metrics, which the app here runs with (metrics_token).
    "auth": {"openapi": {"metricsToken": {"bearer": METRICS_TOKEN}}},
    "generation": {"max-examples": MAX_EXAMPLES},
    # Every phase but the stateful one: the API has no links between operations.
    "phases": {"stateful": {"enabled": False}},
    "seed": 20261127,  # the same cases each run; change it to explore further
    # No cache of past cases in the work tree (.schemathesis/): every run starts clean.
    "cache": {"enabled": False},
}


def schemathesis_failures(app) -> list[str]:
    """Run schemathesis's engine (every phase, every check) against the app in-process;
    what failed, as schemathesis reports it. (Its pytest plugin does not run on pytest 9.2:
    it sets a node attribute pytest no longer has, so the engine is driven directly.)"""
    from schemathesis.engine import events, from_schema

    api = schemathesis.openapi.from_wsgi(
        OPENAPI_PATH, app, config=SchemathesisConfig.from_dict(CONFIG)
    )
    found: list[str] = []
    scenarios = 0
    for event in from_schema(api).execute():
        if isinstance(event, events.ScenarioFinished):
            scenarios += 1
            for checks in event.recorder.checks.values():
                found += [
                    f"{event.recorder.label}: {check.name}: {check.failure_info.failure.title}"
                    f"\n{check.failure_info.failure.message}\n{check.failure_info.code_sample}"
                    for check in checks
                    if check.failure_info is not None
                ]
        elif isinstance(event, events.NonFatalError | events.FatalError):
            found.append(f"{type(event).__name__}: {event}")
    assert scenarios >= len(described(load_spec())), "schemathesis ran too little"
    return found


@pytest.fixture
def metrics_app(env, engine):
    """The app as ops run it: /metrics behind KOE_METRICS_TOKEN."""
    app = create_app(load_settings({**env, "KOE_METRICS_TOKEN": METRICS_TOKEN}))
    yield app
    app.extensions["koe.engine"].dispose()


def test_the_api_answers_as_described(metrics_app):
    failures = schemathesis_failures(metrics_app)

    assert not failures, "\n\n".join(failures)
