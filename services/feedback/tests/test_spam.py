"""Spam and abuse on a real database (SQLite and PostgreSQL): honeypot, budgets, page
views' changes of mind, CORS, trusted proxies; every refusal counted."""

from __future__ import annotations

import json
import uuid

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, text

from feedback.app import create_app
from feedback.config import load_settings
from feedback.models import OutboxEntry, Response, SourceKey
from feedback.sources import source_of
from support import answered, solving

SITE = "https://www.info.city.tsu.mie.jp"
PAGE = f"{SITE}/shisei/dx/1234.html"
IP = "203.0.113.7"
BROWSER = "Mozilla/5.0 (koe test) Chrome/130"


def rejections(reason: str) -> float:
    return REGISTRY.get_sample_value("koe_feedback_rejections_total", {"reason": reason}) or 0.0


@pytest.fixture
def make_client(env, engine):
    """A test client of an app with extra settings, speaking as one browser by default."""
    apps = []

    def make(**settings: str):
        app = solving(create_app(load_settings({**env, **settings})))
        apps.append(app)
        client = app.test_client()
        client.environ_base.update({"REMOTE_ADDR": IP, "HTTP_USER_AGENT": BROWSER})
        return client

    yield make
    for app in apps:
        app.extensions["koe.engine"].dispose()


@pytest.fixture
def browser(make_client):
    return make_client()


def stored(engine) -> list[Response]:
    with engine.connect() as connection:
        return list(connection.execute(select(Response).order_by(Response.received_at)))


def published(engine) -> list[dict]:
    with engine.connect() as connection:
        payloads = connection.execute(select(OutboxEntry.payload).order_by(OutboxEntry.id))
        return [json.loads(p)["data"] for p in payloads.scalars()]


def test_the_honeypot_refuses_both_paths_and_stores_nothing(browser, engine, counts):
    before = rejections("honeypot")

    answer = browser.post("/api/v1/feedback", json=answered(homepage="http://spam.example"))
    assert answer.status_code == 422
    assert list(answer.get_json()["errors"]) == ["homepage"]

    form = {"page_url": PAGE, "findability": "yes", "homepage": "http://spam.example"}
    answer = browser.post("/feedback", data=form)
    # A person never sees the honeypot; the form path still answers politely.
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"{PAGE}?koe=error#koe-error"

    assert counts() == (0, 0)
    assert rejections("honeypot") == before + 2


def test_a_page_views_change_of_mind_replaces_its_answer(browser, make_client, engine):
    replacements = REGISTRY.get_sample_value("koe_feedback_replacements_total") or 0.0
    token = str(uuid.uuid4())
    first = browser.post(
        "/api/v1/feedback", json=answered(answers={"clarity": "no"}, client_token=token)
    )
    second = browser.post(
        "/api/v1/feedback", json=answered(answers={"clarity": "yes"}, client_token=token)
    )
    # Another page view (token) on the same address and browser is another person.
    other = browser.post("/api/v1/feedback", json=answered(client_token=str(uuid.uuid4())))
    assert {a.status_code for a in (first, second, other)} == {202}
    # The same page view cannot answer another page.
    elsewhere = browser.post(
        "/api/v1/feedback", json=answered(page_url=f"{SITE}/other.html", client_token=token)
    )
    assert elsewhere.status_code == 409
    assert list(elsewhere.get_json()["errors"]) == ["client_token"]

    replaced = {row.id: row.replaces for row in stored(engine)}
    assert replaced == {
        first.get_json()["id"]: None,
        second.get_json()["id"]: first.get_json()["id"],
        other.get_json()["id"]: None,
    }
    events = published(engine)
    assert [e.get("replaces") for e in events] == [None, first.get_json()["id"], None]
    assert REGISTRY.get_sample_value("koe_feedback_replacements_total") == replacements + 1

    # With the window set to 0 a page view answers once: a change is refused.
    no_window = make_client(KOE_REPLACE_WINDOW_MINUTES="0")
    token = str(uuid.uuid4())
    third = answered(page_url=f"{SITE}/third.html", client_token=token)
    assert no_window.post("/api/v1/feedback", json=third).status_code == 202
    changed = no_window.post("/api/v1/feedback", json={**third, "answers": {"clarity": "yes"}})
    assert changed.status_code == 409


def test_a_budget_answers_429_with_retry_after_naming_it(make_client, counts):
    client = make_client(KOE_BUDGET_ONE_PAGE="2", KOE_FORM_BUDGET_ONE_PAGE="1")
    before = rejections("budget")

    assert client.post("/api/v1/feedback", json=answered()).status_code == 202
    assert client.post("/api/v1/feedback", json=answered()).status_code == 202
    # Rotating what the client controls changes nothing: the address is the source.
    limited = client.post(
        "/api/v1/feedback",
        json=answered(client_token=str(uuid.uuid4())),
        headers={"User-Agent": "Mozilla/5.0 Firefox/131", "X-Forwarded-For": "198.51.100.9"},
    )
    assert limited.status_code == 429
    assert 3590 <= int(limited.headers["Retry-After"]) <= 3600
    assert limited.get_json() == {
        "errors": {
            "budget": ["one_page: 2 answers an hour to one page from one network; try again later"]
        }
    }
    # The plain form spends its own budget, and goes back to the page when it is spent.
    form = {"page_url": PAGE, "clarity": "yes"}
    assert client.post("/feedback", data=form).headers["Location"].endswith("#koe-thanks")
    assert client.post("/feedback", data=form).headers["Location"] == f"{PAGE}?koe=error#koe-error"
    # Another page of the same source has a budget of its own.
    other_page = answered(page_url=f"{SITE}/x.html")
    assert client.post("/api/v1/feedback", json=other_page).status_code == 202

    assert counts() == (4, 4)
    assert rejections("budget") == before + 2


def test_forwarded_for_counts_only_behind_a_trusted_proxy(make_client, engine):
    direct = make_client()  # KOE_TRUSTED_PROXIES=0: the header is anyone's to write
    for address in ("198.51.100.1", "198.51.100.2"):
        direct.post("/api/v1/feedback", json=answered(), headers={"X-Forwarded-For": address})
    behind = make_client(KOE_TRUSTED_PROXIES="1")
    page = f"{SITE}/proxied.html"
    for address in ("198.51.100.1", "198.51.100.2"):
        behind.post(
            "/api/v1/feedback", json=answered(page_url=page), headers={"X-Forwarded-For": address}
        )

    sources = [e["source"] for e in published(engine)]
    assert sources[0] == sources[1]  # one source: the forged header changed nothing
    assert sources[2] != sources[3]  # two sources, told apart by the proxy's header
    assert len(set(sources)) == 3


def test_no_address_is_stored_only_a_keyed_hash(browser, engine):
    assert browser.post("/api/v1/feedback", json=answered()).status_code == 202

    with engine.connect() as connection:
        everything = []
        for table in ("responses", "outbox", "answer_tokens", "budgets", "known_pages"):
            everything += [str(row) for row in connection.execute(text(f"SELECT * FROM {table}"))]  # noqa: S608
        source = connection.execute(select(Response.source)).scalar_one()
        keys = connection.execute(select(SourceKey.key)).scalars().all()
    assert not any(IP in row or BROWSER in row for row in everything)
    assert source in {source_of(bytes.fromhex(key), IP) for key in keys}
    assert len(source) == 32


def test_cors_is_limited_to_the_sites_koe_serves(browser, counts):
    allowed = {"Origin": SITE}
    foreign = {"Origin": "https://evil.example"}
    before = rejections("foreign_origin")

    preflight = browser.options(
        "/api/v1/feedback",
        headers={**allowed, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == SITE
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert "Origin" in preflight.headers["Vary"]  # a cache must not hand it to another site
    assert "Access-Control-Allow-Credentials" not in preflight.headers  # no cookies, ever

    refused = browser.options(
        "/api/v1/feedback", headers={**foreign, "Access-Control-Request-Method": "POST"}
    )
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers

    posted = browser.post("/api/v1/feedback", json=answered(), headers=foreign)
    assert posted.status_code == 403
    assert posted.get_json() == {
        "errors": {"origin": ["https://evil.example is not a site koe serves"]}
    }
    assert "Access-Control-Allow-Origin" not in posted.headers
    assert (
        browser.post(
            "/feedback", data={"page_url": PAGE, "clarity": "yes"}, headers=foreign
        ).status_code
        == 403
    )
    assert rejections("foreign_origin") == before + 3
    assert counts() == (0, 0)

    accepted = browser.post("/api/v1/feedback", json=answered(), headers=allowed)
    assert accepted.status_code == 202
    assert accepted.headers["Access-Control-Allow-Origin"] == SITE
    assert "Origin" in accepted.headers["Vary"]
    # Errors carry the header too, so the widget can read them.
    bad = browser.post("/api/v1/feedback", json=answered(answers={}), headers=allowed)
    assert (bad.status_code, bad.headers["Access-Control-Allow-Origin"]) == (422, SITE)
    # `Origin: null` is what a sandboxed iframe or a data: URL on any site sends: a
    # third-party page could make its visitors answer through the plain form.
    null = browser.post(
        "/feedback", data={"page_url": PAGE, "clarity": "yes"}, headers={"Origin": "null"}
    )
    assert null.status_code == 403
    assert "no-referrer" in null.get_json()["errors"]["origin"][0]
    assert rejections("foreign_origin") == before + 4
    assert counts() == (1, 1)


def test_a_retry_of_the_same_answers_neither_replaces_nor_spends_the_budget(make_client, engine):
    client = make_client(KOE_BUDGET_ONE_PAGE="2")
    replacements = REGISTRY.get_sample_value("koe_feedback_replacements_total") or 0.0
    first, second, third = (str(uuid.uuid4()) for _ in range(3))

    # The widget resends with the same token when an answer got lost on the way back.
    sent = [client.post("/api/v1/feedback", json=answered(client_token=first)) for _ in range(3)]
    assert {a.status_code for a in sent} == {202}
    assert len({a.get_json()["id"] for a in sent}) == 1
    assert client.post("/api/v1/feedback", json=answered(client_token=second)).status_code == 202
    limited = client.post("/api/v1/feedback", json=answered(client_token=third))
    assert limited.status_code == 429

    assert [e.get("replaces") for e in published(engine)] == [None, None]
    assert REGISTRY.get_sample_value("koe_feedback_replacements_total") == replacements


def test_oversized_and_undecodable_bodies_are_counted_as_invalid(browser, counts):
    before = rejections("invalid")

    too_large = browser.post("/api/v1/feedback", json=answered(page_title="x" * 20_000))
    half_emoji = browser.post(
        "/api/v1/feedback",
        data=json.dumps(answered(page_title="\ud83d")),
        content_type="application/json",
    )

    assert (too_large.status_code, half_emoji.status_code) == (413, 400)
    assert rejections("invalid") == before + 2
    assert counts() == (0, 0)
