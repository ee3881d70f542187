"""kill -9 of the relay and of the notifier in the middle of their work, then a restart:
no response lost or counted twice, no alert lost or emailed twice (bar the one window
SMTP cannot close, shown below).

(kill -9 of the aggregator is tests/test_exactly_once.py.)"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select, text

from faults.stream import Citizens, counted, tally
from feedback.models import OutboxEntry
from koe_devkit.testing import wait_until
from koe_kit import events
from koe_kit.db import make_engine
from koe_kit.kafka import read_topic
from notifier.models import SentAlert
from support import SITE, drained, emails_per_alert, history, publish, wait_for_partitions

pytestmark = pytest.mark.e2e

FEEDBACK = "koe.feedback.submitted.v1"
ALERTS = "koe.alerts.v1"
BACKLOG = 800  # responses waiting in the outbox when the relay starts publishing
RELAY_BATCH = 50
KILLS = 2  # each between the broker's ack of a batch and the outbox's mark


class Outbox:
    """The feedback database's outbox, and what of it the broker holds."""

    def __init__(self, koe, bootstrap: str):
        self.engine = make_engine(koe.stack.env["FEEDBACK_DATABASE_URL"])
        self.bootstrap = bootstrap

    def rows(self, sent: bool) -> int:
        done = OutboxEntry.sent_at.is_not(None) if sent else OutboxEntry.sent_at.is_(None)
        with self.engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(OutboxEntry).where(done))

    def published_ids(self) -> Counter[str]:
        """Each event id on the topic, with how many times it is there. (Read, not
        counted from end offsets: Tansu's are the last batch's base offset + 1.)"""
        return Counter(events.decode(r.value)["id"] for r in read_topic([self.bootstrap], FEEDBACK))

    def on_topic(self) -> int:
        return sum(self.published_ids().values())

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def outbox_marks_held(outbox: Outbox) -> Iterator[None]:
    """Hold the relay between the broker's ack and its commit. A SHARE lock on the
    outbox table lets it claim rows (SELECT ... FOR UPDATE) and publish them, and
    blocks its UPDATE that marks them sent until the lock goes (PostgreSQL, which the
    stack runs on). Without it a batch takes milliseconds: no kill would land there."""
    with outbox.engine.connect() as connection:
        connection.execute(text("LOCK TABLE outbox IN SHARE MODE"))
        yield
        connection.rollback()


def kill_relay_between_ack_and_mark(koe, outbox: Outbox) -> None:
    """Start the relay and kill -9 it once the broker has taken a batch that the outbox
    has not marked sent: the worst moment, as the batch goes out again after a restart."""
    on_topic = outbox.on_topic()
    with outbox_marks_held(outbox):
        koe.stack.start("feedback-relay")
        wait_until(
            lambda: outbox.on_topic() >= on_topic + RELAY_BATCH,
            what="a batch on the topic, not yet marked sent",
        )
        koe.stack.kill("feedback-relay", signal.SIGKILL)


def test_kill_9_of_the_relay_mid_publish_loses_and_doubles_nothing(koe_factory, broker, figures):
    koe = koe_factory(KOE_RELAY_BATCH=str(RELAY_BATCH))
    # A backlog first, so the relay dies with most of it still to publish.
    koe.stack.kill("feedback-relay", signal.SIGTERM)
    citizens = Citizens(koe).start()
    wait_until(lambda: citizens.total >= BACKLOG, what=f"{BACKLOG} responses accepted")
    citizens.stop()
    outbox = Outbox(koe, broker.bootstrap)
    try:
        assert outbox.rows(sent=False) == citizens.total and outbox.on_topic() == 0
        for _ in range(KILLS):
            kill_relay_between_ack_and_mark(koe, outbox)
            # The broker holds the batch; the outbox has it unsent, and the rest too.
            assert len(outbox.published_ids()) == RELAY_BATCH
            assert outbox.rows(sent=False) == citizens.total, "the kill must land mid-publish"

        koe.stack.start("feedback-relay")
        wait_until(lambda: outbox.rows(sent=False) == 0, what="the outbox published")
        wait_until(lambda: counted(koe) >= citizens.total, what="every response counted")
        drained(koe, broker.bootstrap)  # a double count, if any, shows now
        published = outbox.published_ids()
    finally:
        outbox.close()

    # At least once on the topic: every accepted response, the killed batch 1 + KILLS
    # times ...
    assert set(published) == set(citizens.ids), "an accepted response never reached the topic"
    duplicates = sum(published.values()) - len(published)
    assert duplicates == KILLS * RELAY_BATCH
    # ... and exactly once in the stats, page by page and question by question.
    result = tally(koe, citizens)
    assert result.wrong == [], result.wrong
    figures(
        fault=f"kill -9 of the relay mid-publish, {KILLS}× ({duplicates} duplicates on the topic)",
        in_flight=citizens.total,
        lost=result.lost,
        doubled=result.doubled,
    )


DROPPING = [f"{SITE}/shisei/dx/{n}.html" for n in range(24)]  # division somu-dx: email at once


def alert_ids(bootstrap: str) -> list[str]:
    return [events.decode(r.value)["data"]["alert_id"] for r in read_topic([bootstrap], ALERTS)]


def statuses(koe) -> Counter[str]:
    engine = make_engine(koe.stack.env["NOTIFIER_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            return Counter(connection.scalars(select(SentAlert.status)))
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "server_kept_it",
    [False, True],
    ids=["before-the-server-took-the-mail", "after-the-server-took-the-mail"],
)
def test_kill_9_of_the_notifier_mid_send(koe_factory, broker, smtp_server, figures, server_kept_it):
    """The kill lands while the notifier waits for the SMTP server's answer to one mail,
    a third of the way through a run of alerts. If the server had not taken that mail
    yet, every alert is emailed exactly once. If it had (its "250" was on the way), the
    notifier never learnt so and sends that one mail again after the restart: the one
    window SMTP leaves open. The resend carries the same Message-ID, so mail clients
    can recognise it."""
    koe = koe_factory()
    # Many pages drop at once while the notifier is down, so it starts on a whole run.
    wait_for_partitions(koe, "notifier-consumer")
    koe.stack.kill("notifier-consumer", signal.SIGTERM)
    publish(broker.bootstrap, FEEDBACK, [e for url in DROPPING for e in history(url)])
    wait_until(
        lambda: len(alert_ids(broker.bootstrap)) >= len(DROPPING),
        timeout_s=60,
        what="an alert for every page",
    )
    alerts = alert_ids(broker.bootstrap)
    assert len(alerts) == len(set(alerts)) == len(DROPPING)

    held = smtp_server.hold_reply(after=len(alerts) // 3, keep=server_kept_it)
    koe.stack.start("notifier-consumer")
    assert held.arrived.wait(60), "the notifier never reached the held mail"
    koe.stack.kill("notifier-consumer", signal.SIGKILL)
    held.release()
    emailed_at_kill = len(smtp_server.messages)
    assert emailed_at_kill < len(alerts), "the kill must land mid-run"

    koe.stack.start("notifier-consumer")
    wait_until(
        lambda: set(emails_per_alert(smtp_server.messages)) == set(alerts),
        what="every alert emailed",
    )
    drained(koe, broker.bootstrap)  # a second email, if the restart resent one, is here
    per_alert = emails_per_alert(smtp_server.messages)
    doubled = sum(n - 1 for n in per_alert.values())
    assert len(smtp_server.messages) == sum(per_alert.values()), "a mail that is no alert's"
    assert set(per_alert) == set(alerts)
    assert doubled == (1 if server_kept_it else 0), per_alert.most_common(3)
    assert statuses(koe) == {"sent": len(alerts)}
    where = "after the SMTP server took a mail" if server_kept_it else "mid-send"
    figures(
        fault=f"kill -9 of the notifier {where}",
        in_flight=len(alerts) - emailed_at_kill,
        lost=len(set(alerts) - set(per_alert)),
        doubled=doubled,
    )
