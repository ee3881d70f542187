"""The dashboard in Chromium, as a clerk uses it: sign in, own pages only, charts that
agree with the stats API, an alert marked handled, markup never run, AA accessible.

KOE_SCREENSHOT_DIR=docs/screenshots makes these tests also save the README's screenshots.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

import pytest
import requests

from aggregator.migrate import migrate
from in_browser import DESKTOP, PHONE, ServedApp, axe_violations, sign_in
from koe_devkit.testing import running
from koe_kit.db import make_engine, session_factory

SCREENSHOTS = os.environ.get("KOE_SCREENSHOT_DIR")


@pytest.fixture
def live(new_pg_database, dashboard_settings_for_url, city_seeder, held_seeder):
    """(base URL, city): the dashboard served over http from a thread, on PostgreSQL,
    with two alerts held for review (only admins see them)."""
    from aggregator.app import create_app

    url = new_pg_database()
    migrate(url)
    app = create_app(dashboard_settings_for_url(url))
    engine = make_engine(url)
    today = datetime.now(app.extensions["aggregator.settings"].timezone).date()
    city = city_seeder(session_factory(engine), today)
    held_seeder(session_factory(engine), city, today)
    server = ServedApp(app)
    with running(server):
        yield server.url, city
    app.extensions["koe.engine"].dispose()
    engine.dispose()


def _shot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"dashboard-{name}.png"), full_page=True)


def _luminance(rgb: str) -> float:
    def channel(value: str) -> float:
        c = int(value) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in re.findall(r"\d+", rgb)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _focus_rings(page, stops: int) -> list[tuple[str, str, float]]:
    """Tab through the first `stops` stops: (element, outline style, the ring's contrast
    against the background around the element)."""
    rings = []
    for _ in range(stops):
        page.keyboard.press("Tab")
        tag, style, color, around = page.evaluate(
            """() => {
                const e = document.activeElement, s = getComputedStyle(e);
                let p = e.parentElement, bg = "rgb(255, 255, 255)";
                for (; p; p = p.parentElement) {
                    const c = getComputedStyle(p).backgroundColor;
                    if (c !== "rgba(0, 0, 0, 0)") { bg = c; break; }
                }
                return [e.tagName + " " + (e.textContent || "").trim().slice(0, 20),
                        s.outlineStyle, s.outlineColor, bg];
            }"""
        )
        light, dark = sorted((_luminance(color), _luminance(around)), reverse=True)
        rings.append((tag, style, (light + 0.05) / (dark + 0.05)))
    return rings


def test_a_clerk_signs_in_reads_the_charts_and_handles_an_alert(chromium, live):
    base, city = live
    # bypass_csp only lets axe-core in; escaping alone must keep the title's markup inert.
    context = chromium.new_context(**DESKTOP, bypass_csp=True)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    # Signed out: the page asks for sign-in, then goes where the clerk was going.
    page.goto(f"{base}/pages/{city.dx}")
    assert re.search(r"/sign-in\?next=", page.url)
    sign_in(page, city.somu, city.password)
    assert page.url == f"{base}/pages/{city.dx}"
    assert axe_violations(page) == []

    # Every chart point and its n are the stats API's daily figures.
    api = requests.get(
        f"{base}/api/v1/pages/{city.dx}?days=28",
        headers={"Authorization": f"Bearer {city.api_token}"},
        timeout=10,
    ).json()
    for question in ("findability", "clarity", "usefulness"):
        points = page.eval_on_selector_all(
            f'section[data-question="{question}"] g.pt',
            "gs => gs.map(g => [g.dataset.start, g.dataset.n, g.dataset.score])",
        )
        expected = [
            [d["day"], str(q["n"]), "" if q["score"] is None else str(q["score"])]
            for d in api["daily"]
            for q in [d["questions"][question]]
        ]
        assert points == expected
        # The n written under each point, as a reader sees it (1,234).
        shown = page.locator(f'section[data-question="{question}"] g.pt text.n').all_text_contents()
        assert shown == [f"{int(n):,}" for _day, n, _score in expected]
    page.click("details summary >> nth=1")
    assert page.locator('section[data-question="clarity"] table.chart-data tbody tr').count() == 28

    # The list: only the division's pages; the title with markup is text, never run.
    page.goto(f"{base}/pages")
    ids = page.eval_on_selector_all("tr[data-page-id]", "rows => rows.map(r => r.dataset.pageId)")
    assert sorted(ids) == sorted([city.dx, city.xss, city.formula])
    title = page.locator(f'tr[data-page-id="{city.xss}"] .page-title')
    assert title.inner_text() == city.xss_title
    assert page.locator("tbody img").count() == 0
    assert axe_violations(page) == []
    # Keyboard: every stop shows a focus ring a reader can see (3:1, WCAG 1.4.11).
    for element, style, contrast in _focus_rings(page, 12):
        assert style != "none" and contrast >= 3, (element, style, contrast)
    _shot(page, "list-desktop")
    page.goto(f"{base}/pages/{city.xss}")
    assert page.locator("h1").inner_text() == city.xss_title
    page.goto(f"{base}/overview?window=all")
    assert city.xss_title in page.locator("table.chart-data").first.text_content()
    assert axe_violations(page) == []

    # Another division's page is not there for this clerk.
    assert page.goto(f"{base}/pages/{city.gomi}").status == 404

    # Mark the drop alert handled, with a note: it leaves the open alerts (the list of
    # work to do) for the handled ones, with who and when.
    page.goto(f"{base}/alerts")
    assert axe_violations(page) == []
    alert = page.locator(f"#alert-{city.dx_alert}")
    alert.locator("textarea").fill("見出しと本文の順序を直しました")
    alert.locator("button").click()
    assert page.locator(f"#alert-{city.dx_alert}").count() == 0
    assert page.locator("nav.switch [aria-current=page]").inner_text() == "未対応 (1件)"
    page.get_by_role("link", name="対応済み (1件)").click()
    assert axe_violations(page) == []
    alert = page.locator(f"#alert-{city.dx_alert}")
    assert f"対応済み ({city.somu}、" in alert.inner_text()
    assert "見出しと本文の順序を直しました" in alert.inner_text()
    assert alert.locator("textarea").count() == 0
    assert dialogs == []

    # Sign out: the dashboard is closed again.
    page.click("header form button")
    assert "/sign-in" in page.url
    page.goto(f"{base}/pages")
    assert "/sign-in?next=" in page.url
    context.close()


def test_on_a_phone_in_japanese_and_english(chromium, live):
    base, city = live
    context = chromium.new_context(**PHONE, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{base}/sign-in")
    sign_in(page, city.admin, city.password)
    page.goto(f"{base}/pages?sort=score&order=asc")
    # A card per page: no sideways scrolling on a 320-pixel screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    assert axe_violations(page) == []
    _shot(page, "list-phone")
    page.goto(f"{base}/pages/{city.dx}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    assert axe_violations(page) == []
    _shot(page, "detail-phone")
    page.goto(f"{base}/overview")
    assert axe_violations(page) == []
    _shot(page, "overview-phone")
    page.goto(f"{base}/pages?lang=en")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("h1").inner_text() == "Pages"
    page.goto(f"{base}/alerts")  # remembered without ?lang
    assert page.locator("h1").inner_text() == "Alerts"
    assert axe_violations(page) == []
    context.close()
    if SCREENSHOTS:
        desktop = chromium.new_context(**DESKTOP)
        page = desktop.new_page()
        page.goto(f"{base}/sign-in")
        sign_in(page, city.admin, city.password)
        for name, path in [
            ("detail-desktop", f"/pages/{city.dx}"),
            ("overview-desktop", "/overview"),
            ("alerts-desktop", "/alerts"),
            ("list-desktop-en", "/pages?lang=en"),
        ]:
            page.goto(base + path)
            _shot(page, name)
        desktop.close()


def test_an_admin_reviews_and_sends_a_held_alert_by_keyboard_on_a_phone(chromium, live):
    base, city = live
    context = chromium.new_context(**PHONE, bypass_csp=True)
    page = context.new_page()
    page.goto(f"{base}/sign-in")
    sign_in(page, city.admin, city.password)
    page.goto(f"{base}/overview")
    page.get_by_role("link", name="確認待ちのアラートが2件あります。").click()
    assert page.locator("h1").inner_text() == "確認待ちのアラート"
    assert page.locator("li.alert").count() == 2
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    assert axe_violations(page) == []
    _shot(page, "held-phone")
    page.locator('li[data-reason="few_sources"]').get_by_role("link", name="詳しく見る").click()
    assert page.locator("table.per-day tbody tr").count() == 7
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    assert axe_violations(page) == []
    _shot(page, "held-detail-phone")
    # Keyboard only: focus 送信する and press Enter.
    page.get_by_role("button", name="送信する").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"done=released"))
    assert page.get_by_role("status").inner_text() == (
        "送信しました。数秒のうちに課へメールが送られます。"
    )
    assert f"送信済み ({city.admin}、" in page.locator("p.status").inner_text()
    assert page.get_by_role("button", name="送信する").count() == 0
    assert axe_violations(page) == []
    context.close()
