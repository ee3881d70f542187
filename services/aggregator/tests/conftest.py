"""Fixtures of the aggregator's tests: a migrated database and feedback events."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from aggregator.alerts.models import AlertOutbox
from aggregator.counting.models import (
    DailyCount,
    DailyExcess,
    DailyResponse,
    ProcessedEvent,
    SourceCount,
)
from aggregator.migrate import migrate
from aggregator.pages.models import Page, PageTitle
from koe_kit import events
from koe_kit.db import make_engine, session_factory, transaction

PAGE_URL = "https://www.info.city.tsu.mie.jp/shisei/dx/1234.html"


@pytest.fixture
def migrated_url(database_url: str) -> str:
    migrate(database_url)
    return database_url


def sessions_of(url: str) -> Iterator:
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def sessions(migrated_url: str) -> Iterator:
    yield from sessions_of(migrated_url)


@pytest.fixture
def another_database(database_url, tmp_path, request):
    """Factory: the URL of another empty database of the same kind as the test's."""

    def make(name: str) -> str:
        if database_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path / name}.db"
        return request.getfixturevalue("new_pg_database")()

    return make


def feedback(
    time: str | datetime,
    answers: dict[str, str],
    *,
    page_id: str = "u-5f1c9a2d7e3b4c60",
    title: str | None = "津市の自治体DX取組状況",
    division: str | None = "somu-dx",
    event_id: str | None = None,
    source: str | None = None,
    url: str = PAGE_URL,
    replaces: str | None = None,
    locale: str = "ja",
    page_modified: str | None = None,
) -> dict:
    """A schema-valid koe.feedback.submitted.v1 event, built the way the relay builds it.
    Without `source` it is an event from before the feedback service stamped sources."""
    event_id = event_id or str(uuid.uuid4())
    moment = events.parse_time(time) if isinstance(time, str) else time
    data = {
        "response_id": event_id,
        "page_id": page_id,
        "page_url": url,
        "page_title": title,
        "division": division,
        "locale": locale,
        "answers": answers,
    }
    if source is not None:
        data["source"] = source
    if replaces is not None:
        data["replaces"] = replaces
    if page_modified is not None:
        data["page_modified"] = page_modified
    event = events.make_event(
        "koe.feedback.submitted.v1",
        source="koe/feedback",
        subject=page_id,
        event_id=event_id,
        time=moment,
        data=data,
    )
    events.validate(event)
    return event


def source_of(name: str) -> str:
    """A source as the feedback service writes it (32 hex digits), named for a test."""
    return hashlib.sha256(name.encode()).hexdigest()[:32]


@pytest.fixture
def make_feedback():
    return feedback


@pytest.fixture
def make_source():
    return source_of


# -- The dashboard's tests (issue 4): a city with three divisions' pages, accounts, alerts ----

DASHBOARD_TOKEN = "dashboard-api-token-" + "t" * 16  # noqa: S105 (a test token)
DASHBOARD_SECRET = "dashboard-session-secret-" + "s" * 16  # noqa: S105 (a test secret)
PASSWORD = "correct horse battery"  # noqa: S105 (a test password)
XSS_TITLE = "<script>alert(1)</script><img src=x onerror=alert(1)>"
FORMULA_TITLE = '=HYPERLINK("http://evil.example/","クリック")'
SITE = "https://www.info.city.tsu.mie.jp"


@dataclass(frozen=True)
class City:
    """What the dashboard tests seed: page ids by role, account emails, alert ids."""

    dx: str = "shirasagi:dx:1234"  # 総務部 デジタル改革推進課, named by the embed
    xss: str = "u-0000000000000001"  # the same division by URL prefix, title with markup
    formula: str = "u-0000000000000002"  # the same division, title like an Excel formula
    gomi: str = "u-0000000000000003"  # 環境部 環境政策課: another division
    unowned: str = "u-0000000000000004"  # no prefix matches: the fallback division
    somu: str = "clerk@somu.example"
    kankyo: str = "clerk@kankyo.example"
    admin: str = "admin@city.example"
    dx_alert: str = "3c1e7a4e-8f0e-5b7a-9d2c-6e4f1a0b9c33"
    dx_recovery: str = "8a0f3d52-6c1e-5f4b-a7d9-2b3c4d5e6f70"
    gomi_alert: str = "5d2f8b5f-9a1f-5c8b-8e3d-7f5a2b1c0d44"
    password: str = PASSWORD
    xss_title: str = XSS_TITLE
    formula_title: str = FORMULA_TITLE
    api_token: str = DASHBOARD_TOKEN


def dashboard_settings(database_url: str, **extra: str):
    from aggregator.config import load_web_settings

    return load_web_settings(
        {
            "DATABASE_URL": database_url,
            "KOE_API_TOKEN": DASHBOARD_TOKEN,
            "KOE_SECRET_KEY": DASHBOARD_SECRET,
            "KOE_DASHBOARD_SECURE_COOKIES": "false",
            "KOE_DIVISIONS_FILE": str(Path(__file__).parents[3] / "divisions.yaml"),
            **extra,
        }
    )


def _alert_payload(alert_id: str, page_id: str, title: str, kind: str, today: date) -> str:
    recent = {"start": (today - timedelta(days=6)).isoformat(), "end": today.isoformat()}
    baseline = {
        "start": (today - timedelta(days=34)).isoformat(),
        "end": (today - timedelta(days=7)).isoformat(),
    }
    question = {
        "question": "clarity",
        "baseline": {"yes": 60, "neutral": 15, "no": 5, "n": 80, "score": 84.4},
        "recent": {"yes": 4, "neutral": 3, "no": 13, "n": 20, "score": 27.5},
    }
    data = {"alert_id": alert_id, "page": {"id": page_id, "title": title}, "questions": [question]}
    if kind == "drop":
        event_type = "koe.alerts.v1"
        data |= {"kind": "drop", "recent": recent, "baseline": baseline}
    else:
        # Back near the baseline it dropped from (schemas/examples/koe.alerts.recovered.v1).
        event_type = "koe.alerts.recovered.v1"
        question["recent"] = {"yes": 19, "neutral": 3, "no": 2, "n": 24, "score": 85.4}
    return json.dumps({"type": event_type, "id": alert_id, "data": data}, ensure_ascii=False)


def seed_city(sessions, today: date) -> City:
    """Pages of three divisions with 84 days of answers, accounts, and alerts."""
    from aggregator.accounts.services import create_account
    from koe_directory import load_directory

    city = City()
    directory = load_directory(Path(__file__).parents[3] / "divisions.yaml")
    seen = datetime(2026, 1, 1, tzinfo=UTC)
    pages = [
        (city.dx, f"{SITE}/shisei/dx/1234.html", "津市の自治体DX取組状況", 6),
        (city.xss, f"{SITE}/shisei/dx/xss.html", XSS_TITLE, 2),
        (city.formula, f"{SITE}/shisei/dx/formula.html", FORMULA_TITLE, 1),
        (city.gomi, f"{SITE}/kurashi/gomi/1.html", "ごみの出し方", 3),
        (city.unowned, f"{SITE}/other/1.html", "その他のページ", 1),
    ]
    with transaction(sessions) as session:
        for page_id, url, title, volume in pages:
            # Shown: as if the city's page list named them (the tests of who may see a
            # page not shown yet are in test_pages.py).
            session.add(
                Page(
                    id=page_id,
                    url=url,
                    title=title,
                    title_from_list=True,
                    visible=True,
                    first_seen=seen,
                    # Answered up to today (below): none is a quiet page (page_list.py).
                    last_seen=datetime.now(UTC),
                )
            )
            for back in range(84):
                day = today - timedelta(days=back)
                # A steady but uneven pattern: some days empty, clarity worse lately.
                if (back * 7 + volume) % 5 == 0:
                    continue
                answers = {}
                for offset, question in enumerate(("findability", "clarity", "usefulness")):
                    yes = (back + offset) % (volume + 2) + (0 if question == "clarity" else 1)
                    neutral = (back + 2 * offset) % 3
                    no = (back % 4 == offset) + (question == "clarity" and back < 10) * 2
                    if yes + neutral + no:
                        answers[question] = (yes, neutral, no)
                for question, (yes, neutral, no) in answers.items():
                    session.add(
                        DailyCount(
                            page_id=page_id,
                            day=day,
                            question=question,
                            yes=yes,
                            neutral=neutral,
                            no=no,
                        )
                    )
                session.add(
                    DailyResponse(
                        page_id=page_id, day=day, responses=max(sum(a) for a in answers.values())
                    )
                )
        created = datetime.now(UTC) - timedelta(hours=2)
        for alert_id, page_id, title, kind, minutes in [
            (city.dx_alert, city.dx, "津市の自治体DX取組状況", "drop", 0),
            (city.dx_recovery, city.dx, "津市の自治体DX取組状況", "recovery", 30),
            (city.gomi_alert, city.gomi, "ごみの出し方", "drop", 10),
        ]:
            session.add(
                AlertOutbox(
                    alert_id=alert_id,
                    page_id=page_id,
                    payload=_alert_payload(alert_id, page_id, title, kind, today),
                    created_at=created + timedelta(minutes=minutes),
                    sent_at=created,
                )
            )
        for email, division in [(city.somu, "somu-dx"), (city.kankyo, "kankyo-gomi")]:
            create_account(session, directory, email=email, password=PASSWORD, division=division)
        create_account(session, directory, email=city.admin, password=PASSWORD, admin=True)
    return city


# Alerts held for review (crowd.py): a drop one source made, and a burst on the XSS page.
HELD_FORGED = "0b7c2d1e-4f5a-5b6c-8d7e-9f0a1b2c3d4e"
HELD_BURST = "1c8d3e2f-5a6b-5c7d-9e8f-0a1b2c3d4e5f"


def add_held(sessions, alert_id: str, page_id: str, rows, end: date) -> None:
    """A drop alert on the page, held with the crowd rule's own verdict over `rows`
    (crowd.SourceDay) for the week ending `end`."""
    from aggregator.alerts.crowd import CrowdRule, judge

    verdict = judge(CrowdRule(), end - timedelta(days=6), end, rows)
    assert verdict.held is not None
    payload = json.loads(_alert_payload(alert_id, page_id, "", "drop", end))
    with transaction(sessions) as session:
        session.add(
            AlertOutbox(
                alert_id=alert_id,
                page_id=page_id,
                payload=json.dumps(payload, ensure_ascii=False),
                created_at=datetime.now(UTC),
                held_reason=verdict.held,
                held_evidence=json.dumps(verdict.as_json()),
            )
        )


def seed_held(sessions, city: City, today: date) -> tuple[str, str]:
    """Two held alerts on the seeded city's pages: (forged drop's id, burst's id)."""
    from aggregator.alerts.crowd import SourceDay

    one_source = [SourceDay(today - timedelta(days=i), "forger", 3) for i in range(7)]
    add_held(sessions, HELD_FORGED, city.dx, one_source, today)
    burst = [SourceDay(today, f"s{i}", 1) for i in range(25)]
    burst.append(SourceDay(today - timedelta(days=3), "early", 1))
    add_held(sessions, HELD_BURST, city.xss, burst, today)
    return HELD_FORGED, HELD_BURST


@pytest.fixture
def held_seeder():
    """seed_held(sessions, city, today) for tests of held alerts."""
    return seed_held


@pytest.fixture
def dashboard_settings_for_url():
    return dashboard_settings


@pytest.fixture
def city_seeder():
    """seed_city(sessions, today) for tests that build their own database."""
    return seed_city


@pytest.fixture
def dashboard_app_for(migrated_url):
    """Factory: the aggregator app over the test database, with extra settings."""
    from aggregator.app import create_app

    apps = []

    def make(**extra: str):
        apps.append(create_app(dashboard_settings(migrated_url, **extra)))
        return apps[-1]

    yield make
    for app in apps:  # before the test database is dropped under its connections
        app.extensions["koe.engine"].dispose()


@pytest.fixture
def city_app(dashboard_app_for, sessions):
    """(app, city): the aggregator app over a seeded city, cookies allowed over http."""
    app = dashboard_app_for()
    today = datetime.now(app.extensions["aggregator.settings"].timezone).date()
    return app, seed_city(sessions, today)


# -- Counting (issue 11): a mixed history, and the tables a replay must give again ----------


TOKYO = ZoneInfo("Asia/Tokyo")
HISTORY_START = date(2026, 11, 20)


def _at(day: date, minute: int) -> datetime:
    """A moment of `day` in Tokyo (03:00 JST plus `minute`)."""
    return datetime(day.year, day.month, day.day, 3, tzinfo=TOKYO) + timedelta(minutes=minute)


def _sender(produced: list[dict], day: date, page: str):
    """send(answer, title, **fields): one more answer to `page` on `day`, a minute later."""
    url = f"https://www.info.city.tsu.mie.jp/shisei/dx/{page}.html"
    moments = (_at(day, minute) for minute in range(1, 1000))

    def send(answer: str, title: str = "正しい題名", **fields) -> dict:
        event = feedback(
            next(moments), {"clarity": answer}, page_id=page, url=url, title=title, **fields
        )
        produced.append(event)
        return event

    return send


def mixed_history(seed: int = 11) -> list[dict]:
    """Three weeks of a few pages: citizens, shared addresses, one flooding source a day,
    older events without a source, replacements (of counted and excess answers), titles
    that differ."""
    rng = random.Random(seed)
    produced: list[dict] = []
    for offset in range(21):
        day = HISTORY_START + timedelta(days=offset)
        for page in ("p1", "p2", "p3"):
            send = _sender(produced, day, page)
            for sender in range(rng.randrange(2, 9)):
                source = source_of(f"{day} {sender % 5}")  # five addresses a day
                title = rng.choice(["正しい題名", "正しい題名", "別の題名"])
                first = send(rng.choice(("yes", "neutral", "no")), title, source=source)
                if rng.random() < 0.3:  # the same person changes their mind
                    send("yes", title, source=source, replaces=first["id"])
            flooder = source_of(f"{day} flood")
            for _ in range(rng.randrange(0, 12)):
                send("no", source=flooder)
            if offset % 7 == 0:
                send("yes")
    return produced


def counting_tables(sessions) -> dict[str, set[tuple]]:
    """Everything counting and the pages registry keep, as comparable sets of rows."""
    models = {
        "daily_counts": DailyCount,
        "daily_responses": DailyResponse,
        "daily_excess": DailyExcess,
        "source_counts": SourceCount,
        "page_titles": PageTitle,
    }
    with sessions() as session:
        found = {
            name: {
                tuple(getattr(row, c.key) for c in model.__table__.columns)
                for row in session.scalars(select(model))
            }
            for name, model in models.items()
        }
        found["pages"] = {
            (p.id, p.url, p.title, p.title_from_list, p.sources, p.visible)
            for p in session.scalars(select(Page))
        }
        found["excess_events"] = set(
            session.scalars(select(ProcessedEvent.event_id).where(ProcessedEvent.excess))
        )
    return found


@pytest.fixture(name="mixed_history")
def mixed_history_fixture():
    return mixed_history


@pytest.fixture(name="counting_tables")
def counting_tables_fixture():
    return counting_tables


@pytest.fixture
def replay_url(another_database) -> str:
    """A second, empty database of the same kind, migrated, to replay into."""
    url = another_database("replay")
    migrate(url)
    return url


@pytest.fixture
def replay_sessions(replay_url: str) -> Iterator:
    yield from sessions_of(replay_url)
