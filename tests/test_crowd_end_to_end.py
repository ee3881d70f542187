"""Alerts need a crowd, on the whole stack (every process, the broker, PostgreSQL, an SMTP
server): a drop one source injected is held for an admin and emails nobody; a drop many
citizens report emails its division once; an admin's release sends exactly one email, a
dismissal none; a clerk can neither see nor release held alerts.

Histories are events put straight on the feedback topic, backdated over months as the
API cannot date them, each with its source (one address on one day). The drop detector
judges completed days only: a page's answer today makes its yesterday complete. (A
forgery posted over HTTP today is judged tomorrow; tests/test_held_alerts.py and
services' unit tests judge such days with injected time.)
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from support import SITE, Koe, city_noon, drained, emails_per_alert, publish, submitted

pytestmark = pytest.mark.e2e

TOPIC = "koe.feedback.submitted.v1"
ADMIN = "admin@city.example"
CLERK = "clerk@somu.example"  # デジタル改革推進課, which owns every page below
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HELD = re.compile(r'data-alert-id="([0-9a-f-]{36})" data-reason="([a-z_]+)"')


def page(name: str) -> str:
    return f"{SITE}/shisei/dx/{name}.html"


def answers(url: str, title: str, backs, per_day: int, answer: str, sender=None) -> list[dict]:
    """`per_day` answers a day on the days `backs` days ago: from as many citizens (each
    their own source), or all from `sender` (one source string on every day: injected)."""
    return [
        submitted(
            url,
            {"clarity": answer, "findability": "yes"},
            city_noon(back) + timedelta(seconds=i),
            title=title,
            source=sender or f"{url} {back} {i}",
        )
        for back in backs
        for i in range(per_day)
    ]


GOOD_DAYS = 100  # the drop detector's reference needs 98 days behind the judged day


def good_weeks(url: str, title: str, ending: int) -> list[dict]:
    """100 days of three happy citizens a day, the last `ending` days ago."""
    return answers(url, title, range(ending + GOOD_DAYS - 1, ending - 1, -1), 3, "yes")


def send(koe: Koe, bootstrap: str, url: str, produced: list[dict], counted: int) -> None:
    """Publish, and wait until the page's stats show `counted` responses in all."""
    publish(bootstrap, TOPIC, produced)
    page_id = page_id_for_url(canonical_url(url))
    wait_until(lambda: koe.page_n(page_id) == counted, timeout_s=60, what=f"{url} counted")


def held_alerts(http, koe: Koe, show: str = "waiting") -> dict[str, str]:
    listing = http.get(koe.url("aggregator", f"/held?show={show}"), timeout=10).text
    return dict(HELD.findall(listing))


def decide(http, koe: Koe, alert_id: str, action: str) -> str:
    detail = http.get(koe.url("aggregator", f"/held/{alert_id}"), timeout=10).text
    token = CSRF.search(detail).group(1)
    done = http.post(
        koe.url("aggregator", f"/held/{alert_id}/{action}"), data={"csrf_token": token}, timeout=10
    )
    assert done.status_code == 200, done.status_code  # after the redirect to the detail
    return done.text


def assert_one_source(reason: str, detail: str) -> None:
    """A week of one source's answers, held: judged on the whole week (one source), or,
    where the consumer's batches cut the week, on its first days with a few citizens of
    the good weeks before (the one source holds most)."""
    share = int(re.search(r'<td data-figure="largest">(\d+)%</td>', detail).group(1))
    assert reason == "few_sources" or (reason == "one_source" and share > 34), (reason, share)


def test_a_forged_drop_is_held_and_an_admin_release_emails_once(koe_factory, broker, smtp_server):
    # The stack lifts the per-source cap (support.stack_env): the crowd check alone.
    koe = koe_factory()
    koe.create_account(ADMIN, None)
    admin = koe.signed_in(ADMIN)
    forged, real = page("forged"), page("real")

    # A page with good months, then three days of one source's "no", injected, up to
    # today (so the two days before are complete). Injected days arrive at once: the
    # alarm must be within KOE_ALERT_MAX_AGE_DAYS (3) of today to be news.
    send(koe, broker.bootstrap, forged, good_weeks(forged, "偽の低下", 3), 300)
    forger = answers(forged, "偽の低下", range(2, -1, -1), 10, "no", sender="forger")
    send(koe, broker.bootstrap, forged, forger, 330)
    # The same drop on another page, from four citizens a day, ending yesterday; one
    # answer today completes yesterday.
    send(koe, broker.bootstrap, real, good_weeks(real, "本当の低下", 4), 300)
    bad_days = answers(real, "本当の低下", range(3, 0, -1), 4, "no")
    send(koe, broker.bootstrap, real, bad_days + answers(real, "本当の低下", [0], 1, "yes"), 313)

    wait_until(lambda: len(smtp_server.messages) >= 1, timeout_s=90, what="the real drop")
    wait_until(lambda: len(held_alerts(admin, koe)) == 1, timeout_s=30, what="the held drop")
    drained(koe, broker.bootstrap)  # a mail for the held drop, or a second one, is here
    [mail] = smtp_server.messages
    assert "本当の低下" in mail["Subject"] and mail["To"] == "digital-kaikaku@city-tsu.example"
    [(held_id, reason)] = held_alerts(admin, koe).items()
    detail = admin.get(koe.url("aggregator", f"/held/{held_id}"), timeout=10).text
    assert "偽の低下" in detail
    assert_one_source(reason, detail)

    # The admin sends the forged drop after all: exactly one email, for it.
    confirmed = decide(admin, koe, held_id, "release")
    assert "送信しました。数秒のうちに課へメールが送られます。" in confirmed
    assert f"送信済み ({ADMIN}、" in confirmed
    wait_until(lambda: len(smtp_server.messages) == 2, timeout_s=30, what="the released email")
    decide(admin, koe, held_id, "release")  # pressed again: already decided
    drained(koe, broker.bootstrap)  # a second mail for the released drop is here
    sent = emails_per_alert(smtp_server.messages)
    assert len(smtp_server.messages) == 2 and sent[held_id] == 1
    assert "偽の低下" in smtp_server.messages[1]["Subject"]
    assert held_id in held_alerts(admin, koe, "released")


def test_a_dismissed_forgery_emails_nobody_and_a_pre_flood_buries_nothing(
    koe_factory, broker, smtp_server
):
    koe = koe_factory(KOE_COUNT_PER_SOURCE_DAY="3")  # the shipped cap
    koe.create_account(ADMIN, None)
    koe.create_account(CLERK, "somu-dx")
    admin, clerk = koe.signed_in(ADMIN), koe.signed_in(CLERK)
    injected, buried = page("injected"), page("buried")

    # One source's ten "no" a day for three days up to today: three a day count, one
    # source.
    send(koe, broker.bootstrap, injected, good_weeks(injected, "注入された低下", 3), 300)
    forger = answers(injected, "注入された低下", range(2, -1, -1), 10, "no", sender="forger")
    send(koe, broker.bootstrap, injected, forger, 309)
    # 300 "yes" from one source first, then four citizens' "no" a day up to today.
    flood = answers(buried, "埋もれない低下", [4], 300, "yes", sender="flooder")
    send(koe, broker.bootstrap, buried, flood, 3)
    send(koe, broker.bootstrap, buried, good_weeks(buried, "埋もれない低下", 4), 303)
    citizens = answers(buried, "埋もれない低下", range(3, -1, -1), 4, "no")
    send(koe, broker.bootstrap, buried, citizens, 319)

    wait_until(lambda: len(smtp_server.messages) >= 1, timeout_s=90, what="the real drop")
    wait_until(lambda: held_alerts(admin, koe), timeout_s=30, what="the held drop")
    [(held_id, reason)] = held_alerts(admin, koe).items()
    assert_one_source(reason, admin.get(koe.url("aggregator", f"/held/{held_id}"), timeout=10).text)
    overview = admin.get(koe.url("aggregator", "/overview"), timeout=10).text
    assert "確認待ちのアラートが1件あります。" in overview

    # The division's clerk: not in their alerts, and no way to see or send it.
    assert held_id not in clerk.get(koe.url("aggregator", "/alerts?show=all"), timeout=10).text
    assert clerk.get(koe.url("aggregator", f"/held/{held_id}"), timeout=10).status_code == 404
    token = CSRF.search(clerk.get(koe.url("aggregator", "/pages"), timeout=10).text).group(1)
    release = koe.url("aggregator", f"/held/{held_id}/release")
    assert clerk.post(release, data={"csrf_token": token}, timeout=10).status_code == 404

    confirmed = decide(admin, koe, held_id, "dismiss")
    assert "破棄しました。このアラートはメールされません。" in confirmed
    drained(koe, broker.bootstrap)  # a mail for the dismissed drop would be here
    [mail] = smtp_server.messages
    assert "埋もれない低下" in mail["Subject"]
    assert held_id not in emails_per_alert(smtp_server.messages)
    assert held_alerts(admin, koe) == {}
    assert held_id in held_alerts(admin, koe, "dismissed")
