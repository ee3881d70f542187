"""Pages keep their identity and new pages are not free (pages/), on SQLite and
PostgreSQL: a page few sources answered is nowhere to be seen (dashboard, stats API,
CSV, alerts) until enough do or the city's page list names it; an answer naming a page
with another URL, division or title changes nothing anyone sees; admins see how many
pages wait and what a page's excess was, clerks neither."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from aggregator.alerts.models import AlertOutbox
from aggregator.counting.ingest import handle_batch
from aggregator.counting.models import DailyExcess, DailyResponse
from aggregator.pages.models import Page
from koe_directory import load_directory, page_id_for_url
from koe_kit.db import transaction

TOKYO = ZoneInfo("Asia/Tokyo")
REPO = Path(__file__).resolve().parents[3]
DIRECTORY = load_directory(REPO / "divisions.yaml")
SITE = "https://www.info.city.tsu.mie.jp"
NEW_URL = f"{SITE}/shisei/dx/new.html"  # 総務部 デジタル改革推進課 by its URL prefix
NEW = page_id_for_url(NEW_URL)
MIN_SOURCES = 5  # the shipped KOE_PAGE_MIN_SOURCES
TOKEN = "dashboard-api-token-" + "t" * 16  # noqa: S105 (conftest's test token)
API = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "correct horse battery"  # noqa: S105 (the seeded accounts' password)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def signed_in(app, email: str):
    client = app.test_client()
    token = CSRF.search(client.get("/sign-in").get_data(as_text=True)).group(1)
    data = {"email": email, "password": PASSWORD, "csrf_token": token}
    assert client.post("/sign-in", data=data).status_code == 303
    return client


def count(sessions, batch):
    with transaction(sessions) as session:
        handle_batch(session, batch, timezone=TOKYO, directory=DIRECTORY)


def answers_from(make_feedback, make_source, names, **fields):
    """One answer to the new page from each named source, today."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    fields = {"page_id": NEW, "url": NEW_URL, "title": "新しいページ", **fields}
    return [
        make_feedback(now, {"clarity": "yes"}, source=make_source(name), **fields) for name in names
    ]


def everywhere(app, client, api_client, page_id: str) -> dict[str, bool]:
    """Where a user would find the page: the lists, its own view, the API, the CSV."""
    found = {
        "pages list": page_id in client.get("/pages").get_data(as_text=True),
        "page view": client.get(f"/pages/{page_id}").status_code == 200,
        "overview": page_id in client.get("/overview").get_data(as_text=True),
        "daily csv": client.get(f"/export/pages/{page_id}/daily.csv").status_code == 200,
        "api detail": api_client.get(f"/api/v1/pages/{page_id}", headers=API).status_code == 200,
        "api list": page_id
        in {p["id"] for p in api_client.get("/api/v1/pages", headers=API).get_json()["pages"]},
    }
    rows = csv.reader(io.StringIO(client.get("/export/pages.csv").get_data(as_text=True)))
    found["pages csv"] = any(row and row[0] == page_id for row in rows)
    return found


def test_a_page_few_sources_answered_is_hidden_until_enough_did(
    city_app, sessions, make_feedback, make_source
):
    app, city = city_app
    admin, api_client = signed_in(app, city.admin), app.test_client()
    # Four addresses, and one of them sending fifty answers: not a crowd yet.
    batch = answers_from(make_feedback, make_source, ["a", "b", "c", "d"])
    batch += answers_from(make_feedback, make_source, ["a"] * 50)
    count(sessions, batch)
    assert not any(everywhere(app, admin, api_client, NEW).values())
    waiting = admin.get("/pages").get_data(as_text=True)
    assert "このほか1ページは、回答した送信元が5より少なく" in waiting
    # A clerk of the page's division neither sees it nor the count.
    clerk = signed_in(app, city.somu)
    assert "このほか" not in clerk.get("/pages").get_data(as_text=True)

    count(sessions, answers_from(make_feedback, make_source, ["e"]))
    assert all(everywhere(app, admin, api_client, NEW).values())
    assert all(everywhere(app, clerk, api_client, NEW).values())
    assert "このほか" not in admin.get("/pages").get_data(as_text=True)
    # n counts the cap of the flooding source, not its fifty.
    detail = api_client.get(f"/api/v1/pages/{NEW}", headers=API).get_json()
    assert detail["windows"]["all"]["n"] == MIN_SOURCES + 2
    assert (detail["url"], detail["title"], detail["division"]) == (
        NEW_URL,
        "新しいページ",
        "somu-dx",
    )


def test_a_hidden_pages_alert_is_not_listed(city_app, sessions, make_feedback, make_source):
    app, city = city_app
    count(sessions, answers_from(make_feedback, make_source, ["a"]))
    alert_id = "9f0e1d2c-3b4a-5968-8776-655443322110"
    with transaction(sessions) as session:
        session.add(
            AlertOutbox(
                alert_id=alert_id,
                page_id=NEW,
                payload='{"type": "koe.alerts.v1", "data": {"kind": "drop"}}',
                created_at=datetime.now(UTC),
                sent_at=None,
            )
        )
    admin = signed_in(app, city.admin)
    listed = admin.get("/alerts?show=all").get_data(as_text=True)
    assert alert_id not in listed
    assert "(3件)" in listed  # the seeded city's three alerts, and not this one
    assert (
        admin.post(
            f"/alerts/{alert_id}/handled",
            data={"csrf_token": CSRF.search(listed).group(1), "note": ""},
        ).status_code
        == 404
    )


def import_list(app, path: Path) -> subprocess.CompletedProcess:
    settings = app.extensions["aggregator.settings"]
    return subprocess.run(
        [sys.executable, "-m", "aggregator.pages", "import", str(path)],
        env={"DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_city_page_list_shows_its_pages_with_its_titles(
    city_app, sessions, make_feedback, make_source, tmp_path
):
    app, city = city_app
    admin, api_client = signed_in(app, city.admin), app.test_client()
    never = f"{SITE}/kurashi/gomi/never-answered.html"
    listing = tmp_path / "pages.csv"
    listing.write_text(f"url,title\n{NEW_URL},市の題名\n{never},\n", encoding="utf-8")
    one = answers_from(make_feedback, make_source, ["a"])
    count(sessions, one)

    result = import_list(app, listing)
    assert result.returncode == 0, result.stderr
    assert "2 pages" in result.stdout
    assert all(everywhere(app, admin, api_client, NEW).values())
    with sessions() as session:
        unanswered = session.scalars(select(Page).where(Page.url == never)).one()
    assert everywhere(app, admin, api_client, unanswered.id)["api detail"]
    # The list's title stays, whatever a crowd sends; a sitemap without titles keeps it.
    count(
        sessions,
        answers_from(make_feedback, make_source, list("bcdefgh"), title="別の題名"),
    )
    sitemap = tmp_path / "sitemap.xml"
    sitemap.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{NEW_URL}</loc></url></urlset>",
        encoding="utf-8",
    )
    assert import_list(app, sitemap).returncode == 0
    detail = api_client.get(f"/api/v1/pages/{NEW}", headers=API).get_json()
    assert detail["title"] == "市の題名"
    # The same list again changes nothing; a broken one is refused, naming the problem.
    assert import_list(app, listing).returncode == 0
    assert api_client.get(f"/api/v1/pages/{NEW}", headers=API).get_json() == detail
    broken = tmp_path / "broken.csv"
    broken.write_text("address\nhttps://x.example/\n", encoding="utf-8")
    refused = import_list(app, broken)
    assert refused.returncode == 2 and "url" in refused.stderr


def test_an_answer_naming_a_page_with_another_url_division_or_title_changes_nothing(
    city_app, sessions, make_feedback, make_source
):
    app, city = city_app
    api_client = app.test_client()
    count(sessions, answers_from(make_feedback, make_source, list("abcde")))
    before = api_client.get(f"/api/v1/pages/{NEW}", headers=API).get_json()
    # One person, many times a day, naming the page with another division's URL, the
    # other division's code and a title of their own.
    hijack = answers_from(
        make_feedback,
        make_source,
        ["attacker"] * 20,
        url=f"{SITE}/kurashi/gomi/evil.html",
        division="kankyo-gomi",
        title="乗っ取られたページ",
    )
    count(sessions, hijack)
    after = api_client.get(f"/api/v1/pages/{NEW}", headers=API).get_json()
    identity = ("url", "title", "division")
    assert [after[k] for k in identity] == [before[k] for k in identity]
    # Still the DX division's page: its clerk sees it, the other division's does not.
    assert signed_in(app, city.somu).get(f"/pages/{NEW}").status_code == 200
    assert signed_in(app, city.kankyo).get(f"/pages/{NEW}").status_code == 404
    # Its answers counted, within the cap, under the page as it is.
    assert after["windows"]["all"]["n"] == before["windows"]["all"]["n"] + 3


def test_a_title_needs_enough_sources(city_app, sessions, make_feedback, make_source):
    app, _city = city_app
    api_client = app.test_client()

    def title() -> str | None:
        return api_client.get(f"/api/v1/pages/{NEW}", headers=API).get_json()["title"]

    count(sessions, answers_from(make_feedback, make_source, list("abcde"), title="最初の題名"))
    assert title() == "最初の題名"
    # The CMS renamed the page: the new title takes over once five sources sent it.
    renamed = answers_from(make_feedback, make_source, list("fghi"), title="新しい題名")
    count(sessions, renamed)
    assert title() == "最初の題名"
    count(sessions, answers_from(make_feedback, make_source, ["j"], title="新しい題名"))
    assert title() == "新しい題名"


def test_admins_see_a_pages_excess_and_clerks_do_not(city_app, sessions):
    app, city = city_app
    today = datetime.now(app.extensions["aggregator.settings"].timezone).date()
    with transaction(sessions) as session:
        session.add_all(
            [
                DailyExcess(page_id=city.dx, day=today, responses=40),
                DailyExcess(page_id=city.dx, day=today - timedelta(days=10), responses=7),
                DailyExcess(page_id=city.dx, day=today - timedelta(days=60), responses=5),
            ]
        )
    admin_view = signed_in(app, city.admin).get(f"/pages/{city.dx}").get_data(as_text=True)
    section = re.search(r'<section id="excess".*?</section>', admin_view, re.S).group(0)
    assert "一人で満足度を動かせないよう" in section
    cells = re.findall(
        r'<tr data-window="(\w+)"><th scope="row">[^<]*</th><td>([\d,]+)</td>', section
    )
    assert cells == [("7d", "40"), ("28d", "47"), ("all", "52")]
    english = signed_in(app, city.admin).get(f"/pages/{city.dx}?lang=en").get_data(as_text=True)
    assert "So that one person cannot move the numbers" in english
    clerk_view = signed_in(app, city.somu).get(f"/pages/{city.dx}").get_data(as_text=True)
    assert 'id="excess"' not in clerk_view
    assert "一人で満足度を動かせないよう" not in clerk_view
    # The scores never include it: the API's n is the seeded responses alone.
    api_client = app.test_client()
    listed = api_client.get(f"/api/v1/pages/{city.dx}", headers=API).get_json()
    with sessions() as session:
        seeded = session.scalar(
            select(func.sum(DailyResponse.responses)).where(DailyResponse.page_id == city.dx)
        )
    assert listed["windows"]["all"]["n"] == seeded


def test_a_hidden_pages_drop_emails_nobody(sessions, make_feedback, make_source):
    """However the threshold is set, no division is emailed about a page it cannot see."""
    start = datetime(2026, 10, 20, 3, tzinfo=UTC)
    history = [
        make_feedback(
            start + timedelta(days=day, minutes=n),
            {"clarity": "yes" if day < 100 else "no"},
            page_id=NEW,
            url=NEW_URL,
            source=make_source(f"{day} {n}"),
        )
        for day in range(105)
        for n in range(3)
    ]
    # The evening of the last day: the detector judges the days before it.
    judge_now = start + timedelta(days=104, hours=9)
    for min_sources, alerts in ((len(history) + 1, 0), (MIN_SOURCES, 1)):
        with sessions() as session:  # judged, then rolled back: the same history again
            result = handle_batch(
                session,
                history,
                timezone=TOKYO,
                directory=DIRECTORY,
                page_min_sources=min_sources,
                now=judge_now,
            )
            session.rollback()
        assert len(result.alerts) == alerts
