"""Shared HTTP behaviour: a database outage answers 503 with Retry-After (at once while the
process rests the database), then recovers; the client's address behind reverse proxies."""

from __future__ import annotations

import time

import pytest
from flask import Flask, jsonify, request
from sqlalchemy import text

from koe_kit.db import make_engine
from koe_kit.web import db_session, health_blueprint, init_db, init_json_errors, trust_proxies

REST_S = 1.0


def make_app(url: str) -> Flask:
    app = Flask(__name__)
    init_db(app, make_engine(url), rest_s=REST_S)
    init_json_errors(app)
    app.register_blueprint(health_blueprint())

    @app.post("/write")
    def write():
        session = db_session()
        with session.begin():
            session.execute(text("INSERT INTO t VALUES (1)"))
        return jsonify(ok=True), 201

    return app


def test_database_outage_is_a_503_with_retry_after_and_recovers(new_pg_database, pg_admin):
    url = new_pg_database()
    name = url.rsplit("/", 1)[1]
    with make_engine(url).begin() as connection:
        connection.execute(text("CREATE TABLE t (x int)"))
    client = make_app(url).test_client()
    assert client.post("/write").status_code == 201

    # Refuse new connections and cut the open ones: the database is "down".
    with pg_admin.connect() as admin:
        admin.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
        admin.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
    down = client.post("/write")
    assert down.status_code == 503
    assert down.headers["Retry-After"] == "5"
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200

    with pg_admin.connect() as admin:
        admin.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
    # Right after a failure the process does not try the database again (each try
    # waits out the connect timeout when it is unreachable): 503 at once, whatever
    # the database's state, until the rest is over.
    resting = client.post("/write")
    assert resting.status_code == 503
    assert resting.headers["Retry-After"] == "5"
    time.sleep(REST_S)
    assert client.post("/write").status_code == 201
    assert client.get("/readyz").status_code == 200
    with make_engine(url).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 2


@pytest.mark.parametrize(
    ("trusted_proxies", "client"),
    [(0, "192.0.2.9"), (1, "198.51.100.2"), (2, "198.51.100.1")],
)
def test_the_client_address_believes_only_our_own_proxies(trusted_proxies, client):
    app = Flask(__name__)
    trust_proxies(app, trusted_proxies)

    @app.get("/who")
    def who():
        return request.remote_addr or ""

    # The client wrote 203.0.113.66 itself; proxy A appended the client's address,
    # proxy B (the TCP peer, 192.0.2.9) appended A's.
    answer = app.test_client().get(
        "/who",
        headers={"X-Forwarded-For": "203.0.113.66, 198.51.100.1, 198.51.100.2"},
        environ_base={"REMOTE_ADDR": "192.0.2.9"},
    )
    assert answer.get_data(as_text=True) == client
