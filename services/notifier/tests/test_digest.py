"""Daily digests against a real SMTP server and both databases: stored once per alert,
sent once per division and day, retried while the server says "later"."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import select

from koe_devkit.testing import wait_until
from koe_directory import DirectoryError, load_directory
from koe_kit.db import session_factory, transaction
from koe_kit.kafka import Message
from notifier import digest_queue
from notifier.digest import DigestStep, DigestThread
from notifier.digest_queue import due_day
from notifier.models import Digest, DigestEntry

TOKYO = ZoneInfo("Asia/Tokyo")
GOMI = "https://www.info.city.tsu.mie.jp/kurashi/gomi/"
EDIT_REVIEWED = (
    Path(__file__).resolve().parents[3]
    / "schemas/examples/koe.alerts.edit.reviewed.v1/clarity-better.json"
)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TOKYO)


@pytest.fixture
def step(outgoing):
    def make(**options) -> DigestStep:
        return DigestStep(
            outgoing, timezone=TOKYO, backoff_initial_s=60, backoff_max_s=600, **options
        )

    return make


@pytest.fixture
def gomi_alert(make_alert):
    def make(n: int) -> dict:
        return make_alert(url=f"{GOMI}{n}.html", division="kankyo-gomi", title=f"ごみ {n}")

    return make


@pytest.fixture
def tomorrow(handler, gomi_alert) -> date:
    """One alert kept for kankyo-gomi's digest (a daily division); the day it is due."""
    deliver(handler, gomi_alert(1))
    return datetime.now(TOKYO).date() + timedelta(days=1)


def deliver(handler, *alerts: dict) -> None:
    handler([Message("koe.alerts.v1", 0, i, a["subject"], a) for i, a in enumerate(alerts)])


def statuses(outcomes) -> list[str]:
    return [o.status for o in outcomes]


def utc(moment: datetime) -> datetime:
    """A stored time: SQLite gives it back without its (UTC) offset."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def digest_row(engine, day: date) -> Digest | None:
    with session_factory(engine)() as session:
        return session.get(Digest, ("kankyo-gomi", day))


def test_the_digest_day_turns_at_the_digest_hour_in_tokyo():
    day = date(2026, 11, 27)
    assert due_day(at(day, 7, 59), 8, TOKYO) == day - timedelta(days=1)
    assert due_day(at(day, 8), 8, TOKYO) == day
    # 23:30 UTC on the 26th is 08:30 on the 27th in Tokyo.
    assert due_day(datetime(2026, 11, 26, 23, 30, tzinfo=UTC), 8, TOKYO) == day


def test_an_alert_is_stored_once_and_listed_in_one_digest(
    handler, step, engine, smtp_server, gomi_alert
):
    one, two = gomi_alert(1), gomi_alert(2)
    deliver(handler, one, two, one)
    deliver(handler, two)
    assert smtp_server.messages == []
    with session_factory(engine)() as session:
        assert session.scalar(select(DigestEntry.alert_id).where(DigestEntry.alert_id == one["id"]))
        assert len(session.scalars(select(DigestEntry)).all()) == 2

    day = datetime.now(TOKYO).date() + timedelta(days=1)
    assert statuses(step()(at(day, 8, 5))) == ["sent"]
    late = gomi_alert(3)
    deliver(handler, late, one)  # `one` again after its digest went: still not resent
    assert step()(at(day, 9)) == []
    [first] = smtp_server.messages
    assert first["Date"].endswith(" +0900")
    text = first.get_body(preferencelist=("plain",)).get_content()
    assert "ページ: ごみ 1" in text and "ページ: ごみ 2" in text and "ごみ 3" not in text
    row = digest_row(engine, day)
    assert (row.status, row.entries, row.attempts) == ("sent", 2, 1)
    assert row.recipients == "kankyo@city-tsu.example"

    # The alert that came after 08:00 waits for the next morning's digest.
    next_day = day + timedelta(days=1)
    assert step()(at(next_day, 7, 59)) == []
    assert [o.day for o in step()(at(next_day, 8))] == [next_day]
    text = smtp_server.messages[1].get_body(preferencelist=("plain",)).get_content()
    assert "ページ: ごみ 3" in text and "ごみ 1" not in text


def test_a_mail_server_saying_later_delays_the_digest_with_backoff(
    tomorrow, step, engine, smtp_server
):
    smtp_server.fail_with("451 4.3.0 try later")
    assert statuses(step()(at(tomorrow, 8))) == ["retrying"]
    row = digest_row(engine, tomorrow)
    assert row.attempts == 1 and "451" in row.last_error
    assert utc(row.next_attempt_at) == at(tomorrow, 8, 1)  # 60 s
    assert step()(at(tomorrow, 8, 0)) == []  # not before its time
    assert statuses(step()(at(tomorrow, 8, 1))) == ["retrying"]
    assert utc(digest_row(engine, tomorrow).next_attempt_at) == at(tomorrow, 8, 3)  # 120 s
    assert smtp_server.messages == []

    smtp_server.fail_with(None)
    assert statuses(step()(at(tomorrow, 8, 3))) == ["sent"]
    assert step()(at(tomorrow, 9)) == []
    assert len(smtp_server.messages) == 1
    row = digest_row(engine, tomorrow)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)


def test_a_permanent_refusal_is_recorded_and_not_retried(tomorrow, step, engine, smtp_server):
    smtp_server.fail_with("550 5.1.1 no such user")
    assert statuses(step()(at(tomorrow, 8))) == ["failed"]
    smtp_server.fail_with(None)
    assert step()(at(tomorrow, 12)) == []
    row = digest_row(engine, tomorrow)
    assert row.status == "failed" and "550 5.1.1 no such user" in row.last_error
    assert smtp_server.messages == []


def test_a_step_that_died_mid_send_is_taken_over_after_the_lease(
    tomorrow, step, engine, smtp_server, directory
):
    with transaction(session_factory(engine)) as session:
        division = directory.divisions["kankyo-gomi"]
        assert digest_queue.claim_new(
            session, division, tomorrow, before=at(tomorrow, 8), now=at(tomorrow, 8)
        )
    # Claimed, then the process died before sending.
    assert step()(at(tomorrow, 8, 5)) == []  # another process may still be sending it
    assert statuses(step()(at(tomorrow, 8, 11))) == ["sent"]
    assert len(smtp_server.messages) == 1


def test_the_consumer_process_runs_the_step_in_a_thread(tomorrow, step, smtp_server):
    # A clock a day ahead: the alert's digest moment has come.
    a_day_ahead = step(clock=lambda: datetime.now(UTC) + timedelta(days=1))
    thread = DigestThread(a_day_ahead, interval_s=0.05).start()
    try:
        wait_until(lambda: smtp_server.messages, timeout_s=10, what="the digest email")
    finally:
        thread.close()
    assert not thread.thread.is_alive()
    assert len(smtp_server.messages) == 1


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"delivery": "weekly"}, "delivery: one of immediate, daily"),
        ({"delivery": "daily", "digest_hour": 24}, "digest_hour: an hour from 0 to 23"),
        ({"delivery": "daily", "digest_hour": "8"}, "digest_hour: an hour from 0 to 23"),
    ],
)
def test_divisions_yaml_delivery_is_checked(tmp_path, entry, problem):
    path = tmp_path / "divisions.yaml"
    division = {"code": "a", "name": "課", "emails": ["a@city.example"], **entry}
    path.write_text(
        yaml.safe_dump(
            {"divisions": [division], "fallback": {"name": "x", "emails": ["x@x.example"]}}
        ),
        encoding="utf-8",
    )
    with pytest.raises(DirectoryError, match=problem):
        load_directory(path)


def test_divisions_yaml_defaults_to_immediate_and_eight(directory):
    assert directory.divisions["somu-dx"].delivery == "immediate"
    gomi = directory.divisions["kankyo-gomi"]
    assert (gomi.delivery, gomi.digest_hour) == ("daily", 8)


def test_an_edit_s_report_is_mailed_at_once_and_once_even_to_a_daily_division(
    handler, engine, smtp_server
):
    # Four weeks after an edit is not news of the day: one short email, not a digest line.
    report = json.loads(EDIT_REVIEWED.read_text(encoding="utf-8"))
    report["data"]["page"] |= {"url": f"{GOMI}9.html", "division": "kankyo-gomi"}
    deliver(handler, report, report)
    [mail] = smtp_server.messages
    assert mail["Subject"].startswith("【koe】ページ更新の効果: 良くなりました")
    assert mail["Message-ID"] == f"<koe-alert-{report['id']}@city-tsu.example>"
    assert mail["To"] == "kankyo@city-tsu.example"
    with session_factory(engine)() as session:
        assert session.scalars(select(DigestEntry)).all() == []
