"""The dashboard through Flask's test client, on SQLite and PostgreSQL: who sees what,
sign-in safety (cookie, CSRF, throttling), numbers equal to the stats API, alerts handled,
markup in a page title shown as text."""

from __future__ import annotations

import html
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin

import pytest
from sqlalchemy import select

from aggregator.accounts.models import SignInFailure
from aggregator.accounts.services import set_password
from aggregator.alerts.models import AlertHandling, AlertOutbox
from aggregator.app import create_app
from aggregator.config import load_web_settings
from aggregator.counting.models import DailyCount
from koe_kit.config import ConfigError
from koe_kit.db import transaction

TOKEN = "dashboard-api-token-" + "t" * 16  # noqa: S105 (a test token)
PASSWORD = "correct horse battery"  # noqa: S105 (the seeded accounts' password)
WRONG = "not the password"  # noqa: S105
API = {"Authorization": f"Bearer {TOKEN}"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client, path: str) -> str:
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def sign_in(client, email: str, password: str = PASSWORD, next_path: str | None = None):
    data = {"email": email, "password": password, "csrf_token": csrf_of(client, "/sign-in")}
    if next_path:
        data["next"] = next_path
    return client.post("/sign-in", data=data)


def signed_in(app, email: str):
    client = app.test_client()
    assert sign_in(client, email).status_code == 303
    return client


def api(client, path: str) -> dict:
    response = client.get(path, headers=API)
    assert response.status_code == 200
    return response.get_json()


def text_of(response) -> str:
    return response.get_data(as_text=True)


def main_of(response) -> str:
    return re.search(r"<main.*</main>", text_of(response), re.S).group(0)


def test_refuses_to_start_without_a_strong_secret_key(tmp_path, dashboard_app_for):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    base = {"DATABASE_URL": url, "KOE_API_TOKEN": TOKEN}
    with pytest.raises(ConfigError, match="KOE_SECRET_KEY is required"):
        load_web_settings(base)
    with pytest.raises(ConfigError, match="KOE_SECRET_KEY is too short"):
        load_web_settings(base | {"KOE_SECRET_KEY": "x" * 31})
    with pytest.raises(ConfigError, match="KOE_SECRET_KEY"):
        create_app(load_web_settings(base))
    with pytest.raises(ConfigError, match="KOE_DIVISIONS_FILE"):
        dashboard_app_for(KOE_DIVISIONS_FILE=str(tmp_path / "missing.yaml"))


def test_signed_out_visitors_are_sent_to_sign_in(city_app):
    app, city = city_app
    client = app.test_client()
    assert client.get("/").headers["Location"] == "/pages"
    for path in (
        "/pages",
        f"/pages/{city.dx}",
        "/overview",
        "/alerts?show=open",
        "/export/pages.csv",
        f"/export/pages/{city.dx}/daily.csv",
    ):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/sign-in?next=")
    # After signing in, the visitor lands where they were going, never on another site.
    assert sign_in(client, city.somu, next_path="/alerts?show=open").headers["Location"] == (
        "/alerts?show=open"
    )
    client = app.test_client()
    assert sign_in(client, city.somu, next_path="//evil.example/").headers["Location"] == "/pages"


def test_next_never_leads_to_another_site(city_app):
    app, city = city_app
    base = "https://koe.city-tsu.example/sign-in"
    # A browser drops tabs and line breaks from a Location and reads \\ as /.
    for target in (
        "//evil.example/",
        "/\t/evil.example/",
        "/\n/evil.example/",
        "/\r\n/evil.example/",
        "/\\evil.example/",
        "https://evil.example/",
        "javascript:alert(1)",
        "/pages\r\nSet-Cookie: x=y",
    ):
        response = sign_in(app.test_client(), city.somu, next_path=target)
        assert response.status_code == 303, repr(target)
        assert urljoin(base, response.headers["Location"]) == urljoin(base, "/pages"), repr(target)
    somu = signed_in(app, city.somu)
    handled = somu.post(
        f"/alerts/{city.dx_alert}/handled",
        data={"csrf_token": csrf_of(somu, "/alerts"), "next": "/\t/evil.example/"},
    )
    assert handled.status_code == 303 and handled.headers["Location"] == "/alerts"


def test_session_cookie_is_http_only_lax_and_secure_in_production(city_app, dashboard_app_for):
    app, city = city_app
    client = app.test_client()
    response = sign_in(client, city.somu)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # the tests' http setting
    production = dashboard_app_for(KOE_DASHBOARD_SECURE_COOKIES="")
    cookie = sign_in(production.test_client(), city.somu).headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_sign_out_ends_the_session_for_good(city_app):
    app, city = city_app
    client = signed_in(app, city.somu)
    stolen = client.get_cookie("koe_session").value
    token = csrf_of(client, "/pages")
    response = client.post("/sign-out", data={"csrf_token": token})
    assert response.status_code == 303
    assert client.get("/pages").status_code == 302
    # The old cookie, replayed, no longer signs anyone in: the session has expired.
    replay = app.test_client()
    replay.set_cookie("koe_session", stolen)
    assert replay.get("/pages").status_code == 302


def test_a_new_password_signs_the_account_out_everywhere(city_app, sessions):
    app, city = city_app
    somu = signed_in(app, city.somu)
    with transaction(sessions) as session:
        set_password(session, city.somu, "a new and long password")
    assert somu.get("/pages").status_code == 302
    assert sign_in(app.test_client(), city.somu).status_code == 401
    assert sign_in(app.test_client(), city.somu, "a new and long password").status_code == 303


def test_wrong_password_and_every_post_without_csrf_token_are_refused(city_app):
    app, city = city_app
    client = app.test_client()
    wrong = sign_in(client, city.somu, password=WRONG)
    assert wrong.status_code == 401
    assert "メールアドレスまたはパスワードが違います" in text_of(wrong)
    unknown = sign_in(client, "nobody@example.org")
    assert unknown.status_code == 401
    no_token = client.post("/sign-in", data={"email": city.somu, "password": PASSWORD})
    assert no_token.status_code == 400
    client = signed_in(app, city.somu)
    forged = client.post(f"/alerts/{city.dx_alert}/handled", data={"csrf_token": "forged"})
    assert forged.status_code == 400
    assert client.post("/sign-out").status_code == 400
    assert '<li class="alert handled"' not in text_of(client.get("/alerts?show=all"))
    assert client.get("/pages").status_code == 200  # still signed in


def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_one_address_failing_on_an_account_locks_out_only_itself(city_app):
    app, city = city_app
    colleague = from_address(app, "192.0.2.1")
    for _ in range(5):
        assert sign_in(colleague, city.somu, password=WRONG).status_code == 401
    throttled = sign_in(colleague, city.somu)  # even the right password waits now
    assert throttled.status_code == 429
    assert 0 < int(throttled.headers["Retry-After"]) <= 15 * 60
    assert "しばらく受け付けません" in text_of(throttled)
    # The clerk, at their own desk, is not locked out by someone else's failures...
    assert sign_in(from_address(app, "192.0.2.2"), city.somu).status_code == 303
    # ...and the failing address may still sign in to another account...
    assert sign_in(from_address(app, "192.0.2.1"), city.kankyo).status_code == 303
    # ...but one address trying many accounts is stopped (20 failures in all).
    for number in range(15):
        assert sign_in(colleague, f"someone{number}@example.org").status_code == 401
    assert sign_in(colleague, city.admin).status_code == 429


def test_the_throttle_keeps_no_address_of_whoever_failed(city_app, sessions):
    app, city = city_app
    for address in ("198.51.100.23", "2001:db8:85a3::8a2e:370:7334"):
        assert sign_in(from_address(app, address), city.somu, WRONG).status_code == 401
    with sessions() as session:
        keys = session.scalars(select(SignInFailure.key)).all()
    # Per client and per client and account, each under a keyed hash of the address.
    assert len(keys) == 4
    assert not any(part in key for key in keys for part in ("198.51.100", "2001:db8", "8a2e"))
    # Still per address: the same one five times is throttled, another is not.
    for _ in range(4):
        assert sign_in(from_address(app, "198.51.100.23"), city.somu, WRONG).status_code == 401
    assert sign_in(from_address(app, "198.51.100.23"), city.somu).status_code == 429
    assert sign_in(from_address(app, "198.51.100.24"), city.somu).status_code == 303


def test_failures_from_three_addresses_lock_the_account_for_everyone(city_app):
    app, city = city_app
    # A mistake the clerk then corrects does not count against the account.
    clerk = from_address(app, "192.0.2.50")
    assert sign_in(clerk, city.somu, WRONG).status_code == 401
    assert sign_in(clerk, city.somu).status_code == 303
    for address in ("203.0.113.1", "203.0.113.2"):
        assert sign_in(from_address(app, address), city.somu, WRONG).status_code == 401
    assert sign_in(from_address(app, "192.0.2.51"), city.somu).status_code == 303
    # A third address: a guess spread over addresses, the account waits.
    assert sign_in(from_address(app, "203.0.113.3"), city.somu, WRONG).status_code == 401
    locked = sign_in(from_address(app, "192.0.2.52"), city.somu)
    assert locked.status_code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert sign_in(from_address(app, "192.0.2.52"), city.kankyo).status_code == 303


def test_the_throttle_trusts_forwarded_for_only_behind_a_trusted_proxy(city_app, dashboard_app_for):
    direct, city = city_app

    def client_of(app, forwarded_for: str):
        client = app.test_client()
        client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
        return client

    def lock_out(client, who: str) -> None:
        for number in range(20):
            assert sign_in(client, f"{who}{number}@example.org").status_code == 401
        assert sign_in(client, city.admin).status_code == 429

    behind = dashboard_app_for(KOE_TRUSTED_PROXIES="1")
    lock_out(client_of(behind, "198.51.100.1"), "behind")
    # Another client behind the same proxy is someone else.
    assert sign_in(client_of(behind, "198.51.100.2"), city.somu).status_code == 303

    lock_out(client_of(direct, "198.51.100.3"), "direct")
    # Without a trusted proxy the header is anyone's to write: a new value is no way out.
    assert sign_in(client_of(direct, "198.51.100.4"), city.kankyo).status_code == 429


def test_a_division_sees_only_its_own_pages_and_alerts(city_app):
    app, city = city_app
    somu = signed_in(app, city.somu)
    listing = text_of(somu.get("/pages"))
    rows = re.findall(r'<tr data-page-id="([^"]+)"', listing)
    assert sorted(rows) == sorted([city.dx, city.xss, city.formula])
    assert "ごみの出し方" not in listing and "その他のページ" not in listing
    missing = somu.get("/pages/no-such-page")
    for path in (f"/pages/{city.gomi}", f"/pages/{city.unowned}", "/pages/no-such-page"):
        response = somu.get(path)
        assert response.status_code == 404
        # Another division's page looks exactly like one that does not exist.
        assert main_of(response) == main_of(missing)
    assert somu.get(f"/export/pages/{city.gomi}/daily.csv").status_code == 404
    alerts = text_of(somu.get("/alerts"))
    assert city.dx_alert in alerts and city.gomi_alert not in alerts
    token = csrf_of(somu, "/alerts")
    other = somu.post(f"/alerts/{city.gomi_alert}/handled", data={"csrf_token": token})
    assert other.status_code == 404
    overview = text_of(somu.get("/overview"))
    assert city.gomi not in overview and "ごみの出し方" not in overview

    kankyo = signed_in(app, city.kankyo)
    rows = re.findall(r'<tr data-page-id="([^"]+)"', text_of(kankyo.get("/pages")))
    assert rows == [city.gomi]
    admin = signed_in(app, city.admin)
    rows = re.findall(r'<tr data-page-id="([^"]+)"', text_of(admin.get("/pages")))
    assert sorted(rows) == sorted([city.dx, city.xss, city.formula, city.gomi, city.unowned])


def test_a_handled_record_is_only_ever_for_an_alert_the_account_may_see(city_app, sessions):
    app, city = city_app
    somu = signed_in(app, city.somu)
    token = csrf_of(somu, "/alerts")
    # An id that merely starts with one of the division's own alert ids is no alert.
    for alert_id in (city.dx_alert + "0", city.dx_alert + "\x00", city.dx_alert[:-1]):
        response = somu.post(f"/alerts/{alert_id}/handled", data={"csrf_token": token})
        assert response.status_code == 404, alert_id
    with sessions() as session:
        assert session.scalars(select(AlertHandling.alert_id)).all() == []


def test_a_nul_in_a_form_is_refused_before_the_database(city_app):
    app, city = city_app
    # PostgreSQL text cannot hold a NUL: the form is refused, not a 500.
    assert sign_in(app.test_client(), "clerk\x00@somu.example").status_code == 400
    somu = signed_in(app, city.somu)
    note = {"csrf_token": csrf_of(somu, "/alerts"), "note": "直しました\x00"}
    assert somu.post(f"/alerts/{city.dx_alert}/handled", data=note).status_code == 400
    assert city.dx_alert in text_of(somu.get("/alerts?show=open"))


def test_numbers_in_the_query_are_checked_not_crashed_on(city_app):
    app, city = city_app
    somu = signed_in(app, city.somu)
    # "²" passes str.isdigit() but not int(); thousands of digits exceed int()'s limit.
    for bad in ("²", "9" * 5000, "-1", "1e3", " 7"):
        assert somu.get("/pages", query_string={"p": bad}).status_code == 200, bad
        daily = somu.get(f"/export/pages/{city.dx}/daily.csv", query_string={"days": bad})
        assert daily.status_code == 400, bad
        detail = somu.get(f"/api/v1/pages/{city.dx}", query_string={"days": bad}, headers=API)
        assert detail.status_code == 400, bad
        assert detail.get_json()["errors"]["days"], bad


def _cells(listing: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(page id, window) → (score, n) from the list's data attributes."""
    cells = {}
    for page_id, body in re.findall(r'<tr data-page-id="([^"]+)">(.*?)</tr>', listing, re.S):
        for window, score, n in re.findall(
            r'data-window="([^"]+)" data-score="([^"]*)" data-n="([^"]*)"', body
        ):
            cells[page_id, window] = (score, n)
    return cells


def test_the_list_shows_the_stats_api_numbers(city_app):
    app, city = city_app
    admin = signed_in(app, city.admin)
    cells = _cells(text_of(admin.get("/pages")))
    pages = api(admin, "/api/v1/pages")["pages"]
    assert len(cells) == 3 * len(pages) == 15
    for page in pages:
        for window, figures in page["windows"].items():
            score = "" if figures["score"] is None else str(figures["score"])
            assert cells[page["id"], window] == (score, str(figures["n"]))


def test_the_list_sorts_and_filters(city_app):
    app, city = city_app
    admin = signed_in(app, city.admin)
    pages = {p["id"]: p for p in api(admin, "/api/v1/pages")["pages"]}

    def order(query: str) -> list[str]:
        return re.findall(r'<tr data-page-id="([^"]+)"', text_of(admin.get("/pages?" + query)))

    by_score = sorted(pages, key=lambda p: pages[p]["windows"]["7d"]["score"])
    assert order("sort=score&window=7d&order=asc") == by_score
    by_n = sorted(pages, key=lambda p: pages[p]["windows"]["all"]["n"], reverse=True)
    assert order("sort=n&window=all&order=desc") == by_n
    assert order("sort=title&order=asc") == sorted(
        pages, key=lambda p: pages[p]["title"].casefold()
    )
    assert order("department=環境部") == [city.gomi]
    assert sorted(order("division=somu-dx")) == sorted([city.dx, city.xss, city.formula])
    assert order("division=fallback") == [city.unowned]
    assert order("q=DX取組") == [city.dx]
    assert order("q=KURASHI/GOMI") == [city.gomi]  # the URL, any case
    assert order("q=nothing-matches") == []


def test_the_list_pages_with_previous_and_next_links(city_app, monkeypatch):
    app, city = city_app
    monkeypatch.setattr("aggregator.dashboard.views.PAGE_SIZE", 2)
    admin = signed_in(app, city.admin)
    everything = re.findall(r'<tr data-page-id="([^"]+)"', text_of(admin.get("/pages?sort=title")))
    shown, path, positions = [], "/pages?sort=title", []
    while path:
        body = text_of(admin.get(path))
        shown += re.findall(r'<tr data-page-id="([^"]+)"', body)
        positions += re.findall(r'<span aria-current="page">([^<]+)</span>', body)
        found = re.search(r'<a href="([^"]+)" rel="next">', body)
        path = html.unescape(found.group(1)) if found else None
    assert len(everything) == 2  # the first page of the same order
    assert shown[:2] == everything and sorted(shown) == sorted(
        [city.dx, city.xss, city.formula, city.gomi, city.unowned]
    )
    assert positions == ["1 / 3ページ", "2 / 3ページ", "3 / 3ページ"]
    assert 'href="/pages?sort=title&amp;p=2" rel="prev"' in body
    assert '<nav class="pager" aria-label="ページ送り">' in body


def _points(detail: str, question: str) -> list[tuple[str, str, str]]:
    section = re.search(
        rf'<section class="chart" data-question="{question}".*?</section>', detail, re.S
    ).group(0)
    return re.findall(r'data-start="([^"]+)" data-n="([^"]+)" data-score="([^"]*)"', section)


def test_the_charts_points_and_n_equal_the_stats_api(city_app):
    app, city = city_app
    somu = signed_in(app, city.somu)
    daily = api(somu, f"/api/v1/pages/{city.dx}?days=84")["daily"]
    detail = text_of(somu.get(f"/pages/{city.dx}"))
    for question in ("findability", "clarity", "usefulness"):
        expected = [
            (
                d["day"],
                str(d["questions"][question]["n"]),
                ""
                if d["questions"][question]["score"] is None
                else str(d["questions"][question]["score"]),
            )
            for d in daily[-28:]
        ]
        assert _points(detail, question) == expected
    # Weekly: each point is the sum of its seven days, scored the same way.
    weekly = text_of(somu.get(f"/pages/{city.dx}?period=weekly"))
    points = _points(weekly, "clarity")
    assert len(points) == 12
    for index, (start, n, score) in enumerate(points):
        week = daily[index * 7 : index * 7 + 7]
        assert start == week[0]["day"]
        yes, neutral, no = (
            sum(d["questions"]["clarity"][a] for d in week) for a in ("yes", "neutral", "no")
        )
        assert int(n) == yes + neutral + no
        assert float(score) == round((yes + 0.5 * neutral) / int(n) * 100, 1)
    # The windows table shows the API's intervals.
    windows = api(somu, f"/api/v1/pages/{city.dx}")["windows"]
    clarity = windows["28d"]["questions"]["clarity"]
    assert f"{clarity['wilson_low']:.1f}–{clarity['wilson_high']:.1f}" in detail


def test_numbers_and_dates_read_the_japanese_way(city_app, sessions):
    app, city = city_app
    today = datetime.now(app.extensions["aggregator.settings"].timezone).date()
    with transaction(sessions) as session:
        session.get(DailyCount, (city.dx, today, "clarity")).yes += 1234
    somu = signed_in(app, city.somu)
    detail = text_of(somu.get(f"/pages/{city.dx}"))
    n = api(somu, f"/api/v1/pages/{city.dx}?days=1")["daily"][-1]["questions"]["clarity"]["n"]
    assert n > 1234
    clarity = re.search(r'data-question="clarity".*?</section>', detail, re.S).group(0)
    # Under the day's point and in the table beside the chart.
    assert f'class="n" text-anchor="middle">{n:,}</text>' in clarity
    assert f"<td>{n:,}</td>" in clarity
    assert f"{today.year}年{today.month}月{today.day}日時点" in detail
    english = text_of(somu.get(f"/pages/{city.dx}?lang=en"))
    assert f"as of {today.day} {today:%b %Y}" in english


def test_the_overview_plots_every_visible_page_against_its_limits(city_app):
    app, city = city_app
    somu = signed_in(app, city.somu)
    overview = text_of(somu.get("/overview?window=all"))
    pages = api(somu, "/api/v1/pages")["pages"]
    mine = [p for p in pages if p["id"] in (city.dx, city.xss, city.formula)]
    section = re.search(r'data-question="clarity".*?</section>', overview, re.S).group(0)
    dots = re.findall(r'data-page-id="([^"]+)" data-n="(\d+)" data-score="([^"]+)"', section)
    assert sorted(dots) == sorted(
        (p["id"], str(q["n"]), str(q["score"]))
        for p in mine
        for q in [p["windows"]["all"]["questions"]["clarity"]]
    )
    statuses = re.findall(r'data-page-id="[^"]+" data-status="([^"]+)"', section)
    assert len(statuses) == 3 and set(statuses) <= {"low3", "low2", "within", "high2", "high3"}
    # The mean (and so the limits) pools the division's own answers only: another
    # division's pages cannot be read off the funnel.
    tallies = [p["windows"]["all"]["questions"]["clarity"] for p in mine]
    pooled = sum(t["yes"] + t["neutral"] / 2 for t in tallies) / sum(t["n"] for t in tallies)
    assert f"平均 {pooled * 100:.1f}<" in section
    everyone = [p["windows"]["all"]["questions"]["clarity"] for p in pages]
    whole_city = sum(t["yes"] + t["neutral"] / 2 for t in everyone) / sum(t["n"] for t in everyone)
    assert f"{whole_city * 100:.1f}" != f"{pooled * 100:.1f}"  # the seed tells them apart


def test_marking_an_alert_handled_keeps_who_when_and_the_note(city_app):
    app, city = city_app
    somu = signed_in(app, city.somu)
    page = text_of(somu.get(f"/pages/{city.dx}"))
    assert "低下" in page and "回復" in page  # the drop and the recovery notice
    assert "わかりやすさ: 84.4 (n=80) → 27.5 (n=20)" in page  # the drop
    assert "わかりやすさ: 84.4 (n=80) → 85.4 (n=24)" in page  # back near its baseline
    token = csrf_of(somu, "/alerts")
    too_long = somu.post(
        f"/alerts/{city.dx_alert}/handled", data={"csrf_token": token, "note": "x" * 1001}
    )
    assert too_long.status_code == 422
    assert "1000文字以内" in text_of(too_long)
    # The clerk's text is kept in the form to shorten, on the list it was written on.
    kept = somu.post(
        f"/alerts/{city.dx_alert}/handled",
        data={"csrf_token": token, "note": "長い" * 501, "next": "/alerts?show=all"},
    )
    assert kept.status_code == 422
    assert f">{'長い' * 501}</textarea>" in text_of(kept)
    assert 'data-show="all" aria-current="page"' in text_of(kept)
    note = "<b>見出し</b>を修正しました"
    response = somu.post(
        f"/alerts/{city.dx_alert}/handled",
        data={"csrf_token": token, "note": note, "next": f"/pages/{city.dx}"},
    )
    assert response.status_code == 303 and response.headers["Location"] == f"/pages/{city.dx}"
    again = somu.post(
        f"/alerts/{city.dx_alert}/handled", data={"csrf_token": token, "note": "later"}
    )
    assert again.status_code == 303
    listing = text_of(somu.get("/alerts?show=handled"))
    [item] = [i for i in listing.split('<li class="alert ') if f'id="alert-{city.dx_alert}"' in i]
    assert f"対応済み ({city.somu}、" in item
    assert html.escape(note) in item and "later" not in item  # the first record stays
    open_only = text_of(somu.get("/alerts?show=open"))
    assert city.dx_alert not in open_only and city.dx_recovery in open_only
    # The page's marker counts only the open one now.
    assert "未対応のアラート 1件" in text_of(somu.get("/pages"))


def _add_alerts(sessions, page_id: str, count: int, handled_every: int) -> list[str]:
    """`count` drop alerts for the page, a minute apart, every `handled_every`-th handled."""
    ids = []
    start = datetime.now(UTC) - timedelta(days=30)
    with transaction(sessions) as session:
        for number in range(count):
            alert_id = str(uuid.uuid4())
            event = {"type": "koe.alerts.v1", "id": alert_id, "data": {"kind": "drop"}}
            session.add(
                AlertOutbox(
                    alert_id=alert_id,
                    page_id=page_id,
                    payload=json.dumps(event),
                    created_at=start + timedelta(minutes=number),
                    sent_at=start,
                )
            )
            if number % handled_every == 0:
                session.add(
                    AlertHandling(
                        alert_id=alert_id, handled_by="x@city.example", handled_at=start, note=""
                    )
                )
            ids.append(alert_id)
    return ids


def _alert_pages(client, path: str) -> tuple[list[str], list[str]]:
    """Follow rel=next from `path`: (alert ids in the order shown, each page's text)."""
    shown, pages = [], []
    while path:
        body = text_of(client.get(path))
        pages.append(body)
        shown += re.findall(r'<li class="alert [a-z]+" id="alert-([0-9a-f-]+)"', body)
        found = re.search(r'<a href="([^"]+)" rel="next">', body)
        path = html.unescape(found.group(1)) if found else None
    return shown, pages


def test_alerts_are_paged_fifty_at_a_time_within_the_division(city_app, sessions):
    app, city = city_app
    # Beside the seed's two open alerts for the division's page and one for another's.
    mine = _add_alerts(sessions, city.dx, 118, handled_every=4)  # 30 handled
    theirs = _add_alerts(sessions, city.gomi, 70, handled_every=7)  # 10 handled
    somu = signed_in(app, city.somu)

    first = text_of(somu.get("/alerts"))  # open alerts first: the division's work to do
    assert 'data-show="open" aria-current="page">未対応 (90件)</a>' in first
    assert ">対応済み (30件)</a>" in first and ">すべて (120件)</a>" in first
    assert "90件中 1〜50件目" in first and "1 / 2ページ" in first
    assert 'href="/alerts?show=open&amp;page=2" rel="next">次のページ</a>' in first
    assert 'rel="prev"' not in first

    newest_first = [city.dx_recovery, city.dx_alert, *reversed(mine)]  # the seed is 2 h old
    handled = set(mine[::4])
    for show, expected in [
        ("open", [a for a in newest_first if a not in handled]),
        ("handled", [a for a in newest_first if a in handled]),
        ("all", newest_first),
    ]:
        shown, pages = _alert_pages(somu, f"/alerts?show={show}")
        # Every alert of the division once, in order, fifty a page; no other division's.
        assert shown == expected, show
        assert [len(re.findall(r'<li class="alert ', p)) for p in pages[:-1]] == [50] * (
            len(pages) - 1
        )
        assert all(a not in p for p in pages for a in [*theirs, city.gomi_alert])
    last = text_of(somu.get("/alerts?show=all&page=3"))
    assert "120件中 101〜120件目" in last and "3 / 3ページ" in last
    assert 'href="/alerts?show=all&amp;page=2" rel="prev">前のページ</a>' in last
    assert 'href="/alerts?show=all&amp;page=1">最初のページ</a>' in last
    # A page past the end shows the last one; a page that is no number, the first.
    assert main_of(somu.get("/alerts?show=all&page=99")) == main_of(
        somu.get("/alerts?show=all&page=3")
    )
    assert "120件中 1〜50件目" in text_of(somu.get("/alerts?show=all&page=x"))

    kankyo = text_of(signed_in(app, city.kankyo).get("/alerts?show=all"))
    assert ">未対応 (61件)</a>" in kankyo and ">すべて (71件)</a>" in kankyo
    admin = signed_in(app, city.admin)
    english = text_of(admin.get("/alerts?lang=en"))
    assert ">Open (151)</a>" in english and ">All (191)</a>" in english
    assert "1–50 of 151" in english and "Page 1 of 4" in english
    assert 'rel="next">Next page</a>' in english and ">Last page</a>" in english


def test_a_title_with_markup_is_text_everywhere(city_app):
    app, city = city_app
    somu = signed_in(app, city.somu)
    escaped = html.escape(city.xss_title, quote=False)
    for path in ("/pages", f"/pages/{city.xss}", "/overview?window=all"):
        body = text_of(somu.get(path))
        assert "<script>alert(1)" not in body and "<img src=x" not in body, path
        assert escaped in body, path


def test_english_on_request_and_remembered(city_app):
    app, city = city_app
    client = app.test_client()
    assert ">Sign in</h1>" in text_of(client.get("/sign-in?lang=en"))
    assert sign_in(client, city.somu).status_code == 303
    listing = text_of(client.get("/pages"))
    assert '<html lang="en">' in listing and "Pages" in listing and "28 days" in listing
    assert '<html lang="ja">' in text_of(client.get("/pages?lang=ja"))
    assert "ページ一覧" in text_of(client.get("/pages"))


def test_pages_are_private_and_run_no_script(city_app):
    app, city = city_app
    response = signed_in(app, city.somu).get("/pages")
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "<script" not in text_of(response)
