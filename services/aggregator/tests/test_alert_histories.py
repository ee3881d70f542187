"""Alert histories, day by day through the real batch handler on SQLite and PostgreSQL,
and on to the notifier with a real SMTP server: emails only where a division wants one.

Each day's answers are one batch, judged that day (as the live consumer would: the
drop detector judges the days before it);
the alerts are the outbox's payloads, decoded and validated as the notifier's
consumer decodes them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from aggregator.alerts.models import AlertOutbox
from aggregator.counting.ingest import handle_batch
from koe_directory import load_directory
from koe_kit import events
from koe_kit.db import make_engine, transaction
from koe_kit.kafka import Message
from notifier.config import load_settings
from notifier.digest import DigestStep
from notifier.handler import AlertHandler
from notifier.migrate import migrate as migrate_notifier
from notifier.outgoing import Outgoing

DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")

TOKYO = ZoneInfo("Asia/Tokyo")
START = date(2026, 6, 1)
# Good days before anything happens: the detector's reference needs 98 days behind a day.
GOOD_DAYS = 100
REPO = Path(__file__).resolve().parents[3]
GOOD = ["yes", "yes", "yes", "yes", "yes", "no"]  # 83.3
BAD = ["yes", "no", "no", "no", "no", "no"]  # 16.7
DX = "https://www.info.city.tsu.mie.jp/shisei/dx/"
GOMI = "https://www.info.city.tsu.mie.jp/kurashi/gomi/"
API = {"Authorization": "Bearer dashboard-api-token-" + "t" * 16}  # conftest's test token


def answers_on(day: date, page_id: str, values: list[str], feedback, url: str) -> list[dict]:
    """One response per value, answering clarity with it (and findability yes)."""
    return [
        _with_url(
            feedback(
                datetime(day.year, day.month, day.day, 1 + i, tzinfo=UTC),
                {"clarity": value, "findability": "yes"},
                page_id=page_id,
                title=f"ページ {page_id}",
                division=None,
            ),
            url + f"{page_id}.html",
        )
        for i, value in enumerate(values)
    ]


def _with_url(event: dict, url: str) -> dict:
    event["data"]["page_url"] = url
    return events.make_event(
        event["type"],
        source=event["source"],
        subject=event["subject"],
        data=event["data"],
        event_id=event["id"],
        time=events.parse_time(event["time"]),
    )


class History:
    """Pages' answers per day, replayed one day per batch."""

    def __init__(self, feedback):
        self.feedback = feedback
        self.days: dict[date, list[dict]] = {}

    def page(self, page_id: str, plan: list[tuple[int, list[str]]], url: str = DX) -> History:
        """plan: (number of days, the answers of each of those days), in order."""
        day = START
        for count, values in plan:
            for _ in range(count):
                self.days.setdefault(day, []).extend(
                    answers_on(day, page_id, values, self.feedback, url)
                )
                day += timedelta(days=1)
        return self

    def noisy_page(self, page_id: str, days: int, per_day: int, seed: int) -> History:
        """A steady page: each answer yes with p = 0.8, neutral 0.1, no 0.1."""
        rng = random.Random(seed)
        values = [
            [rng.choices(("yes", "neutral", "no"), (8, 1, 1))[0] for _ in range(per_day)]
            for _ in range(days)
        ]
        for offset, day_values in enumerate(values):
            day = START + timedelta(days=offset)
            self.days.setdefault(day, []).extend(
                answers_on(day, page_id, day_values, self.feedback, DX)
            )
        return self

    def replay(self, sessions) -> list[dict]:
        """Every alert event raised, in the order the outbox would publish them."""
        for day in sorted(self.days):
            with transaction(sessions) as session:
                handle_batch(
                    session,
                    self.days[day],
                    timezone=TOKYO,
                    directory=DIRECTORY,
                    now=datetime(day.year, day.month, day.day, 14, tzinfo=UTC),
                )
        with sessions() as session:
            payloads = session.scalars(select(AlertOutbox.payload).order_by(AlertOutbox.id))
            return [events.decode(p.encode()) for p in payloads]


@pytest.fixture
def history(make_feedback) -> History:
    return History(make_feedback)


def kinds(alerts: list[dict]) -> list[tuple[str, str]]:
    return [(a["subject"], a["type"]) for a in alerts]


def test_a_steady_page_with_noise_raises_nothing(sessions, history):
    alerts = history.noisy_page("steady", days=160, per_day=8, seed=4).replay(sessions)
    assert alerts == []


SMALL = [(GOOD_DAYS, ["yes"]), (1, ["no"]), (1, []), (1, ["no", "no"]), (4, [])]


def test_a_small_page_with_a_few_bad_answers_raises_nothing(sessions, history):
    # One good answer a day, then three unhappy visitors in a week.
    assert history.page("small", SMALL).replay(sessions) == []


def recent_figures(alert: dict) -> tuple[int, int]:
    """The number of bad days in a drop's chart window (28 days up to its alarm), and
    the window's first day's distance from the alarm."""
    window = alert["data"]["recent"]
    end, start = (date.fromisoformat(window[k]) for k in ("end", "start"))
    first_bad = START + timedelta(days=GOOD_DAYS)
    return (end - first_bad).days + 1, (end - start).days


def test_a_real_drop_raises_one_alert(sessions, history):
    alerts = history.page("dropped", [(GOOD_DAYS, GOOD), (7, BAD)]).replay(sessions)
    assert kinds(alerts) == [("dropped", "koe.alerts.v1")]
    [clarity] = alerts[0]["data"]["questions"]
    assert clarity["question"] == "clarity"
    # Judged a few days into the bad week (never on its first day alone), its chart's
    # 28 days against the reference of 84 days ending 14 days before; the cooldown
    # keeps the rest of the week quiet.
    bad_days, span = recent_figures(alerts[0])
    assert 2 <= bad_days <= 4 and span == 27
    assert (clarity["baseline"]["n"], clarity["baseline"]["score"]) == (504, 83.3)
    recent_score = round((5 * (28 - bad_days) + bad_days) / 168 * 100, 1)
    assert (clarity["recent"]["n"], clarity["recent"]["score"]) == (168, recent_score)
    assert clarity["drop_points"] >= clarity["chart"]["limit_points"]


def test_a_drop_then_a_recovery_raise_one_of_each(sessions, history):
    # Fixed the day after the email: good again for four weeks.
    plan = [(GOOD_DAYS, GOOD), (3, BAD), (28, GOOD)]
    alerts = history.page("fixed", plan).replay(sessions)
    assert kinds(alerts) == [("fixed", "koe.alerts.v1"), ("fixed", "koe.alerts.recovered.v1")]
    drop, recovery = alerts
    [q] = recovery["data"]["questions"]
    assert q["drop_alert_id"] == drop["id"]
    assert q["baseline"] == drop["data"]["questions"][0]["baseline"]
    assert q["dropped"] == drop["data"]["questions"][0]["recent"]
    assert q["recent"]["score"] >= q["baseline"]["score"] - 10
    # Not one answer of the drop's own chart counts for the recovery.
    assert q["window"]["start"] > drop["data"]["recent"]["end"]


def test_many_pages_at_once_alert_exactly_the_dropped_ones(sessions, history):
    dropped = {f"drop-{k}" for k in range(4)}
    for k, page_id in enumerate(sorted(dropped)):
        history.page(page_id, [(GOOD_DAYS + k, GOOD), (7, BAD)])
    for k in range(6):
        history.noisy_page(f"steady-{k}", days=115, per_day=8, seed=100 + k)
    for k in range(4):
        history.page(f"small-{k}", SMALL)
    alerts = history.replay(sessions)
    assert sorted(kinds(alerts)) == sorted((p, "koe.alerts.v1") for p in dropped)


# -- on to the notifier ------------------------------------------------------------------------


@pytest.fixture
def notifier_url(another_database) -> str:
    url = another_database("notifier")
    migrate_notifier(url)
    return url


@pytest.fixture
def notifier(notifier_url, smtp_server) -> Iterator:
    settings = load_settings(
        {
            "DATABASE_URL": notifier_url,
            "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
            "SMTP_HOST": smtp_server.host,
            "SMTP_PORT": str(smtp_server.port),
            "MAIL_FROM": "koe <koe@city-tsu.example>",
            "KOE_DASHBOARD_URL": "https://koe.city-tsu.example",
        }
    )
    engine = make_engine(notifier_url)
    handler = AlertHandler(Outgoing.from_settings(settings, engine), dead_letters=NoDeadLetters())

    def digest_step() -> DigestStep:
        """A fresh step over the same database, as after a process restart."""
        return DigestStep(Outgoing.from_settings(settings, engine), timezone=settings.timezone)

    yield handler, digest_step
    engine.dispose()


class NoDeadLetters:
    """Every alert of these histories is deliverable: the test fails on a dead letter."""

    def dead_letter(self, message: Message, reason: str) -> None:
        pytest.fail(f"dead-lettered: {reason}")


def deliver(handler, alerts: list[dict]) -> None:
    handler([Message("koe.alerts.v1", 0, i, a["subject"], a) for i, a in enumerate(alerts)])


def plain(mail) -> str:
    return mail.get_body(preferencelist=("plain",)).get_content()


def test_a_drop_and_its_recovery_email_the_division_once_each(
    sessions, history, notifier, smtp_server
):
    handler, _ = notifier
    alerts = history.page("fixed", [(GOOD_DAYS, GOOD), (3, BAD), (28, GOOD)]).replay(sessions)
    deliver(handler, alerts)
    deliver(handler, alerts)  # the whole topic replayed
    mails = smtp_server.messages
    assert [m["Subject"] for m in mails] == [
        "【koe】ページの評価が下がりました: ページ fixed",
        "【koe】ページの評価が回復しました: ページ fixed",
    ]
    assert {m["To"] for m in mails} == {"digital-kaikaku@city-tsu.example"}
    drop, recovery = (plain(m) for m in mails)
    bad_days, _span = recent_figures(alerts[0])
    recent = f"{(5 * (28 - bad_days) + bad_days) / 168 * 100:.1f}点 (回答168件)"
    assert f"83.3点 (回答504件) → {recent}" in drop
    assert "95%信頼区間: 79.8〜86.3点 → " in drop
    assert "ダッシュボード: https://koe.city-tsu.example/pages/fixed" in drop
    assert f"下がる前 83.3点 (回答504件) → お知らせ時 {recent} → 現在 " in recovery
    assert "担当課として koe に登録されている総務部 デジタル改革推進課へ" in recovery


def test_the_emails_figures_are_the_stats_apis_for_the_same_windows(
    sessions, history, notifier, smtp_server, dashboard_app_for
):
    handler, _ = notifier
    plan = [(GOOD_DAYS, GOOD), (3, BAD), (28, GOOD)]
    drop_event, recovery_event = history.page("fixed", plan).replay(sessions)
    deliver(handler, [drop_event, recovery_event])
    drop, recovery = (plain(m) for m in smtp_server.messages)
    api = dashboard_app_for().test_client()

    def clarity(as_of: str, days: int | None = None) -> dict:
        query = f"?as_of={as_of}" + (f"&days={days}" if days else "")
        response = api.get(f"/api/v1/pages/fixed{query}", headers=API)
        assert response.status_code == 200
        return response.get_json()

    def shown(q: dict) -> str:
        return f"{q['score']:.1f}点 (回答{q['n']:,}件)"

    def summed(window: dict) -> dict:
        """The API's daily answers summed over a window of the alert."""
        days = (date.fromisoformat(window["end"]) - date.fromisoformat(window["start"])).days + 1
        daily = [d["questions"]["clarity"] for d in clarity(window["end"], days)["daily"]]
        yes, neutral, no = (sum(d[a] for d in daily) for a in ("yes", "neutral", "no"))
        return {
            "n": yes + neutral + no,
            "score": round((yes + neutral / 2) / (yes + neutral + no) * 100, 1),
        }

    # The drop: the reference and the chart's window, as the API counts their days.
    data = drop_event["data"]
    assert f"{shown(summed(data['baseline']))} → {shown(summed(data['recent']))}" in drop
    # The recovery: "now" is the API's daily answers summed over the recovery's window.
    window = recovery_event["data"]["questions"][0]["window"]
    assert f"→ 現在 {shown(summed(window))}" in recovery


def test_a_daily_division_gets_one_digest_listing_every_page(
    sessions, history, notifier, smtp_server
):
    handler, digest_step = notifier
    for k in range(3):
        history.page(f"gomi-{k}", [(GOOD_DAYS, GOOD), (7, BAD)], url=GOMI)
    history.page("dx-page", [(GOOD_DAYS, GOOD), (7, BAD)])
    alerts = history.replay(sessions)
    assert len(alerts) == 4
    deliver(handler, alerts)
    deliver(handler, alerts)
    # The DX division wants each alert at once; the gomi division waits for its digest.
    assert [m["To"] for m in smtp_server.messages] == ["digital-kaikaku@city-tsu.example"]

    # The next 8:00 in Tokyo after the alerts arrived (today's, if it is still before 8).
    now = datetime.now(UTC).astimezone(TOKYO)
    due = datetime.combine(now.date(), time(8), TOKYO)
    if due <= now:
        due += timedelta(days=1)
    assert digest_step()(due - timedelta(minutes=1)) == []
    assert len(smtp_server.messages) == 1
    first = digest_step()(due)
    assert [(o.division_code, o.status) for o in first] == [("kankyo-gomi", "sent")]
    # The step again, and a restarted process's step: nothing more.
    assert digest_step()(due + timedelta(minutes=1)) == []
    assert digest_step()(due + timedelta(hours=12)) == []
    [_, mail] = smtp_server.messages
    assert mail["To"] == "kankyo@city-tsu.example"
    day = due.date()
    assert mail["Subject"] == (
        f"【koe】ページ評価のまとめ {day.year}年{day.month}月{day.day}日: 低下 3件・回復 0件"
    )
    text = plain(mail)
    for k in range(3):
        assert f"ページ: ページ gomi-{k}" in text
        assert f"https://koe.city-tsu.example/pages/gomi-{k}" in text
    assert "dx-page" not in text
    assert "環境部 環境政策課 ご担当者様" in text
    assert "ページ gomi-2" in mail.get_body(preferencelist=("html",)).get_content()
