"""Prometheus metrics: what koe_kit measures for every service, and how each process shows them.

- Web apps: `init_metrics(app, service, settings)` counts and times every request by
  route (the URL rule, e.g. /api/v1/pages/<page_id>, never the raw path, so the
  label values stay few) and status, and serves GET /metrics.
- Consumers and the relay have no web app: `serve()` starts prometheus_client's
  HTTP server on KOE_METRICS_PORT. A port per process rather than files served by
  a sibling web app, because in compose each runs in its own container (and is
  scaled to several), with no file system in common.
- gunicorn with several workers: each worker is a process with its own values.
  With PROMETHEUS_MULTIPROC_DIR set (one directory per app; koe_kit.gunicorn_conf
  empties it when gunicorn starts and tidies after a dead worker) prometheus_client
  writes every worker's values there and /metrics of any worker sums them.

Who may read /metrics: the feedback app is public, and its metrics tell load and
error rates to anyone, so /metrics answers only `Authorization: Bearer
$KOE_METRICS_TOKEN`, and 404 while no token is set. The consumers' metrics ports
are not published by compose: only the compose network (a Prometheus in it)
reaches them.

A service's own metrics live in its package's `metrics.py` (named
koe_<service>_<what>); being module-level objects of the default registry, they
show up here without further wiring.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from flask import Flask, Response, abort, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
    values,
)

from koe_kit.config import EnvReader

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MIN_TOKEN_LENGTH = 16

HTTP_REQUESTS = Counter(
    "koe_http_requests_total",
    "HTTP requests answered, by route (URL rule) and status",
    ["service", "method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "koe_http_request_duration_seconds",
    "Time to answer an HTTP request, by route",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

CONSUMER_LAG = Gauge(
    "koe_consumer_lag_messages",
    "Messages on a partition after the group's position (measured after each batch)",
    ["group", "topic", "partition"],
)
BATCH_MESSAGES = Histogram(
    "koe_consumer_batch_messages",
    "Valid messages handed to the handler per batch",
    ["group", "topic"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
BATCH_SECONDS = Histogram(
    "koe_consumer_batch_duration_seconds",
    "Time the handler took for a batch that it finished",
    ["group", "topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENTS_HANDLED = Counter(
    "koe_consumer_events_total",
    "Valid events handled and committed",
    ["group", "topic"],
)
BATCH_RETRIES = Counter(
    "koe_consumer_batch_retries_total",
    "Batches retried after a transient failure (database down, SMTP 4xx)",
    ["group", "topic"],
)
DEAD_LETTERED = Counter(
    "koe_events_dead_lettered_total",
    "Messages sent to the dead-letter topic, by the topic they came from",
    ["group", "topic"],
)

OUTBOX_BACKLOG = Gauge(
    "koe_outbox_backlog_rows",
    "Outbox rows not yet published",
    ["service"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "koe_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row (0 when none)",
    ["service"],
)


@dataclass(frozen=True)
class MetricsSettings:
    token: str | None


def read_metrics_settings(reader: EnvReader) -> MetricsSettings:
    token = reader.str("KOE_METRICS_TOKEN", None, hint="bearer token for GET /metrics")
    if token and len(token) < MIN_TOKEN_LENGTH:
        reader.problems.append(
            f"KOE_METRICS_TOKEN is too short: use at least {MIN_TOKEN_LENGTH} characters"
        )
    return MetricsSettings(token=token or None)


def registry() -> CollectorRegistry:
    """What /metrics shows: every worker's values in multiprocess mode, else this process's.

    prometheus_client picks its mode once, from PROMETHEUS_MULTIPROC_DIR when it is
    first imported (gunicorn_conf sets it for gunicorn's workers): ask it which it
    picked rather than read the environment again.
    """
    if values.ValueClass is not values.MutexValue:
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return collected
    return REGISTRY


def init_metrics(app: Flask, service: str, settings: MetricsSettings) -> None:
    """Time every request and serve /metrics to the holder of the settings' token."""
    token = settings.token

    @app.before_request
    def start_timer() -> None:
        g.koe_started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        started = g.pop("koe_started", None)
        # Unmatched paths (404s, scanners) share one label value.
        route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
        HTTP_REQUESTS.labels(service, request.method, route, str(response.status_code)).inc()
        if started is not None:
            HTTP_SECONDS.labels(service, request.method, route).observe(
                time.perf_counter() - started
            )
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        supplied = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token is None or not hmac.compare_digest(supplied.encode(), token.encode()):
            abort(404 if token is None else 401)
        return Response(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


def serve(port: int | None, host: str = "127.0.0.1") -> None:
    """For a process without a web app: /metrics on its own port, in a daemon thread."""
    if port is not None:
        start_http_server(port, addr=host, registry=registry())
