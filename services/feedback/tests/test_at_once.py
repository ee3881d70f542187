"""services.record_at_once: a page view's first answer to a page the process knows is
spent and recorded in one statement on PostgreSQL; everything else (a retry, a change of
mind, a proof sent twice, over budget) falls back to the steps and gets the same answer
as before. On both databases: SQLite always takes the steps."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, select, text

from feedback import budgets, challenges, services
from feedback.models import AnswerToken, OutboxEntry, Response, UsedChallenge
from feedback.schemas import Submission
from koe_kit import events
from koe_kit.db import session_factory
from support import answered, signed_proof, solve

PAGE = "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html"
SOURCE = "6" * 32


def rules() -> services.Rules:
    limits = budgets.Budgets(
        one_page=3, all_pages=100, form_one_page=1, form_all_pages=100, new_pages=10
    )
    return services.Rules(budgets=limits, replace_window_s=1800)


def submission(token: str | None, clarity: str = "yes") -> Submission:
    return Submission(
        page_id="tsu-1234",
        page_url=PAGE,
        page_title="津市の自治体DX取組状況",
        division="somu-dx",
        locale="ja",
        answers={"clarity": clarity},
        client_token=token,
    )


def proof(number: int = 7) -> challenges.Solution:
    return challenges.Solution(
        signature=f"{number:064x}", expires_at=datetime.now(UTC) + timedelta(minutes=5)
    )


def statements(engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_a_first_answer_is_one_statement_storing_what_the_steps_store(engine, database_url):
    known = rules()
    sessions = session_factory(engine)
    at = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    with sessions() as session, session.begin():
        services.record(session, submission(str(uuid.uuid4())), at, SOURCE, known)
    known.known_urls.add("tsu-1234", PAGE)
    token, spent = str(uuid.uuid4()), proof()
    seen = statements(engine)
    with sessions() as session:
        if database_url.startswith("sqlite"):
            with pytest.raises(services.NotAtOnce), session.begin():
                services.record_at_once(session, submission(token), at, SOURCE, known, spent)
            assert seen == []  # told before anything ran
            return
        with session.begin():
            recorded = services.record_at_once(session, submission(token), at, SOURCE, known, spent)
    assert len(seen) == 1 and seen[0].lstrip().startswith("WITH")
    with engine.connect() as c:
        row = c.execute(select(Response).where(Response.id == recorded.response_id)).one()
        payload = c.execute(
            select(OutboxEntry.payload).where(OutboxEntry.event_id == recorded.response_id)
        ).scalar_one()
        owner = c.execute(
            select(AnswerToken.response_id).where(AnswerToken.client_token == token)
        ).scalar_one()
        used = c.execute(select(UsedChallenge.signature)).scalars().all()
        counts = dict(c.execute(text("SELECT scope, count FROM budgets")).all())
    assert (row.clarity, row.client_token, row.source, row.replaces) == ("yes", token, SOURCE, None)
    expected = services.build_event(submission(token), recorded.response_id, at, source=SOURCE)
    assert payload == events.encode(expected).decode("utf-8")
    assert owner == recorded.response_id
    assert used == [spent.signature]
    assert counts == {"page:tsu-1234": 2, "pages": 2, "new-pages": 1}


def test_a_known_token_or_proof_or_an_unknown_page_leaves_nothing_behind(engine, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite never records at once (the test above)")
    known = rules()
    sessions = session_factory(engine)
    at = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    token = str(uuid.uuid4())
    with sessions() as session, session.begin():
        services.record(session, submission(token), at, SOURCE, known)
        challenges.spend(session, proof(1))
    with engine.connect() as c:
        before = [c.execute(text(f"SELECT * FROM {t} ORDER BY 1")).all() for t in TABLES]  # noqa: S608
    cases = {
        "page unknown here": (submission(str(uuid.uuid4())), proof(2)),
        "token seen": (submission(token, clarity="no"), proof(3)),
        "proof spent": (submission(str(uuid.uuid4())), proof(1)),
    }
    for case, (sent, spent) in cases.items():
        if case != "page unknown here":
            known.known_urls.add("tsu-1234", PAGE)
        with sessions() as session, pytest.raises(services.NotAtOnce), session.begin():
            services.record_at_once(session, sent, at, SOURCE, known, spent)
        with engine.connect() as c:
            after = [c.execute(text(f"SELECT * FROM {t} ORDER BY 1")).all() for t in TABLES]  # noqa: S608
        assert after == before, case
    # Over the page's budget (3 an hour): refused as the steps refuse it.
    for n in (4, 5):
        with sessions() as session, session.begin():
            services.record_at_once(session, submission(None), at, SOURCE, known, proof(n))
    with sessions() as session, pytest.raises(budgets.OverBudget) as over, session.begin():
        services.record_at_once(session, submission(None), at, SOURCE, known, proof(6))
    assert over.value.scope.name == "one_page"


TABLES = ("responses", "outbox", "answer_tokens", "budgets", "known_pages", "used_challenges")


@pytest.fixture
def warm(app) -> FlaskClient:
    """A client of an app that has answered the page twice: its URL is known to the
    process, so a page view's first answer takes record_at_once's path."""
    client = FlaskClient(app, app.response_class)
    for _ in range(2):
        body = answered(altcha=signed_proof(PAGE, key=app_key(app)), client_token=str(uuid.uuid4()))
        assert client.post("/api/v1/feedback", json=body).status_code == 202
    return client


def app_key(app) -> str:
    return app.extensions["koe.feedback.settings"].challenges.key.decode()


def test_through_the_api_retries_changes_of_mind_and_spent_proofs_answer_as_before(
    app, warm, counts
):
    def fresh() -> str:
        issued = warm.get("/api/v1/feedback/challenge", query_string={"page_url": PAGE})
        return solve(issued.get_json())

    body = answered(altcha=fresh(), client_token=str(uuid.uuid4()))
    first = warm.post("/api/v1/feedback", json=body)
    retry = warm.post("/api/v1/feedback", json=body)
    assert (first.status_code, retry.status_code) == (202, 202)
    assert retry.get_json()["id"] == first.get_json()["id"]
    # The same proof with another token: spent.
    other = warm.post("/api/v1/feedback", json=body | {"client_token": str(uuid.uuid4())})
    assert other.status_code == 403 and list(other.get_json()["errors"]) == ["altcha"]
    # A change of mind with a new proof replaces the first.
    changed = warm.post(
        "/api/v1/feedback", json=body | {"altcha": fresh(), "answers": {"clarity": "no"}}
    )
    assert changed.status_code == 202
    assert counts() == (4, 4)

    # Racing spends of one proof on a known page: one response.
    shared = fresh()
    statuses: list[int] = []

    def send() -> None:
        client = FlaskClient(app, app.response_class)
        sent = answered(altcha=shared, client_token=str(uuid.uuid4()))
        statuses.append(client.post("/api/v1/feedback", json=sent).status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [202, 403, 403, 403]
    assert counts() == (5, 5)
