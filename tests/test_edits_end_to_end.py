"""Did my edit help? on the whole stack: a page's answers before, a changed last-modified
date confirmed by five sources, answers after; the clerk's page view in Chromium marks
the edit on the charts and compares before and after; four weeks on, the division gets
one email with the numbers.

Time is injected, not waited for: the answers are events put straight on the feedback
topic, backdated as the API cannot date them (as test_detector_end_to_end.py does), each
citizen their own source; the edit is 30 days back, so its four weeks after are over.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from aggregator.edits.models import PageModifiedVote
from in_browser import DESKTOP, PHONE, axe_violations
from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from koe_kit.db import make_engine
from support import CLERK_PASSWORD, SITE, drained, emails_per_alert, publish, submitted

pytestmark = pytest.mark.e2e
# KOE_SCREENSHOT_DIR=docs/screenshots saves the README's screenshot of a page's edit.
SCREENSHOTS = os.environ.get("KOE_SCREENSHOT_DIR")

TOPIC = "koe.feedback.submitted.v1"
CLERK = "clerk@somu.example"  # デジタル改革推進課, which owns the page
# Noon in Tokyo of the UTC date: every answer of a day lands on one city-local day.
NOON = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0)
URL = f"{SITE}/shisei/dx/edited.html"
TITLE = "マイナンバーカードの申請方法"
OLD = "2026-04-01"
EDIT = NOON.date() - timedelta(days=30)


def day_answers(back: int, values: list[str], modified: str) -> list[dict]:
    """One citizen per value `back` days ago, each on the page as of `modified`."""
    return [
        submitted(
            URL,
            {"clarity": value, "findability": "yes"},
            NOON - timedelta(days=back) + timedelta(seconds=i),
            title=TITLE,
            source=f"citizen {back} {i}",
            page_modified=modified,
        )
        for i, value in enumerate(values)
    ]


def test_an_edit_is_marked_compared_and_emailed_once_four_weeks_on(
    koe_factory, broker, smtp_server, chromium
):
    # Five sources to confirm a date (and to show a page), as a city runs it.
    koe = koe_factory(KOE_PAGE_MIN_SOURCES="5")
    koe.create_account(CLERK, "somu-dx")
    hard, clear = ["no", "no", "neutral", "yes", "no"], ["yes", "yes", "yes", "neutral", "no"]
    # 28 days before the edit: clarity poor, the page as of OLD. From the edit's day on,
    # five citizens a day see the new date and find the page clear.
    produced = [e for back in range(58, 30, -1) for e in day_answers(back, hard, OLD)]
    produced += [e for back in range(30, 0, -1) for e in day_answers(back, clear, EDIT.isoformat())]
    publish(broker.bootstrap, TOPIC, produced)
    page_id = page_id_for_url(canonical_url(URL))
    wait_until(lambda: koe.page_n(page_id) == len(produced), timeout_s=90, what="all counted")

    # A citizen today, through the API as the widget sends it, carries the date on too.
    answer = koe.submit(
        page_url=URL, page_modified=EDIT.isoformat(), answers={"clarity": "yes"}, locale="ja"
    )
    assert answer.status_code == 202, answer.text
    wait_until(lambda: koe.page_n(page_id) == len(produced) + 1, what="today's answer")
    engine = make_engine(koe.stack.service_env("aggregator")["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            votes = connection.execute(
                select(PageModifiedVote.modified, PageModifiedVote.sources).where(
                    PageModifiedVote.page_id == page_id
                )
            ).all()
    finally:
        engine.dispose()
    assert sorted(votes) == [(date.fromisoformat(OLD), 28 * 5), (EDIT, 30 * 5 + 1)]

    # Four weeks on: one email to the owning division, with the numbers.
    wait_until(lambda: len(smtp_server.messages) >= 1, timeout_s=60, what="the edit's email")
    drained(koe, broker.bootstrap)  # a second email, if the report went twice, is here
    [mail] = smtp_server.messages
    assert mail["Subject"] == f"【koe】ページ更新の効果: 良くなりました: {TITLE}"
    assert mail["To"] == "digital-kaikaku@city-tsu.example"
    assert list(emails_per_alert(smtp_server.messages).values()) == [1]
    text = mail.get_body(preferencelist=("plain",)).get_content()
    day = f"{EDIT.year}年{EDIT.month}月{EDIT.day}日"
    assert f"{day}にページが更新されてから4週間" in text
    assert "それまでの更新日: 2026年4月1日" in text
    # Clarity: (5 × 28 days) answers each side; 0.3 before, 0.7 after.
    assert "更新前 30.0点 (回答140件) → 更新後 70.0点 (回答140件)" in text
    assert "判定: 良くなりました" in text

    # The clerk's page view, in Chromium: the edit on the 12-week charts, the comparison.
    base = koe.url("aggregator", "")
    context = chromium.new_context(**DESKTOP, bypass_csp=True)  # only lets axe-core in
    page = context.new_page()
    page.goto(f"{base}/pages/{page_id}?period=weekly")
    page.fill("#email", CLERK)
    page.fill("#password", CLERK_PASSWORD)
    page.click("form.sign-in button[type=submit]")
    assert page.url.endswith(f"/pages/{page_id}?period=weekly")
    marks = page.locator(f'svg.series g.edit-mark[data-day="{EDIT.isoformat()}"]')
    assert marks.count() == 3  # one per question's chart
    # Drawn: a dashed line from the top of the plot to its foot, in the ink colour.
    line = page.locator("svg.series g.edit-mark line.edit").first
    assert line.bounding_box()["height"] > 100
    drawn = line.evaluate("e => [getComputedStyle(e).stroke, getComputedStyle(e).strokeDasharray]")
    assert drawn[0] == "rgb(31, 35, 40)" and drawn[1] != "none"
    edit = page.locator(f'section.edit[data-day="{EDIT.isoformat()}"]')
    assert edit.locator(".verdict").inner_text() == "良くなりました"
    clarity = edit.locator('tr[data-question="clarity"]')
    assert clarity.get_attribute("data-outcome") == "better"
    cells = clarity.locator("td").all_inner_texts()
    assert cells[0].startswith("30.0 (n=140)") and cells[1].startswith("70.0 (n=140)")
    assert cells[2].startswith("+40.0") and cells[3] == "良くなりました"
    assert edit.locator('tr[data-question="usefulness"]').get_attribute("data-outcome") == (
        "too_few"
    )
    assert axe_violations(page) == []
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "dashboard-edit-desktop.png"), full_page=True)
    # On a phone the comparison fits the screen (no sideways scrolling) and stays accessible.
    page.set_viewport_size(PHONE["viewport"])
    page.reload()
    assert edit.evaluate("e => e.scrollWidth <= e.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["viewport"]["width"]
    assert axe_violations(page) == []
    if SCREENSHOTS:
        edit.screenshot(path=str(Path(SCREENSHOTS) / "dashboard-edit-phone.png"))
    context.close()
