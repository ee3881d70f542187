"""The door on a real database (SQLite and PostgreSQL): sources, page views' tokens, the
new-page budget, signed page ids, retention and migration 0004. (Budgets per page and
across pages, and the refusals' metrics, are in test_spam.py; what record() leaves
behind when it refuses, in test_record.py.)"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import func, insert, select, text

from feedback.app import create_app
from feedback.config import load_settings
from feedback.migrate import MIGRATIONS
from feedback.models import (
    AnswerToken,
    Budget,
    KnownPage,
    OutboxEntry,
    Response,
    SourceKey,
    UsedChallenge,
)
from feedback.pages import page_sig
from feedback.retention import Retention
from feedback.sources import Sources, network
from koe_directory import canonical_url, page_id_for_url
from koe_kit.db import make_engine, session_factory
from support import answered, solving

SITE = "https://www.info.city.tsu.mie.jp"
PAGE = f"{SITE}/shisei/dx/1234.html"
TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture
def make_client(env, engine):
    """A test client of an app with extra settings, sending from `address`."""
    apps = []

    def make(address: str = "203.0.113.7", **settings: str):
        app = solving(create_app(load_settings({**env, **settings})))
        apps.append(app)
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        return client

    yield make
    for app in apps:
        app.extensions["koe.engine"].dispose()


def sources_by_id(engine) -> dict[str, str]:
    with engine.connect() as connection:
        payloads = connection.execute(select(OutboxEntry.payload)).scalars()
        return {e["id"]: e["data"]["source"] for e in map(json.loads, payloads)}


def sent_from(make_client, address: str, **changes) -> str:
    answer = make_client(address).post("/api/v1/feedback", json=answered(**changes))
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["id"]


# -- sources ----------------------------------------------------------------------------


def test_a_network_is_an_ipv4_address_or_an_ipv6_64():
    assert network("203.0.113.7") == "203.0.113.7/32"
    assert network("2001:db8:1:2::1") == network("2001:db8:1:2:ffff:1:2:3") == "2001:db8:1:2::/64"
    assert network("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert network("::ffff:203.0.113.7") == "203.0.113.7/32"
    assert network("fe80::1%eth0") == "fe80::/64"
    assert network("") == "not-an-address:"


def test_sources_group_addresses_by_network_and_store_no_address(make_client, engine):
    same_64 = [sent_from(make_client, a) for a in ("2001:db8:1:2::1", "2001:db8:1:2:aa::9")]
    other_64 = sent_from(make_client, "2001:db8:1:3::1")
    ipv4 = sent_from(make_client, "203.0.113.7")
    mapped = sent_from(make_client, "::ffff:203.0.113.7")
    neighbour = sent_from(make_client, "203.0.113.8")

    source = sources_by_id(engine)
    assert source[same_64[0]] == source[same_64[1]]
    assert source[ipv4] == source[mapped]
    assert len({source[same_64[0]], source[other_64], source[ipv4], source[neighbour]}) == 4
    with engine.connect() as connection:
        rows = [
            str(r)
            for t in ("responses", "outbox", "budgets")
            for r in connection.execute(text(f"SELECT * FROM {t}"))  # noqa: S608
        ]
        stored = dict(connection.execute(select(Response.id, Response.source)).all())
    assert stored == source
    assert not any("2001:db8" in row or "203.0.113" in row for row in rows)


def test_the_key_is_one_per_city_day_and_workers_agree(engine):
    sessions = session_factory(engine)
    # 15:30 UTC is already the next day in Tokyo.
    evening = datetime(2026, 5, 1, 14, 0, tzinfo=UTC)
    night = datetime(2026, 5, 1, 15, 30, tzinfo=UTC)
    one, other = Sources(sessions, TOKYO), Sources(sessions, TOKYO)

    assert one.source("203.0.113.7", evening) == other.source("203.0.113.7", evening)
    assert one.source("203.0.113.7", evening) != one.source("203.0.113.7", night)
    with engine.connect() as connection:
        days = connection.execute(select(SourceKey.day).order_by(SourceKey.day)).scalars().all()
    assert days == [date(2026, 5, 1), date(2026, 5, 2)]

    # Workers starting a day together race to make its key; all use the winner's.
    morning = datetime(2026, 5, 3, 0, 0, tzinfo=UTC)
    workers = [Sources(sessions, TOKYO) for _ in range(6)]
    seen: list[str] = []
    start = threading.Barrier(len(workers))

    def first_answer(worker: Sources) -> None:
        start.wait()
        seen.append(worker.source("203.0.113.7", morning))

    threads = [threading.Thread(target=first_answer, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 6 and len(set(seen)) == 1


# -- page views' tokens -----------------------------------------------------------------


def test_a_token_is_one_page_view(make_client, counts):
    client = make_client()
    token = str(uuid.uuid4())
    first = client.post("/api/v1/feedback", json=answered(client_token=token))
    retry = client.post("/api/v1/feedback", json=answered(client_token=token))
    changed = client.post(
        "/api/v1/feedback", json=answered(client_token=token, answers={"clarity": "yes"})
    )
    assert (first.status_code, retry.status_code, changed.status_code) == (202, 202, 202)
    assert retry.get_json() == first.get_json()
    assert changed.get_json() != first.get_json()
    # The retry of the change answers the change's id.
    again = client.post(
        "/api/v1/feedback", json=answered(client_token=token, answers={"clarity": "yes"})
    )
    assert again.get_json() == changed.get_json()

    other_page = client.post(
        "/api/v1/feedback", json=answered(client_token=token, page_url=f"{SITE}/other.html")
    )
    assert other_page.status_code == 409
    assert "another page" in other_page.get_json()["errors"]["client_token"][0]
    assert counts() == (2, 2)

    # Past the window (0 minutes here) a change of mind is refused, a retry still answered.
    closed = make_client(KOE_REPLACE_WINDOW_MINUTES="0")
    late = closed.post(
        "/api/v1/feedback", json=answered(client_token=token, answers={"clarity": "no"})
    )
    assert late.status_code == 409
    assert list(late.get_json()["errors"]) == ["client_token"]
    retried = closed.post(
        "/api/v1/feedback", json=answered(client_token=token, answers={"clarity": "yes"})
    )
    assert retried.get_json() == changed.get_json()
    assert counts() == (2, 2)


def test_no_token_and_different_tokens_are_different_people(make_client, counts):
    client = make_client()
    for changes in (
        {},
        {},
        {"client_token": str(uuid.uuid4())},
        {"client_token": str(uuid.uuid4())},
    ):
        assert client.post("/api/v1/feedback", json=answered(**changes)).status_code == 202
    form = {"page_url": PAGE, "clarity": "yes", "client_token": ""}
    for _ in range(2):
        assert client.post("/feedback", data=form).headers["Location"].endswith("#koe-thanks")
    assert counts() == (6, 6)


# -- new pages --------------------------------------------------------------------------


def test_one_source_creates_only_a_few_pages_a_day(make_client, engine):
    client = make_client(KOE_BUDGET_NEW_PAGES="2")
    pages = [f"{SITE}/flood/{i}.html" for i in range(3)]
    assert client.post("/api/v1/feedback", json=answered(page_url=pages[0])).status_code == 202
    assert client.post("/api/v1/feedback", json=answered(page_url=pages[1])).status_code == 202
    refused = client.post("/api/v1/feedback", json=answered(page_url=pages[2]))
    assert refused.status_code == 429
    assert refused.get_json()["errors"]["budget"][0].startswith("new_pages: 2 new pages a day")
    assert 86390 <= int(refused.headers["Retry-After"]) <= 86400
    # Pages koe knows are answered as before, and another network creates its own.
    assert client.post("/api/v1/feedback", json=answered(page_url=pages[0])).status_code == 202
    other = make_client("198.51.100.20", KOE_BUDGET_NEW_PAGES="2")
    assert other.post("/api/v1/feedback", json=answered(page_url=pages[2])).status_code == 202
    with engine.connect() as connection:
        known = connection.execute(select(KnownPage.url)).scalars().all()
    assert sorted(known) == sorted(pages)


# -- signed page ids --------------------------------------------------------------------


def test_a_page_id_counts_only_when_the_cms_signed_it(make_client, engine, env):
    key = env["KOE_CMS_KEY"].encode()
    client = make_client()

    def page_of(answer) -> str:
        assert answer.status_code == 202, answer.get_json()
        with engine.connect() as connection:
            return connection.execute(
                select(Response.page_id).where(Response.id == answer.get_json()["id"])
            ).scalar_one()

    good = answered(page_id="cms-1", page_sig=page_sig(key, "cms-1", PAGE))
    assert page_of(client.post("/api/v1/feedback", json=good)) == "cms-1"
    # Upper-case hex is the same signature.
    upper = {**good, "page_sig": good["page_sig"].upper()}
    assert page_of(client.post("/api/v1/feedback", json=upper)) == "cms-1"
    # Without a signature the id is ignored: the page is its URL.
    unsigned = answered(page_id="cms-1", page_url=f"{SITE}/elsewhere.html")
    elsewhere = page_id_for_url(canonical_url(f"{SITE}/elsewhere.html"))
    assert page_of(client.post("/api/v1/feedback", json=unsigned)) == elsewhere

    for bad in (page_sig(b"another key" * 4, "cms-1", PAGE), "0" * 32, "not hex"):
        refused = client.post("/api/v1/feedback", json={**good, "page_sig": bad})
        assert refused.status_code == 422
        assert list(refused.get_json()["errors"]) == ["page_sig"]

    # A signed id keeps the URL it was first answered with (the CMS moved the page:
    # a mistake to fix in the CMS or by an operator, not by a POST).
    moved_url = f"{SITE}/kurashi/gomi/moved.html"
    moved = answered(
        page_id="cms-1", page_url=moved_url, page_sig=page_sig(key, "cms-1", moved_url)
    )
    refused = client.post("/api/v1/feedback", json=moved)
    assert refused.status_code == 422
    assert list(refused.get_json()["errors"]) == ["page_url"]
    with engine.connect() as connection:
        assert (
            connection.execute(
                select(KnownPage.url).where(KnownPage.page_id == "cms-1")
            ).scalar_one()
            == PAGE
        )

    # Without KOE_CMS_KEY no page id is believed, signed or not.
    keyless = make_client(KOE_CMS_KEY="")
    assert page_of(keyless.post("/api/v1/feedback", json=good)) == page_id_for_url(PAGE)


# -- retention --------------------------------------------------------------------------


def test_retention_forgets_old_rows_and_never_an_unsent_event(engine):
    now = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
    old, recent = now - timedelta(days=401), now - timedelta(days=399)
    rows = {
        Response: [
            {
                "id": str(uuid.uuid4()),
                "page_id": "p",
                "page_url": PAGE,
                "locale": "ja",
                "clarity": "yes",
                "received_at": at,
            }
            for at in [old] * 3 + [recent]
        ],
        OutboxEntry: [
            {"event_id": "e", "topic": "t", "key": "p", "payload": "{}", "created_at": old}
        ],
        SourceKey: [
            {"day": date(2026, 12, 5) - timedelta(days=back), "key": "00", "created_at": now}
            for back in range(4)
        ],
        AnswerToken: [
            {
                "client_token": str(uuid.uuid4()),
                "page_id": "p",
                "response_id": "r",
                "answers": ",yes,",
                "first_at": at,
            }
            for at in (now - timedelta(hours=25), now - timedelta(hours=23))
        ],
        Budget: [
            {"source": "s", "scope": scope, "ends_at": now + timedelta(minutes=m), "count": 1}
            for scope, m in (("pages", -1), ("new-pages", 1))
        ],
        UsedChallenge: [
            {"signature": f"{n:064x}", "expires_at": now + timedelta(seconds=s)}
            for n, s in enumerate((-1, 1))
        ],
    }
    with engine.begin() as connection:
        for model, values in rows.items():
            connection.execute(insert(model.__table__), values)
    retention = Retention(response_keep_days=400, source_key_keep_days=2, replace_window_s=1800)

    pruned = retention.prune(session_factory(engine), Sources(session_factory(engine), TOKYO), now)

    assert pruned == {
        "responses": 3,
        "source_keys": 1,
        "answer_tokens": 1,
        "budgets": 1,
        "used_challenges": 1,
    }
    with engine.connect() as connection:

        def count(model) -> int:
            return connection.execute(select(func.count()).select_from(model)).scalar_one()

        assert connection.execute(select(Response.received_at)).scalar_one().date() == recent.date()
        assert count(OutboxEntry) == 1  # the relay's to prune, once sent
        assert count(SourceKey) == 3  # today, yesterday, the day before
        assert (count(AnswerToken), count(Budget), count(UsedChallenge)) == (1, 1, 1)


# -- migration 0004 ---------------------------------------------------------------------


def alembic(url: str):
    engine = make_engine(url)
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config, engine


def test_migration_0004_keeps_tokens_and_pages_and_goes_back(database_url):
    config, engine = alembic(database_url)
    try:
        command.upgrade(config, "0003")
        token = str(uuid.uuid4())
        first = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
        with engine.begin() as connection:
            for i, (url, at, tok) in enumerate(
                [(PAGE, first, token), (PAGE, first + timedelta(days=1), None)]
            ):
                connection.execute(
                    text(
                        "INSERT INTO responses (id, page_id, page_url, locale, findability,"
                        " usefulness, client_token, received_at) VALUES"
                        " (:id, 'tsu-1', :url, 'ja', 'yes', 'no', :token, :at)"
                    ),
                    {"id": f"r{i}", "url": url, "token": tok, "at": at},
                )

        command.upgrade(config, "head")

        with engine.connect() as connection:
            tokens = connection.execute(select(AnswerToken)).all()
            pages = connection.execute(select(KnownPage.page_id, KnownPage.url)).all()
        assert [(t.client_token, t.page_id, t.response_id, t.answers) for t in tokens] == [
            (token, "tsu-1", "r0", "yes,,no")
        ]
        assert pages == [("tsu-1", PAGE)]

        command.downgrade(config, "0003")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM responses")).scalar_one() == 2
        command.upgrade(config, "head")
    finally:
        engine.dispose()
