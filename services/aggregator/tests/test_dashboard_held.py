"""Alerts held for review on the dashboard, through Flask's test client on SQLite and
PostgreSQL: only admins see, send or dismiss them; the reason and the window's figures
in plain words; each decision once, with CSRF, confirmed, and its who and when kept."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta

from sqlalchemy import select

from aggregator.alerts.models import AlertOutbox

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"  # noqa: S105 (the seeded accounts' password)
FORGED = "0b7c2d1e-4f5a-5b6c-8d7e-9f0a1b2c3d4e"  # conftest.seed_held: one source's drop
BURST = "1c8d3e2f-5a6b-5c7d-9e8f-0a1b2c3d4e5f"  # and a burst on the XSS-titled page


def signed_in(app, email: str):
    client = app.test_client()
    form = client.get("/sign-in").get_data(as_text=True)
    data = {"email": email, "password": PASSWORD, "csrf_token": CSRF.search(form).group(1)}
    assert client.post("/sign-in", data=data).status_code == 303
    return client


def text(response) -> str:
    return response.get_data(as_text=True)


def held_city(city_app, sessions, held_seeder):
    app, city = city_app
    today = datetime.now(app.extensions["aggregator.settings"].timezone).date()
    assert held_seeder(sessions, city, today) == (FORGED, BURST)
    return app, city, today


def row(sessions, alert_id: str) -> AlertOutbox:
    with sessions() as session:
        return session.scalars(select(AlertOutbox).where(AlertOutbox.alert_id == alert_id)).one()


def test_admins_see_why_each_alert_was_held_with_the_windows_figures(
    city_app, sessions, held_seeder
):
    app, city, today = held_city(city_app, sessions, held_seeder)
    admin = signed_in(app, city.admin)

    listing = text(admin.get("/held"))
    assert f'data-alert-id="{FORGED}" data-reason="few_sources"' in listing
    assert f'data-alert-id="{BURST}" data-reason="burst"' in listing
    assert "確認待ち (2件)" in listing
    assert "回答した送信元が少なすぎます" in listing and "1日に集中しています" in listing

    detail = text(admin.get(f"/held/{FORGED}"))
    assert "この期間に回答した送信元は1件で、必要な5件に足りません。" in detail
    assert '<td data-figure="n">21</td>' in detail
    assert '<td data-figure="sources">1</td>' in detail
    assert '<td data-figure="largest">100%</td>' in detail
    days = re.findall(r'<tr data-day="([0-9-]+)"><th scope="row">[^<]+</th><td>(\d+)</td>', detail)
    assert days == [((today - timedelta(days=6 - i)).isoformat(), "3") for i in range(7)]
    assert "forger" not in detail
    assert ">送信する</button>" in detail and ">破棄する</button>" in detail

    burst = text(admin.get(f"/held/{BURST}?lang=en"))
    assert "96% of this window's answers came on one day" in html.unescape(burst)  # 25 of 26
    assert '<td data-figure="busiest">96%' in burst
    # The page title with markup is text.
    assert "<script>alert(1)</script>" not in burst
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in burst


def test_the_overview_and_menu_show_admins_the_held_count(city_app, sessions, held_seeder):
    app, city, _today = held_city(city_app, sessions, held_seeder)
    overview = text(signed_in(app, city.admin).get("/overview"))
    assert 'data-held="2"' in overview and "確認待ちのアラートが2件あります。" in overview
    assert 'href="/held"' in overview
    clerk = text(signed_in(app, city.somu).get("/overview"))
    assert "data-held" not in clerk and 'href="/held"' not in clerk


def test_a_clerk_can_neither_see_nor_decide_held_alerts(city_app, sessions, held_seeder):
    app, city, _today = held_city(city_app, sessions, held_seeder)
    clerk = signed_in(app, city.somu)  # the division of both held alerts' pages
    token = CSRF.search(text(clerk.get("/pages"))).group(1)
    assert clerk.get("/held").status_code == 404
    assert clerk.get(f"/held/{FORGED}").status_code == 404
    for action in ("release", "dismiss"):
        response = clerk.post(f"/held/{FORGED}/{action}", data={"csrf_token": token})
        assert response.status_code == 404
    # Nor are they in the division's alerts, or to be marked handled.
    alerts = text(clerk.get("/alerts?show=all"))
    assert FORGED not in alerts and BURST not in alerts
    handled = clerk.post(f"/alerts/{FORGED}/handled", data={"csrf_token": token})
    assert handled.status_code == 404
    held = row(sessions, FORGED)
    assert (held.released_at, held.dismissed_at) == (None, None)


def test_sending_a_held_alert_is_decided_once_confirmed_and_recorded(
    city_app, sessions, held_seeder
):
    app, city, _today = held_city(city_app, sessions, held_seeder)
    admin = signed_in(app, city.admin)
    page = text(admin.get(f"/held/{FORGED}"))
    assert admin.post(f"/held/{FORGED}/release", data={}).status_code == 400  # no CSRF
    assert row(sessions, FORGED).released_at is None
    token = CSRF.search(page).group(1)

    sent = admin.post(f"/held/{FORGED}/release", data={"csrf_token": token})
    assert sent.status_code == 303
    assert sent.headers["Location"].endswith(f"/held/{FORGED}?done=released")
    confirmed = text(admin.get(sent.headers["Location"]))
    assert "送信しました。数秒のうちに課へメールが送られます。" in confirmed
    assert f"送信済み ({city.admin}、" in confirmed
    assert ">送信する</button>" not in confirmed
    released = row(sessions, FORGED)
    assert released.released_by == city.admin and released.released_at is not None

    # Pressed again, or dismissed after: already decided, nothing changes.
    for action in ("release", "dismiss"):
        again = admin.post(f"/held/{FORGED}/{action}", data={"csrf_token": token})
        assert again.headers["Location"].endswith("done=already")
    assert row(sessions, FORGED).dismissed_at is None
    assert row(sessions, FORGED).released_at == released.released_at

    # Released, it is an alert the division was sent: in its list, to be handled.
    clerk = signed_in(app, city.somu)
    assert FORGED in text(clerk.get("/alerts"))
    assert "確認待ち (1件)" in text(admin.get("/held"))
    assert FORGED in text(admin.get("/held?show=released"))


def test_dismissing_a_held_alert_keeps_it_from_everyone_for_good(city_app, sessions, held_seeder):
    app, city, _today = held_city(city_app, sessions, held_seeder)
    admin = signed_in(app, city.admin)
    token = CSRF.search(text(admin.get(f"/held/{BURST}"))).group(1)
    dismissed = admin.post(f"/held/{BURST}/dismiss", data={"csrf_token": token})
    assert dismissed.headers["Location"].endswith(f"/held/{BURST}?done=dismissed")
    confirmed = text(admin.get(dismissed.headers["Location"] + "&lang=en"))
    assert "Dismissed: this alert will not be emailed." in confirmed
    assert f"Dismissed ({city.admin}, " in confirmed
    assert row(sessions, BURST).dismissed_by == city.admin
    # A forged confirmation says nothing the record does not.
    assert "Sent:" not in text(admin.get(f"/held/{BURST}?done=released&lang=en"))
    late = admin.post(f"/held/{BURST}/release", data={"csrf_token": token})
    assert late.headers["Location"].endswith("done=already")
    assert row(sessions, BURST).released_at is None
    assert BURST in text(admin.get("/held?show=dismissed"))
    assert BURST not in text(admin.get("/held"))
    assert BURST not in text(admin.get("/alerts?show=all"))


def test_unknown_or_malformed_held_alerts_are_not_found(city_app, sessions, held_seeder):
    app, city, _today = held_city(city_app, sessions, held_seeder)
    admin = signed_in(app, city.admin)
    token = CSRF.search(text(admin.get("/held"))).group(1)
    # An alert that was never held is not a held alert.
    assert admin.get(f"/held/{city.dx_alert}").status_code == 404
    assert admin.post(f"/held/{city.dx_alert}/release", data={"csrf_token": token}).status_code == (
        404
    )
    assert admin.get("/held/not-an-id").status_code == 404
    assert admin.post(f"/held/{FORGED}/delete", data={"csrf_token": token}).status_code == 404
    assert admin.get("/held?show=nonsense&page=x").status_code == 200


def test_a_drop_one_source_decides_is_explained_in_both_languages(city_app, sessions, held_seeder):
    app, city, _today = held_city(city_app, sessions, held_seeder)
    with sessions() as session, session.begin():
        row = session.scalars(select(AlertOutbox).where(AlertOutbox.alert_id == FORGED)).one()
        row.held_reason = "one_source_decides"
    admin = signed_in(app, city.admin)
    assert "1つの送信元の回答で低下と判定されています" in text(admin.get("/held"))
    detail = text(admin.get(f"/held/{FORGED}"))
    assert "最も多く回答した1つの送信元 (この期間の回答の100%) の回答を除くと" in detail
    english = html.unescape(text(admin.get(f"/held/{FORGED}?lang=en")))
    assert "Without the answers of its largest source (100% of this window's answers)" in english
