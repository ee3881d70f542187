"""The batch handler: one email per alert id, whatever the redelivery.

Per alert: skip it if the record says it is done, send, and commit the record
right after the send. Committing per alert rather than per batch narrows the
window in which a crash can send a mail twice to the moment between the SMTP
server taking it and our commit; a resend then carries the same Message-ID.

An alert for a division with `delivery: daily` is not sent here: it is stored
for the division's next digest (notifier.digest), once per alert id, and the
offset is committed after that store commits. An edit's four-week report
(koe.alerts.edit.reviewed.v1) is mailed on its own, the same way, once per id.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from koe_contract import EDIT_REVIEWED
from koe_directory import Division
from koe_kit import correlation
from koe_kit.db import transaction
from koe_kit.kafka import DeadLetters, Message, Retryable
from notifier import digest_queue, services
from notifier.compose import compose_alert_email
from notifier.mailer import PermanentMailError, TransientMailError
from notifier.models import FAILED, RETRYING, SENT
from notifier.outgoing import Outgoing

log = logging.getLogger(__name__)


class AlertHandler:
    def __init__(self, outgoing: Outgoing, *, dead_letters: DeadLetters):
        """`dead_letters`: the consumer loop's DeadLetterPolicy (notifier.consumer)."""
        self.out = outgoing
        self.dead_letters = dead_letters

    def __call__(self, batch: list[Message]) -> None:
        for message in batch:
            # Its log lines name the request id that led to this alert.
            with correlation.for_event(message.event):
                self.notify(message)

    def notify(self, message: Message) -> None:
        alert = message.event["data"]
        alert_id = alert["alert_id"]
        with transaction(self.out.sessions) as session:
            if services.is_done(session, alert_id) or digest_queue.is_queued(session, alert_id):
                log.info("alert already handled, skipped", extra={"alert_id": alert_id})
                return
        page = alert["page"]
        division = self.out.directory.owner(page["url"])
        now = datetime.now(UTC)
        edit_report = message.event["type"] == EDIT_REVIEWED
        # An edit's report is one short email four weeks on, not news of a drop: it goes
        # out on its own even to a division that reads its alerts in a daily digest.
        if division.delivery == "daily" and not edit_report:
            with transaction(self.out.sessions) as session:
                digest_queue.add_entry(session, message.event, division, now)
            log.info(
                "alert kept for the daily digest",
                extra={"alert_id": alert_id, "division": division.code},
            )
            return
        mail = compose_alert_email(
            message.event,
            division,
            mail_from=self.out.mail_from,
            sent_at=now.astimezone(self.out.timezone),
            dashboard_url=self.out.dashboard_url,
        )
        try:
            partial = self.out.mailer.send(mail)
        except TransientMailError as exc:
            self._record(alert_id, RETRYING, division, now, str(exc))
            raise Retryable(f"alert {alert_id}: SMTP: {exc}") from exc
        except PermanentMailError as exc:
            reason = f"SMTP refused the alert email for good: {exc}"
            # Dead letter first: a crash before the record commits means a second
            # dead letter on redelivery, never a lost one.
            self.dead_letters.dead_letter(message, reason)
            self._record(alert_id, FAILED, division, now, str(exc))
            log.error(
                "alert email refused, dead-lettered",
                extra={"alert_id": alert_id, "division": division.code, "error": str(exc)},
            )
            return
        self._record(alert_id, SENT, division, now, partial)
        log.info(
            "alert emailed",
            extra={"alert_id": alert_id, "division": division.code, "refused": partial},
        )

    def _record(
        self, alert_id: str, status: str, division: Division, at: datetime, error: str | None
    ) -> None:
        with transaction(self.out.sessions) as session:
            services.record_attempt(
                session, alert_id, status=status, division=division, at=at, error=error
            )
