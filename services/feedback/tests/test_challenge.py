"""The proof of work at the JSON API's door (feedback.challenges), on a real database
(SQLite and PostgreSQL): a solution is required, bound to its page, expires, and buys
one response, except that a retry of the same submission gets the earlier id."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import altcha
import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from feedback import challenges
from feedback.app import create_app
from feedback.config import load_settings
from feedback.models import UsedChallenge
from koe_kit.db import session_factory
from support import CHALLENGE_KEY, SITE, answered, solve

PAGE = f"{SITE}/shisei/dx/1234.html"
OTHER_PAGE = f"{SITE}/shisei/dx/5678.html"


def rejections(reason: str) -> float:
    return REGISTRY.get_sample_value("koe_feedback_rejections_total", {"reason": reason}) or 0.0


@pytest.fixture
def door(app) -> FlaskClient:
    """A test client that sends only the `altcha` the test gives it (never solves)."""
    return FlaskClient(app, app.response_class)


def challenge_for(client: FlaskClient, page_url: str = PAGE) -> dict:
    issued = client.get("/api/v1/feedback/challenge", query_string={"page_url": page_url})
    assert issued.status_code == 200, issued.get_json()
    return issued.get_json()


def solution_for(client: FlaskClient, page_url: str = PAGE) -> str:
    return solve(challenge_for(client, page_url))


def refused_for_altcha(answer, reason: str) -> None:
    assert answer.status_code == 403, answer.get_json()
    errors = answer.get_json()["errors"]
    assert list(errors) == ["altcha"]
    assert reason in errors["altcha"][0]


def encoded(solution: dict | list | str) -> str:
    return base64.b64encode(json.dumps(solution).encode()).decode()


def test_a_challenge_is_bound_to_the_canonical_page_and_never_cached(door):
    issued = door.get(
        "/api/v1/feedback/challenge",
        query_string={"page_url": "https://WWW.info.city.tsu.mie.jp/shisei/dx/1234.html?x=1#a"},
        headers={"Origin": SITE},
    )
    assert issued.status_code == 200
    assert issued.headers["Cache-Control"] == "no-store"
    assert issued.headers["Access-Control-Allow-Origin"] == SITE
    challenge = issued.get_json()
    assert challenge["algorithm"] == "SHA-256"
    assert challenge["maxnumber"] == 1000  # tests/support: small, so tests stay fast
    salt = parse_qs(challenge["salt"].partition("?")[2])
    # Any spelling of the page's URL binds the same page: its canonical form.
    assert salt["page"] == [challenges.page_digest(PAGE)]
    expires = int(salt["expires"][0])
    assert 1190 <= expires - time.time() <= 1200
    assert challenge_for(door) != challenge  # a fresh one every time

    # A solution for that spelling is good for the plain one.
    answer = door.post("/api/v1/feedback", json=answered(altcha=solve(challenge)))
    assert answer.status_code == 202, answer.get_json()


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({}, "is required"),
        ({"page_url": "https://evil.example/page.html"}, "not a page of a site koe serves"),
        ({"page_url": "javascript:alert(1)"}, "Not a valid URL"),
        ({"page_url": f"{SITE}/{'a' * 2100}"}, "Longer than maximum length"),
    ],
)
def test_a_challenge_for_no_page_of_ours_is_refused_naming_page_url(door, query, reason):
    issued = door.get("/api/v1/feedback/challenge", query_string=query)
    assert issued.status_code == 422
    assert reason in issued.get_json()["errors"]["page_url"][0]


def test_without_a_solution_the_json_api_refuses_and_stores_nothing(door, counts):
    before = rejections("challenge")
    refused_for_altcha(door.post("/api/v1/feedback", json=answered()), "is required")
    refused_for_altcha(door.post("/api/v1/feedback", json=answered(altcha="")), "is required")
    # The plain form cannot do the work and needs none.
    form = {"page_url": PAGE, "findability": "yes"}
    assert door.post("/feedback", data=form).headers["Location"].endswith("#koe-thanks")
    assert counts() == (1, 1)
    assert rejections("challenge") == before + 2


def test_an_invalid_body_is_told_about_its_fields_before_the_proof(door, counts):
    answer = door.post("/api/v1/feedback", json=answered(answers={"clarity": "maybe"}))
    assert answer.status_code == 422
    assert list(answer.get_json()["errors"]) == ["answers.clarity"]
    assert counts() == (0, 0)


def test_garbage_and_forged_solutions_are_refused_never_a_server_error(door, counts):
    challenge = challenge_for(door)
    good = json.loads(base64.b64decode(solve(challenge)))
    wrong_number = (good["number"] + 1) % (challenge["maxnumber"] + 1)
    forged_key = altcha.create_challenge_v1(
        algorithm="SHA-256",
        max_number=10,
        salt_length=12,
        hmac_key="not koe's key, " + "n" * 32,
        salt="",
        number=None,
        expires=datetime.now(UTC) + timedelta(minutes=5),
        params={"page": challenges.page_digest(PAGE)},
    )
    cases = {
        "not base64": "%%%not base64%%%",
        "not JSON": base64.b64encode(b"\xff\xfe not json").decode(),
        "a list": encoded(["algorithm", "challenge", "number", "salt", "signature"]),
        "a number as text": encoded(good | {"number": str(good["number"])}),
        "a boolean number": encoded(good | {"number": True}),
        "SHA-1": encoded(good | {"algorithm": "SHA-1"}),
        "a wrong number": encoded(good | {"number": wrong_number}),
        "another signature": encoded(good | {"signature": "0" * 64}),
        "a salt as an object": encoded(good | {"salt": {"a": 1}}),
        "a longer salt": encoded(good | {"salt": good["salt"] + "page=x&"}),
        "not text": 12345,
        "too long": "A" * 5000,
        "signed with another key": solve(forged_key.to_dict() | {"maxnumber": 10}),
    }
    for case, proof in cases.items():
        answer = door.post("/api/v1/feedback", json=answered(altcha=proof))
        assert answer.status_code == 403, (case, answer.get_json())
        assert list(answer.get_json()["errors"]) == ["altcha"], case
    assert counts() == (0, 0)


def test_a_solution_without_expiry_or_page_is_not_koes(door, counts):
    # Signed with koe's key but without the words koe always puts in the salt.
    for params, expires in (({}, datetime.now(UTC) + timedelta(minutes=5)), ({"page": "x"}, None)):
        made = altcha.create_challenge_v1(
            algorithm="SHA-256",
            max_number=10,
            salt_length=12,
            hmac_key=CHALLENGE_KEY,
            salt="",
            number=None,
            expires=expires,
            params=params,
        )
        answer = door.post(
            "/api/v1/feedback", json=answered(altcha=solve(made.to_dict() | {"maxnumber": 10}))
        )
        refused_for_altcha(answer, "not a solution of a challenge koe issued")
    assert counts() == (0, 0)


def test_a_solution_for_another_page_is_refused(door, counts):
    proof = solution_for(door, OTHER_PAGE)
    refused_for_altcha(
        door.post("/api/v1/feedback", json=answered(altcha=proof)), "issued for another page"
    )
    # It is not spent by the refusal: its own page takes it.
    answer = door.post("/api/v1/feedback", json=answered(page_url=OTHER_PAGE, altcha=proof))
    assert answer.status_code == 202
    assert counts() == (1, 1)


def test_an_expired_solution_is_refused(env, engine, counts):
    app = create_app(load_settings(env | {"KOE_CHALLENGE_TTL_S": "1"}))
    try:
        door = FlaskClient(app, app.response_class)
        proof = solution_for(door)
        time.sleep(1.1)  # the salt's expiry is in whole seconds, at most 1 s away
        refused_for_altcha(
            door.post("/api/v1/feedback", json=answered(altcha=proof)), "has expired"
        )
        assert counts() == (0, 0)
    finally:
        app.extensions["koe.engine"].dispose()


def test_a_solution_buys_one_response(door, counts):
    proof = solution_for(door)
    first = door.post(
        "/api/v1/feedback", json=answered(altcha=proof, client_token=str(uuid.uuid4()))
    )
    assert first.status_code == 202
    before = rejections("challenge")
    # Another token, another User-Agent: still the same proof, spent.
    again = door.post(
        "/api/v1/feedback",
        json=answered(altcha=proof, client_token=str(uuid.uuid4())),
        headers={"User-Agent": "another browser"},
    )
    refused_for_altcha(again, "has been used")
    refused_for_altcha(door.post("/api/v1/feedback", json=answered(altcha=proof)), "has been used")
    assert rejections("challenge") == before + 2
    assert counts() == (1, 1)


def test_a_retry_of_the_same_submission_gets_the_earlier_id(door, counts):
    """A 202 lost on the way (a dropped connection) makes widget.js send the same body
    again, with the same proof: the citizen must not be refused for it."""
    body = answered(altcha=solution_for(door), client_token=str(uuid.uuid4()))
    first = door.post("/api/v1/feedback", json=body)
    retry = door.post("/api/v1/feedback", json=body)
    assert (first.status_code, retry.status_code) == (202, 202)
    assert retry.get_json()["id"] == first.get_json()["id"]
    # The same token with other answers is not a retry: a change of mind pays again.
    changed = body | {"answers": {"clarity": "no"}}
    refused_for_altcha(door.post("/api/v1/feedback", json=changed), "has been used")
    assert counts() == (1, 1)


def test_concurrent_spends_of_one_solution_accept_one(app, counts):
    proof = solution_for(FlaskClient(app, app.response_class))
    statuses: list[int] = []

    def send() -> None:
        client = FlaskClient(app, app.response_class)
        body = answered(altcha=proof, client_token=str(uuid.uuid4()))
        statuses.append(client.post("/api/v1/feedback", json=body).status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [202] + [403] * 5
    assert counts() == (1, 1)


def test_spent_solutions_are_forgotten_once_expired(door, engine):
    for _ in range(3):
        assert (
            door.post("/api/v1/feedback", json=answered(altcha=solution_for(door))).status_code
            == 202
        )
    session = session_factory(engine)()
    with session.begin():
        assert challenges.prune(session, datetime.now(UTC)) == 0
    with session.begin():
        assert challenges.prune(session, datetime.now(UTC) + timedelta(seconds=1201)) == 3
    with session.begin():
        assert session.scalar(select(func.count()).select_from(UsedChallenge)) == 0
    session.close()
