"""The batch handler against a real SMTP server and both databases: one email per alert."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from koe_devkit.local_broker import free_port
from koe_kit.db import session_factory
from koe_kit.kafka import Message, Retryable
from notifier.config import SmtpSettings
from notifier.handler import AlertHandler
from notifier.mailer import SmtpMailer
from notifier.models import SentAlert


def as_message(event: dict, offset: int = 0) -> Message:
    return Message("koe.alerts.v1", 0, offset, event["subject"], event)


def record(engine, alert_id: str) -> SentAlert | None:
    with session_factory(engine)() as session:
        return session.scalar(select(SentAlert).where(SentAlert.alert_id == alert_id))


def test_the_same_alert_twice_sends_one_email(handler, engine, smtp_server, make_alert):
    alert = make_alert()
    handler([as_message(alert, 0), as_message(alert, 1)])
    handler([as_message(alert, 2)])  # redelivered in a later batch
    assert len(smtp_server.messages) == 1
    mail = smtp_server.messages[0]
    assert mail["To"] == "digital-kaikaku@city-tsu.example"
    assert mail["Message-ID"] == f"<koe-alert-{alert['id']}@city-tsu.example>"
    # Dated in Japan time, as the mail's own dates: a clerk's client may show it raw.
    assert mail["Date"].endswith(" +0900")
    row = record(engine, alert["id"])
    assert (row.status, row.attempts, row.division_code) == ("sent", 1, "somu-dx")
    assert row.recipients == "digital-kaikaku@city-tsu.example"
    assert row.sent_at is not None and row.last_error is None


def test_each_alert_of_a_batch_gets_its_own_email(handler, smtp_server, make_alert):
    owned = make_alert()
    unowned = make_alert(url="https://www.info.city.tsu.mie.jp/kanko/1.html", division=None)
    handler([as_message(owned, 0), as_message(unowned, 1)])
    assert [m["To"] for m in smtp_server.messages] == [
        "digital-kaikaku@city-tsu.example",
        "webmaster@city-tsu.example",
    ]


def test_a_4xx_reply_is_retried_and_sent_once_the_server_is_back(
    handler, engine, smtp_server, make_alert
):
    alert = make_alert()
    smtp_server.fail_with("451 4.3.0 try later")
    with pytest.raises(Retryable, match="451"):
        handler([as_message(alert)])
    with pytest.raises(Retryable):
        handler([as_message(alert)])
    row = record(engine, alert["id"])
    assert (row.status, row.attempts, row.sent_at) == ("retrying", 2, None)
    assert "451 4.3.0 try later" in row.last_error
    assert smtp_server.messages == []

    smtp_server.fail_with(None)
    handler([as_message(alert)])
    handler([as_message(alert)])
    assert len(smtp_server.messages) == 1
    row = record(engine, alert["id"])
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)


def test_connection_refused_is_retryable(outgoing, handler, engine, make_alert):
    # A port with nothing listening on it: the mail server is down.
    nobody = SmtpSettings(host="127.0.0.1", port=free_port(), timeout_s=5)
    handler = AlertHandler(
        replace(outgoing, mailer=SmtpMailer(nobody)), dead_letters=handler.dead_letters
    )
    alert = make_alert()
    with pytest.raises(Retryable, match="ConnectionRefusedError"):
        handler([as_message(alert)])
    assert record(engine, alert["id"]).status == "retrying"


def test_a_5xx_reply_is_recorded_failed_and_dead_lettered(
    outgoing, engine, smtp_server, make_alert
):
    dead = DeadLettersSeen()
    handler = AlertHandler(outgoing, dead_letters=dead)
    refused, fine = make_alert(), make_alert()
    smtp_server.fail_with("550 5.1.1 no such user")
    handler([as_message(refused, 0)])
    smtp_server.fail_with(None)
    handler([as_message(fine, 1), as_message(refused, 2)])

    assert [(i, "550 5.1.1 no such user" in r) for i, r in dead] == [(refused["id"], True)]
    assert len(smtp_server.messages) == 1
    row = record(engine, refused["id"])
    assert (row.status, row.attempts, row.sent_at) == ("failed", 1, None)
    assert "550 5.1.1 no such user" in row.last_error


class DeadLettersSeen(list[tuple[str, str]]):
    """The handler's dead letters, as (event id, reason)."""

    def dead_letter(self, message: Message, reason: str) -> None:
        self.append((message.event["id"], reason))
