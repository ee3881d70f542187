"""The drop detector on the whole stack: a page's four months as
events on the feedback topic, the daily judgement of its completed days, one email to its
division, and the dashboard's page view showing the windows the alert was judged on.

The answers are events put straight on the feedback topic, backdated as the API cannot
date them, each citizen their own source.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest

from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from support import SITE, city_noon, drained, emails_per_alert, publish, submitted

pytestmark = pytest.mark.e2e

TOPIC = "koe.feedback.submitted.v1"
CLERK = "clerk@somu.example"  # デジタル改革推進課, which owns the page
URL = f"{SITE}/shisei/dx/detector.html"
TITLE = "検知器のページ"


def day_answers(back: int, values: list[str]) -> list[dict]:
    """One citizen per value, `back` days ago."""
    return [
        submitted(
            URL,
            {"clarity": value, "findability": "yes"},
            city_noon(back) + timedelta(seconds=i),
            title=TITLE,
            source=f"citizen {back} {i}",
        )
        for i, value in enumerate(values)
    ]


def test_a_history_on_the_topic_is_judged_daily_and_emails_its_drop_once(
    koe_factory, broker, smtp_server
):
    koe = koe_factory()
    koe.create_account(CLERK, "somu-dx")
    good, bad = ["yes", "yes", "yes", "neutral"], ["no", "no", "no", "neutral"]
    # 120 good days, four bad ones ending yesterday, and one answer today (so yesterday
    # is a completed day for the page).
    produced = [e for back in range(124, 4, -1) for e in day_answers(back, good)]
    produced += [e for back in range(4, 0, -1) for e in day_answers(back, bad)]
    produced += day_answers(0, ["yes"])
    publish(broker.bootstrap, TOPIC, produced)
    page_id = page_id_for_url(canonical_url(URL))
    wait_until(lambda: koe.page_n(page_id) == len(produced), timeout_s=90, what="all counted")

    wait_until(lambda: len(smtp_server.messages) >= 1, timeout_s=60, what="the drop email")
    drained(koe, broker.bootstrap)  # a second email, if the alert went twice, is here
    [mail] = smtp_server.messages
    assert TITLE in mail["Subject"] and mail["To"] == "digital-kaikaku@city-tsu.example"
    [(alert_id, count)] = emails_per_alert(smtp_server.messages).items()
    assert count == 1

    # The clerk's page view shows the windows it was judged on: the reference of 84
    # days ending 14 days before the alarm, and the chart's 28 days up to it (a day of
    # the last three: judged the day after, never older than KOE_ALERT_MAX_AGE_DAYS).
    clerk = koe.signed_in(CLERK)
    view = clerk.get(koe.url("aggregator", f"/pages/{page_id}"), timeout=10).text
    [shown] = WINDOWS.findall(view)
    alarm = date.fromisoformat(_iso(shown[3]))
    today = city_noon().date()
    assert today - timedelta(days=3) <= alarm < today
    assert [_iso(d) for d in shown] == [
        (alarm - timedelta(days=days)).isoformat() for days in (97, 14, 27, 0)
    ]
    assert alert_id in view
    assert "直近の日ほど重い加重スコア" in view  # and the chart's own figures


WINDOWS = re.compile(r'<p class="windows">比較: (\S+?)〜(\S+?) と (\S+?)〜(\S+?)</p>')


def _iso(japanese: str) -> str:
    year, month, day = (int(x) for x in re.findall(r"\d+", japanese))
    return date(year, month, day).isoformat()
