"""The dashboard's small courtesies in Chromium (issue 15): a confirmation after an alert is
handled, the email kept after a wrong password, a 404 page a person can read, "1 open
alert", whose page an admin's alert is, two pages of one title told apart, and a pages
list a phone can scroll through. Axe runs on every page these touch."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import requests

from aggregator.counting.models import DailyCount, DailyLocaleCount, DailyLocaleResponse
from aggregator.migrate import migrate
from aggregator.pages.models import Page
from in_browser import DESKTOP, PHONE, ServedApp, axe_violations, sign_in
from koe_devkit.testing import running
from koe_kit.db import make_engine, session_factory, transaction

SITE = "https://www.info.city.tsu.mie.jp"
SAME_TITLE = "よくある質問"
FAQ = "u-0000000000000101"


def _add_pages(sessions, today, pages: list[tuple[str, str, str]]) -> None:
    """Shown pages (id, url, title) with 28 days of middling answers each."""
    seen = datetime(2026, 1, 1, tzinfo=UTC)
    with transaction(sessions) as session:
        for number, (page_id, url, title) in enumerate(pages):
            session.add(
                Page(
                    id=page_id,
                    url=url,
                    title=title,
                    title_from_list=True,
                    visible=True,
                    first_seen=seen,
                    # Answered up to today (below): none is a quiet page (page_list.py),
                    # whatever year the test runs in.
                    last_seen=datetime.now(UTC),
                )
            )
            for back in range(28):
                for offset, question in enumerate(("findability", "clarity", "usefulness")):
                    session.add(
                        DailyCount(
                            page_id=page_id,
                            day=today - timedelta(days=back),
                            question=question,
                            yes=1 + (back + offset + number) % 3,
                            neutral=back % 2,
                            no=(back + number) % 2,
                        )
                    )


@pytest.fixture
def live(new_pg_database, dashboard_settings_for_url, city_seeder):
    """(base URL, city): the seeded city plus two pages titled alike (one division's FAQ
    and another's) and enough of the division's pages for nine in its list."""
    from aggregator.app import create_app

    url = new_pg_database()
    migrate(url)
    app = create_app(dashboard_settings_for_url(url))
    engine = make_engine(url)
    sessions = session_factory(engine)
    today = datetime.now(app.extensions["aggregator.settings"].timezone).date()
    city = city_seeder(sessions, today)
    _add_pages(
        sessions,
        today,
        [
            (FAQ, f"{SITE}/shisei/dx/faq.html", SAME_TITLE),
            ("u-0000000000000102", f"{SITE}/kurashi/gomi/faq.html", SAME_TITLE),
        ]
        + [
            (f"u-00000000000002{n:02d}", f"{SITE}/shisei/dx/{n}.html", f"DXのお知らせ {n}")
            for n in range(5)
        ],
    )
    # Four answers in Portuguese to the DX page today, and one to its FAQ.
    with transaction(sessions) as session:
        for page_id, clarity, responses in ((city.dx, (2, 0, 2), 4), (FAQ, (1, 0, 0), 1)):
            session.add(
                DailyLocaleCount(
                    page_id=page_id, day=today, locale="pt", question="clarity",
                    yes=clarity[0], neutral=clarity[1], no=clarity[2],
                )
            )  # fmt: skip
            session.add(
                DailyLocaleResponse(page_id=page_id, day=today, locale="pt", responses=responses)
            )
    server = ServedApp(app)
    with running(server):
        yield server.url, city
    app.extensions["koe.engine"].dispose()
    engine.dispose()


def test_marking_an_alert_handled_says_so(chromium, live):
    base, city = live
    page = chromium.new_context(**DESKTOP, bypass_csp=True).new_page()
    page.goto(f"{base}/sign-in?next=/alerts")
    sign_in(page, city.somu, city.password)
    page.locator(f"#alert-{city.dx_alert} button").click()
    assert page.get_by_role("status").inner_text() == (
        "アラートを対応済みにしました。「対応済み」の一覧で確認できます。"
    )
    assert axe_violations(page) == []
    # Said once: the next page is quiet again.
    page.reload()
    assert page.get_by_role("status").count() == 0
    page.context.close()


def test_a_wrong_password_keeps_the_email(chromium, live):
    base, city = live
    page = chromium.new_context(**DESKTOP, bypass_csp=True).new_page()
    page.goto(f"{base}/sign-in")
    sign_in(page, city.somu, "not the password")
    assert page.get_by_role("alert").inner_text() == "メールアドレスまたはパスワードが違います。"
    assert page.input_value("#email") == city.somu
    assert page.input_value("#password") == ""
    assert axe_violations(page) == []
    # Only the password needs typing again.
    page.fill("#password", city.password)
    page.click("form.sign-in button[type=submit]")
    assert page.url == f"{base}/pages"
    page.context.close()


def test_an_unknown_url_is_a_404_page_a_person_can_read(chromium, live):
    base, city = live
    page = chromium.new_context(**DESKTOP, bypass_csp=True).new_page()
    response = page.goto(f"{base}/no/such/page")
    assert response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    assert page.locator("html").get_attribute("lang") == "ja"
    assert page.locator("h1").inner_text() == "ページが見つかりません"
    assert axe_violations(page) == []
    page.goto(f"{base}/no/such/page?lang=en")
    assert page.locator("h1").inner_text() == "Page not found"
    # Signed in, it leads back to the list.
    page.goto(f"{base}/sign-in?lang=ja")
    sign_in(page, city.somu, city.password)
    page.goto(f"{base}/pagess")
    page.get_by_role("link", name="ページ一覧へ戻る").click()
    assert page.url == f"{base}/pages"
    page.context.close()
    # Programs keep their JSON, and with it the API's headers.
    answer = requests.get(f"{base}/api/v1/no-such-thing", timeout=10)
    assert answer.status_code == 404
    assert answer.json()["error"] == "Not Found"


def test_one_open_alert_is_singular_in_english(chromium, live):
    base, city = live
    page = chromium.new_context(**DESKTOP, bypass_csp=True).new_page()
    page.goto(f"{base}/sign-in?lang=en")
    sign_in(page, city.kankyo, city.password)
    assert page.locator(f'tr[data-page-id="{city.gomi}"] a.badge').inner_text() == ("1 open alert")
    assert page.locator("p.meta").first.inner_text().endswith("· 2 pages")
    assert axe_violations(page) == []
    page.context.close()


def test_the_admins_alert_list_names_the_owning_division(chromium, live):
    base, city = live
    page = chromium.new_context(**DESKTOP, bypass_csp=True).new_page()
    page.goto(f"{base}/sign-in?next=/alerts")
    sign_in(page, city.admin, city.password)
    owners = {
        alert: page.locator(f"#alert-{alert} .owner").inner_text()
        for alert in (city.dx_alert, city.gomi_alert)
    }
    assert owners == {
        city.dx_alert: "課: 総務部 デジタル改革推進課",
        city.gomi_alert: "課: 環境部 環境政策課",
    }
    assert axe_violations(page) == []
    page.context.close()


def test_the_funnel_table_tells_two_pages_of_one_title_apart(chromium, live):
    base, city = live
    page = chromium.new_context(**DESKTOP, bypass_csp=True).new_page()
    page.goto(f"{base}/sign-in?next=/overview")
    sign_in(page, city.admin, city.password)
    section = page.locator('section[data-question="clarity"]')
    section.locator("summary").click()
    rows = section.locator("table.chart-data tbody tr").filter(has_text=SAME_TITLE)
    assert rows.count() == 2
    assert sorted(rows.locator(".url").all_inner_texts()) == [
        "/kurashi/gomi/faq.html",
        "/shisei/dx/faq.html",
    ]
    assert axe_violations(page) == []
    page.context.close()


def test_the_pages_list_on_a_phone_shows_each_page_questions_once(chromium, live):
    base, city = live
    phone = PHONE | {"viewport": {"width": 390, "height": 844}}
    page = chromium.new_context(**phone, bypass_csp=True).new_page()
    page.goto(f"{base}/sign-in")
    sign_in(page, city.somu, city.password)
    assert page.locator("tr[data-page-id]").count() == 9
    # The questions are shown for the window the list is sorted by, not for all three.
    shown = page.eval_on_selector_all(
        "tr[data-page-id]",
        "rows => rows.map(r => [...r.querySelectorAll('ul.questions')]"
        ".filter(u => u.offsetParent !== null).length)",
    )
    height = page.evaluate("document.querySelector('table.pages').offsetHeight")
    print(f"pages list, 9 pages at 390 px: {height} px")  # the note's before/after figures
    assert shown == [1] * 9
    page.goto(f"{base}/pages?window=7d")
    visible = page.eval_on_selector_all(
        "tr[data-page-id] ul.questions", "us => us.map(u => u.offsetParent !== null)"
    )
    windows = page.eval_on_selector_all(
        "tr[data-page-id] td[data-window]", "ts => ts.map(t => t.dataset.window)"
    )
    assert {w for w, seen in zip(windows, visible, strict=True) if seen} == {"7d"}
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert axe_violations(page) == []
    page.context.close()


def test_the_pages_list_and_csv_by_the_language_answered_in(chromium, live):
    base, city = live
    page = chromium.new_context(**DESKTOP, bypass_csp=True).new_page()
    page.goto(f"{base}/sign-in")
    sign_in(page, city.somu, city.password)
    page.select_option("#f-locale", "pt")
    page.click("form.filters button[type=submit]")
    # Only the pages answered in Portuguese, with those answers' figures.
    assert page.eval_on_selector_all(
        "tr[data-page-id]", "rows => rows.map(r => r.dataset.pageId).sort()"
    ) == sorted([city.dx, FAQ])
    cell = page.locator(f'tr[data-page-id="{city.dx}"] td[data-window="28d"]')
    assert (cell.get_attribute("data-n"), cell.get_attribute("data-score")) == ("4", "50.0")
    assert "Portuguêsで表示したアンケートへの回答だけ" in page.locator("#locale-note").inner_text()
    # The trend too: Portuguese answers came this week only.
    trend = page.locator(f'tr[data-page-id="{city.dx}"] svg.spark').get_attribute("aria-label")
    assert trend.endswith(": " + ", ".join(["–"] * 11 + ["50.0"])), trend
    assert axe_violations(page) == []
    # A page's own view splits its scores by language, each with n and an interval.
    page.goto(f"{base}/pages/{city.dx}")
    row = page.locator('#locales tr[data-locale="pt"][data-window="28d"]')
    assert "n=4" in row.inner_text()
    assert "95%信頼区間" in row.locator("td").nth(2).inner_text()  # clarity: 2 of 4 yes
    page.goto(f"{base}/pages?locale=pt")
    page.select_option("#f-locale", "ko")
    page.click("form.filters button[type=submit]")
    assert page.locator("tr[data-page-id]").count() == 0

    # The CSV: the same filter, and a part per language; both encodings decode.
    for query, codec in (("locale=pt", "utf-8-sig"), ("locale=each&encoding=shift_jis", "cp932")):
        answer = page.request.get(f"{base}/export/pages.csv?{query}")
        assert answer.status == 200
        rows = list(csv.reader(io.StringIO(answer.body().decode(codec))))
        assert rows[0][:2] == ["言語", "ページID"]
        month = {(r[0], r[1]): r for r in rows[1:] if r[6] == "28日間"}
        assert set(month) == {("pt", city.dx), ("pt", FAQ)}
        assert month["pt", city.dx][9:11] == ["4", "50.0"]
    assert page.request.get(f"{base}/export/pages.csv?locale=xx").status == 400
    page.context.close()
