"""Spam and abuse through the whole pipeline on PostgreSQL: what the feedback API refuses
or folds never reaches the topic or the stats; a replacement counts once, as the second.

One koe stack for the module, with a small budget per page."""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from support import SITE, from_address
from widget_support import (
    answers_counted,
    module_koe,
    page_stats,
    published,
    stored_responses,
    wait_published,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def koe(tmp_path_factory, pg_admin):
    with module_koe(
        tmp_path_factory.mktemp("spam") / "var",
        pg_admin,
        KOE_BUDGET_ONE_PAGE="3",
    ) as running:
        yield running


def client(user_agent: str, address: str = "127.0.0.1") -> requests.Session:
    """A browser on `address`: koe's source is the address, never the user agent."""
    session = from_address(address)
    session.headers["User-Agent"] = user_agent
    return session


def body(page_url: str, answers: dict[str, str], **extra) -> dict:
    return {"page_url": page_url, "page_title": "テスト", "answers": answers, **extra}


def wait_for_n(koe, page_id: str, n: int) -> dict:
    return wait_until(
        lambda: (figures := page_stats(koe, page_id)) and figures["n"] == n and figures,
        what=f"n = {n} for {page_id}",
    )


def test_spam_is_refused_with_the_right_status_and_never_counted(koe):
    page_url = f"{SITE}/spam/1.html"
    page_id = page_id_for_url(canonical_url(page_url))
    api = koe.url("feedback", "/api/v1/feedback")
    bot = client("spam-bot/1.0")
    answers = {"usefulness": "no"}

    honeypot = bot.post(api, json=body(page_url, answers, homepage="buy.example"), timeout=10)
    assert (honeypot.status_code, list(honeypot.json()["errors"])) == (422, ["homepage"])
    form = bot.post(
        koe.url("feedback", "/feedback"),
        data={"page_url": page_url, "usefulness": "no", "homepage": "buy.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert (form.status_code, form.headers["Location"]) == (303, f"{page_url}?koe=error#koe-error")

    # A script that does not do the work.
    lazy = requests.post(api, json=body(page_url, answers), timeout=10)
    assert (lazy.status_code, list(lazy.json()["errors"])) == (403, ["altcha"])

    foreign = bot.post(
        api, json=body(page_url, answers), headers={"Origin": "https://evil.example"}, timeout=10
    )
    assert foreign.status_code == 403
    assert "https://evil.example" in foreign.json()["errors"]["origin"][0]
    assert "Access-Control-Allow-Origin" not in foreign.headers

    # One person then answers properly: only that is stored, published and counted.
    person = client("Mozilla/5.0 person")
    accepted = person.post(
        api,
        json=body(page_url, {"clarity": "yes"}),
        headers={"Origin": SITE},
        timeout=10,
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["Access-Control-Allow-Origin"] == SITE
    # A script that copies the person's proof into answers of its own.
    copied = json.loads(accepted.request.body) | {
        "answers": answers,
        "client_token": str(uuid.uuid4()),
    }
    reused = requests.post(api, json=copied, timeout=10)
    assert (reused.status_code, list(reused.json()["errors"])) == (403, ["altcha"])
    wait_published(koe, accepted.json()["id"])
    figures = wait_for_n(koe, page_id, 1)
    assert answers_counted(figures) == {"clarity": (1, 0, 0)}
    assert [row.id for row in stored_responses(koe, page_id)] == [accepted.json()["id"]]
    assert [event["id"] for event in published(koe, page_id)] == [accepted.json()["id"]]


def test_a_page_views_change_of_mind_replaces_its_answer_and_counts_once(koe):
    page_url = f"{SITE}/replace/1.html"
    page_id = page_id_for_url(canonical_url(page_url))
    api = koe.url("feedback", "/api/v1/feedback")
    citizen, view = client("Mozilla/5.0 citizen"), str(uuid.uuid4())

    first = citizen.post(
        api, json=body(page_url, {"findability": "no", "clarity": "no"}, client_token=view)
    )
    second = citizen.post(
        api,
        json=body(page_url, {"findability": "yes", "usefulness": "neutral"}, client_token=view),
    )
    assert (first.status_code, second.status_code) == (202, 202)
    first_id, second_id = first.json()["id"], second.json()["id"]

    event = wait_published(koe, second_id)
    assert event["data"]["replaces"] == first_id
    rows = stored_responses(koe, page_id)
    assert [(row.id, row.replaces) for row in rows] == [(first_id, None), (second_id, first_id)]
    figures = wait_for_n(koe, page_id, 1)
    wait_until(
        lambda: (
            answers_counted(page_stats(koe, page_id))
            == {"findability": (1, 0, 0), "usefulness": (0, 1, 0)}
        ),
        what="the second response's answers in place of the first's",
    )

    # Someone else behind the same address, with the same browser, is another page
    # view: a response of their own.
    other = citizen.post(
        api, json=body(page_url, {"clarity": "yes"}, client_token=str(uuid.uuid4()))
    )
    assert other.status_code == 202
    figures = wait_for_n(koe, page_id, 2)
    assert answers_counted(figures) == {
        "findability": (1, 0, 0),
        "clarity": (1, 0, 0),
        "usefulness": (0, 1, 0),
    }


def test_the_page_budget_refuses_with_retry_after_and_what_passed_counts(koe):
    page_url = f"{SITE}/limit/1.html"
    page_id = page_id_for_url(canonical_url(page_url))
    api = koe.url("feedback", "/api/v1/feedback")

    # One address, a new user agent each time: still one source, one budget.
    statuses = [
        client(f"Mozilla/5.0 eager/{i}")
        .post(api, json=body(page_url, {"clarity": "yes"}), timeout=10)
        .status_code
        for i in range(3)
    ]
    limited = client("Mozilla/5.0 eager/4").post(
        api, json=body(page_url, {"clarity": "no"}), timeout=10
    )
    assert statuses == [202, 202, 202]
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 3600
    assert limited.json()["errors"]["budget"][0].startswith("one_page: 3 answers an hour")

    # Another address has a budget of its own.
    sentinel = client("Mozilla/5.0 sentinel", "127.0.0.2").post(
        api, json=body(page_url, {"clarity": "no"}), timeout=10
    )
    assert sentinel.status_code == 202
    wait_published(koe, sentinel.json()["id"])
    figures = wait_for_n(koe, page_id, 4)
    assert answers_counted(figures) == {"clarity": (3, 0, 1)}
    # The refused one is nowhere.
    assert len(stored_responses(koe, page_id)) == 4
    assert len(published(koe, page_id)) == 4
