"""The stats API: bearer token, and numbers that match the counts in the database."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from aggregator.app import create_app
from aggregator.config import load_settings, load_web_settings
from aggregator.counting.ingest import handle_batch
from aggregator.counting.models import DailyCount, DailyResponse
from aggregator.pages.models import Page
from koe_directory import load_directory
from koe_kit.config import ConfigError
from koe_kit.db import transaction

DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")

TOKEN = "s3cret-token-for-tests-0123456789"  # noqa: S105 (a test token)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET_KEY = "a-session-secret-for-tests-" + "k" * 16  # noqa: S105 (a test secret)
A, B = "u-5f1c9a2d7e3b4c60", "shirasagi:docs:1234"


@pytest.fixture
def client(migrated_url, sessions):
    seen = datetime(2026, 11, 1, tzinfo=UTC)
    with transaction(sessions) as session:
        session.add_all(
            [
                Page(
                    id=A,
                    url="https://www.info.city.tsu.mie.jp/shisei/dx/1234.html",
                    title="津市の自治体DX取組状況",
                    visible=True,
                    first_seen=seen,
                    last_seen=seen,
                ),
                Page(
                    id=B,
                    url="https://www.info.city.tsu.mie.jp/kurashi/gomi/1234.html",
                    title=None,
                    visible=True,
                    first_seen=seen,
                    last_seen=seen,
                ),
            ]
        )
        for page_id, day, question, yes, neutral, no in [
            (A, date(2026, 11, 27), "clarity", 3, 1, 0),
            (A, date(2026, 11, 22), "clarity", 0, 0, 2),
            (A, date(2026, 11, 10), "clarity", 1, 0, 0),
            (A, date(2026, 9, 1), "findability", 0, 2, 0),
            (A, date(2026, 11, 28), "clarity", 0, 0, 9),  # after as_of: never counted
            (B, date(2026, 11, 26), "usefulness", 1, 0, 1),
        ]:
            session.add(
                DailyCount(
                    page_id=page_id, day=day, question=question, yes=yes, neutral=neutral, no=no
                )
            )
            # Each of these responses answered the one question, so responses = answers.
            session.add(DailyResponse(page_id=page_id, day=day, responses=yes + neutral + no))
    app = create_app(
        load_web_settings(
            {"DATABASE_URL": migrated_url, "KOE_API_TOKEN": TOKEN, "KOE_SECRET_KEY": SECRET_KEY}
        )
    )
    return app.test_client()


def test_refuses_to_start_without_a_strong_token(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with pytest.raises(ConfigError, match="KOE_API_TOKEN"):
        create_app(load_web_settings({"DATABASE_URL": url}))
    with pytest.raises(ConfigError, match="KOE_API_TOKEN"):
        load_web_settings({"DATABASE_URL": url})
    with pytest.raises(ConfigError, match="KOE_API_TOKEN is too short"):
        load_web_settings({"DATABASE_URL": url, "KOE_API_TOKEN": "short"})


def test_a_wrong_time_zone_is_named_at_start_up():
    with pytest.raises(ConfigError, match="KOE_TIMEZONE='Asia/Nagoya' is invalid"):
        load_settings({"KOE_TIMEZONE": "Asia/Nagoya"})
    assert str(load_settings({"KOE_TIMEZONE": "UTC"}).timezone) == "UTC"


def test_the_api_starts_without_kafka_settings(tmp_path):
    settings = load_web_settings({"KOE_API_TOKEN": TOKEN, "KOE_SECRET_KEY": SECRET_KEY})
    assert settings.api_token == TOKEN
    assert "kafka" not in {field.name for field in fields(settings)}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ],
)
def test_401_without_the_right_token(client, headers):
    for path in ("/api/v1/pages", f"/api/v1/pages/{A}"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json()["error"] == "Unauthorized"
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_pages_list_matches_the_counts(client):
    response = client.get("/api/v1/pages?as_of=2026-11-27", headers=AUTH)
    assert response.status_code == 200
    body = response.get_json()
    assert body["as_of"] == "2026-11-27"
    pages = {p["id"]: p for p in body["pages"]}
    assert set(pages) == {A, B}
    a = pages[A]
    assert (a["url"], a["title"], a["division"]) == (
        "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html",
        "津市の自治体DX取組状況",
        "somu-dx",
    )
    week, month, ever = a["windows"]["7d"], a["windows"]["28d"], a["windows"]["all"]
    assert (week["start"], week["end"]) == ("2026-11-21", "2026-11-27")
    assert week["questions"]["clarity"] | {"wilson_low": None, "wilson_high": None} == {
        "yes": 3,
        "neutral": 1,
        "no": 2,
        "n": 6,
        "score": 58.3,
        "wilson_low": None,
        "wilson_high": None,
    }
    clarity = week["questions"]["clarity"]
    assert clarity["wilson_low"] < 58.3 < clarity["wilson_high"]
    assert week["questions"]["findability"] == {
        "yes": 0,
        "neutral": 0,
        "no": 0,
        "n": 0,
        "score": None,
        "wilson_low": None,
        "wilson_high": None,
    }
    assert (week["n"], week["score"]) == (6, 58.3)
    assert (month["n"], month["score"]) == (7, 64.3)
    assert ever["start"] is None
    assert ever["questions"]["findability"]["score"] == 50.0
    assert (ever["n"], ever["score"]) == (9, 57.1)  # mean of 64.29 and 50
    b = pages[B]["windows"]["7d"]
    assert (b["n"], b["score"]) == (2, 50.0)


def test_pages_list_filters_by_division_and_validates_as_of(client):
    # The division is divisions.yaml's for the page's URL.
    query = "/api/v1/pages?division=kankyo-gomi&as_of=2026-11-27"
    body = client.get(query, headers=AUTH).get_json()
    assert [(p["id"], p["division"]) for p in body["pages"]] == [(B, "kankyo-gomi")]
    for bad in ("2026-13-01", "yesterday", "20261127"):
        response = client.get(f"/api/v1/pages?as_of={bad}", headers=AUTH)
        assert response.status_code == 400
        assert "as_of" in response.get_json()["errors"]
    # Without as_of, today in Tokyo: the old answers are outside the week.
    body = client.get("/api/v1/pages", headers=AUTH).get_json()
    assert date.fromisoformat(body["as_of"]) >= date(2026, 11, 27)


def test_page_detail_with_daily_series(client):
    response = client.get(f"/api/v1/pages/{B}?as_of=2026-11-27", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json()["windows"]["all"]["questions"]["usefulness"]["n"] == 2
    body = client.get(f"/api/v1/pages/{A}?as_of=2026-11-27&days=7", headers=AUTH).get_json()
    assert body["windows"]["28d"]["score"] == 64.3
    daily = body["daily"]
    assert [d["day"] for d in daily] == [f"2026-11-{d}" for d in range(21, 28)]
    by_day = {d["day"]: d for d in daily}
    assert by_day["2026-11-27"]["questions"]["clarity"] == {
        "yes": 3,
        "neutral": 1,
        "no": 0,
        "n": 4,
        "score": 87.5,
    }
    assert (by_day["2026-11-27"]["n"], by_day["2026-11-27"]["score"]) == (4, 87.5)
    assert by_day["2026-11-22"]["score"] == 0.0
    assert (by_day["2026-11-23"]["n"], by_day["2026-11-23"]["score"]) == (0, None)
    assert (
        len(client.get(f"/api/v1/pages/{A}?as_of=2026-11-27", headers=AUTH).get_json()["daily"])
        == 28
    )


def test_page_detail_errors(client):
    assert client.get("/api/v1/pages/no-such-page", headers=AUTH).status_code == 404
    assert client.get("/api/v1/pages/-bad-id", headers=AUTH).status_code == 404
    for days in ("0", "367", "x"):
        response = client.get(f"/api/v1/pages/{A}?days={days}", headers=AUTH)
        assert response.status_code == 400 and "days" in response.get_json()["errors"]
    assert client.get(f"/api/v1/pages/{A}?days=366", headers=AUTH).status_code == 200


def test_page_n_is_responses_and_question_n_is_answers(migrated_url, sessions, make_feedback):
    feedback = make_feedback
    batch = [
        # Three responses on the 20th answering 3, 1 and 2 questions: six answers.
        feedback(
            "2026-11-20T03:00:00Z", {"findability": "yes", "clarity": "yes", "usefulness": "no"}
        ),
        feedback("2026-11-20T04:00:00Z", {"clarity": "neutral"}),
        feedback("2026-11-20T05:00:00Z", {"clarity": "no", "usefulness": "yes"}),
        # One more ten days before: inside 28d and all, outside 7d.
        feedback("2026-11-10T03:00:00Z", {"findability": "no", "usefulness": "yes"}),
    ]
    with transaction(sessions) as session:
        handle_batch(session, batch, timezone=ZoneInfo("Asia/Tokyo"), directory=DIRECTORY)
    client = create_app(
        load_web_settings(
            {"DATABASE_URL": migrated_url, "KOE_API_TOKEN": TOKEN, "KOE_SECRET_KEY": SECRET_KEY}
        )
    ).test_client()

    [page] = client.get("/api/v1/pages?as_of=2026-11-20", headers=AUTH).get_json()["pages"]
    detail = client.get(f"/api/v1/pages/{page['id']}?as_of=2026-11-20", headers=AUTH).get_json()
    for body in (page, detail):
        week, month, ever = (body["windows"][w] for w in ("7d", "28d", "all"))
        assert (week["n"], month["n"], ever["n"]) == (3, 4, 4)
        assert {q: t["n"] for q, t in week["questions"].items()} == {
            "findability": 1,
            "clarity": 3,
            "usefulness": 2,
        }
        assert {q: t["n"] for q, t in month["questions"].items()} == {
            "findability": 2,
            "clarity": 3,
            "usefulness": 3,
        }
    by_day = {d["day"]: d for d in detail["daily"]}
    assert by_day["2026-11-20"]["n"] == 3
    assert by_day["2026-11-20"]["questions"]["clarity"]["n"] == 3
    assert by_day["2026-11-10"]["n"] == 1
    assert by_day["2026-11-10"]["questions"]["usefulness"]["n"] == 1
    assert by_day["2026-11-15"]["n"] == 0

    # A redelivered batch counts no response twice.
    with transaction(sessions) as session:
        handle_batch(session, batch, timezone=ZoneInfo("Asia/Tokyo"), directory=DIRECTORY)
    [page] = client.get("/api/v1/pages?as_of=2026-11-20", headers=AUTH).get_json()["pages"]
    assert page["windows"]["all"]["n"] == 4


def test_a_batch_committed_mid_request_never_splits_n_from_its_questions(
    client, sessions, monkeypatch
):
    """The consumer commits a response (answering clarity) between the API's statement
    for the questions' counts and the one for responses: the page's figures still come
    from one snapshot, so n is the questions' answers (each response here answered one)."""
    from aggregator.stats import figures as stats

    window_responses = stats._window_responses

    def after_a_commit(*args, **kwargs):
        with transaction(sessions) as other:
            other.add(DailyCount(page_id=A, day=date(2026, 11, 27), question="usefulness", yes=1))
            row = other.get(DailyResponse, (A, date(2026, 11, 27)))
            row.responses += 1
        return window_responses(*args, **kwargs)

    monkeypatch.setattr(stats, "_window_responses", after_a_commit)
    page = client.get(f"/api/v1/pages/{A}?as_of=2026-11-27", headers=AUTH).get_json()
    for window in page["windows"].values():
        assert window["n"] == sum(q["n"] for q in window["questions"].values()), window


def test_as_of_at_the_ends_of_the_calendar_is_refused_not_a_crash(client):
    # Windows reach back 28 days and the daily series forward a day: at year 1 or
    # 9999 date arithmetic overflowed into a 500.
    for bad in ("0001-01-01", "1999-12-31", "9999-12-31"):
        for path in ("/api/v1/pages", f"/api/v1/pages/{A}"):
            response = client.get(f"{path}?as_of={bad}", headers=AUTH)
            assert response.status_code == 400, (path, bad)
            assert "2000-01-01" in response.get_json()["errors"]["as_of"][0]


def _add_pages(sessions, ids):
    seen = datetime(2026, 11, 1, tzinfo=UTC)
    with transaction(sessions) as session:
        for page_id in ids:
            url = f"https://www.info.city.tsu.mie.jp/kurashi/gomi/{page_id}.html"
            session.add(Page(id=page_id, url=url, visible=True, first_seen=seen, last_seen=seen))
            session.add(
                DailyCount(page_id=page_id, day=date(2026, 11, 26), question="clarity", yes=1, no=0)
            )
            session.add(DailyResponse(page_id=page_id, day=date(2026, 11, 26), responses=1))


def test_paged_listing_returns_every_page_once_while_pages_are_added(client, sessions):
    _add_pages(sessions, [f"p{i:03d}" for i in range(0, 60, 2)])
    before = {A, B} | {f"p{i:03d}" for i in range(0, 60, 2)}
    seen: list[str] = []
    query = "/api/v1/pages?as_of=2026-11-27&limit=7"
    cursor, requests = None, 0
    while True:
        body = client.get(query + (f"&cursor={cursor}" if cursor else ""), headers=AUTH).get_json()
        assert len(body["pages"]) <= 7
        seen += [page["id"] for page in body["pages"]]
        if requests == 0:
            first = body["pages"][0]
            assert first["id"] == "p000"
        requests += 1
        # New pages land before and after the cursor, between every two requests.
        _add_pages(sessions, [f"p{requests * 2 - 1:03d}", f"q{requests:03d}"])
        cursor = body["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert before <= set(seen)
    assert seen == sorted(seen)
    # Pages added after the cursor passed their place are not owed; those ahead of it come.
    assert "q001" in seen
    assert first["windows"]["7d"]["questions"]["clarity"] | {"wilson_low": 0, "wilson_high": 0} == {
        "yes": 1,
        "neutral": 0,
        "no": 0,
        "n": 1,
        "score": 100.0,
        "wilson_low": 0,
        "wilson_high": 0,
    }


def test_paged_listing_default_limit_and_division(client, sessions):
    _add_pages(sessions, [f"p{i:03d}" for i in range(150)])
    body = client.get("/api/v1/pages?as_of=2026-11-27", headers=AUTH).get_json()
    assert len(body["pages"]) == 100
    rest = client.get(f"/api/v1/pages?as_of=2026-11-27&cursor={body['next']}", headers=AUTH)
    rest_body = rest.get_json()
    assert rest_body["next"] is None
    assert len(body["pages"]) + len(rest_body["pages"]) == 152
    # A division's pages only (all of p* are the gomi division's, A is not), in pages of 60.
    ids: list[str] = []
    cursor = None
    while True:
        query = "/api/v1/pages?as_of=2026-11-27&division=kankyo-gomi&limit=60"
        body = client.get(query + (f"&cursor={cursor}" if cursor else ""), headers=AUTH).get_json()
        ids += [page["id"] for page in body["pages"]]
        assert {page["division"] for page in body["pages"]} == {"kankyo-gomi"}
        cursor = body["next"]
        if cursor is None:
            break
    assert sorted(ids) == sorted([B] + [f"p{i:03d}" for i in range(150)])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=LWJhZA", "cursor"),  # "-bad": not a page id
    ],
)
def test_paged_listing_rejects_a_bad_limit_or_cursor(client, query, field):
    response = client.get(f"/api/v1/pages?{query}", headers=AUTH)
    assert response.status_code == 400
    assert field in response.get_json()["errors"]


def test_page_detail_splits_the_scores_by_the_language_answered_in(
    migrated_url, sessions, make_feedback
):
    feedback = make_feedback
    first_pt = feedback("2026-11-20T03:00:00Z", {"clarity": "yes"}, locale="pt")
    batch = [
        feedback("2026-11-20T02:00:00Z", {"clarity": "yes", "usefulness": "yes"}, locale="ja"),
        first_pt,
        feedback("2026-11-20T04:00:00Z", {"clarity": "no"}, locale="pt"),
        feedback("2026-11-01T04:00:00Z", {"clarity": "neutral"}, locale="ja-x-easy"),
    ]
    # The first Portuguese reader changes their mind: counted once, in Portuguese.
    change = feedback(
        "2026-11-20T03:05:00Z", {"clarity": "no"}, locale="pt", replaces=first_pt["id"]
    )
    with transaction(sessions) as session:
        handle_batch(session, batch, timezone=ZoneInfo("Asia/Tokyo"), directory=DIRECTORY)
    with transaction(sessions) as session:
        handle_batch(
            session,
            [change],
            timezone=ZoneInfo("Asia/Tokyo"),
            directory=DIRECTORY,
        )
    client = create_app(
        load_web_settings(
            {"DATABASE_URL": migrated_url, "KOE_API_TOKEN": TOKEN, "KOE_SECRET_KEY": SECRET_KEY}
        )
    ).test_client()

    detail = client.get(f"/api/v1/pages/{A}?as_of=2026-11-20", headers=AUTH).get_json()

    locales = detail["locales"]
    assert list(locales) == ["ja", "ja-x-easy", "pt"]  # the catalogue's order
    pt_week = locales["pt"]["7d"]
    assert pt_week["n"] == 2
    assert (pt_week["questions"]["clarity"]["yes"], pt_week["questions"]["clarity"]["no"]) == (0, 2)
    assert pt_week["score"] == 0
    assert locales["ja"]["7d"]["score"] == 100
    assert locales["ja-x-easy"]["7d"]["n"] == 0
    assert locales["ja-x-easy"]["all"]["questions"]["clarity"]["neutral"] == 1
    # The split adds up to the page's own figures.
    assert sum(figures["all"]["n"] for figures in locales.values()) == detail["windows"]["all"]["n"]
    # The list takes one language too: the same figures as the detail's split.
    listed = client.get("/api/v1/pages?as_of=2026-11-20&locale=pt", headers=AUTH).get_json()
    [page] = [p for p in listed["pages"] if p["id"] == A]
    assert page["windows"]["7d"]["n"] == pt_week["n"] == 2
    assert page["windows"]["7d"]["questions"]["clarity"] == pt_week["questions"]["clarity"]
    refused = client.get("/api/v1/pages?locale=xx", headers=AUTH)
    assert refused.status_code == 400 and refused.get_json()["errors"]["locale"]
