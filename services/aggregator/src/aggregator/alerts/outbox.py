"""Publishing the alert outbox: after each committed batch, send what is unsent.

The alert rows were committed with the counts that caused them, so an alert
exists exactly when its counts do. Publishing happens afterwards and may fail
(broker down): the rows then stay unsent and go out after the next batch or at
the next start. A crash between send and marking sent publishes the alert a
second time with the same id; the notifier emails once per alert id.

Several consumers (`--scale aggregator-consumer=3`) each run a publisher over
the one outbox. On PostgreSQL a publisher claims its rows (FOR UPDATE SKIP
LOCKED), sends them and marks them sent in one short transaction, so the others
skip them rather than send them again. A page's alerts keep their order (a
recovery follows its drop on the page's partition, docs/alerts.md): only a
page's oldest unsent alert can be claimed, the next one once it is sent. SQLite
runs one consumer (`make run`).

An alert held for review (crowd.py) is not sent, and does not hold up its page's
later alerts, until an admin releases it on the dashboard. The dashboard's web app
has no producer, so the consumer looks at the outbox again when it has had no
batch for RECHECK_S, and sends the release within seconds on a quiet system too.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from kafka.errors import KafkaError
from sqlalchemy import exists, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, aliased, sessionmaker

from aggregator.alerts.models import AlertOutbox, publishable
from koe_contract import ALERTS_TOPIC
from koe_kit.db import claim, transaction
from koe_kit.kafka import close_producer

log = logging.getLogger(__name__)

# One indexed query per this many idle seconds: a released alert waits at most this long.
RECHECK_S = 5.0


class OutboxPublisher:
    """The ConsumerLoop's after_commit hook.

    It only looks at the table when there may be something to send (at start,
    after a batch that wrote alerts, after a failed attempt), so the common
    batch without alerts costs no query.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        producer,
        *,
        topic: str = ALERTS_TOPIC,
        chunk: int = 100,
        send_timeout_s: float = 30.0,
    ):
        self.sessions = sessions
        self.producer = producer
        self.topic = topic
        self.chunk = chunk
        self.send_timeout_s = send_timeout_s
        self.maybe_pending = True
        self._looked_at = time.monotonic()

    def close(self) -> None:
        """Close the producer within one delivery timeout; unsent alerts stay in the outbox."""
        close_producer(self.producer, self.producer.config["delivery_timeout_ms"] / 1000 + 1)

    def note_pending(self) -> None:
        self.maybe_pending = True

    def recheck(self) -> int:
        """The ConsumerLoop's on_idle hook: look again after RECHECK_S without a look,
        for alerts an admin released since."""
        if time.monotonic() - self._looked_at >= RECHECK_S:
            self.maybe_pending = True
        return self()

    def __call__(self) -> int:
        """Send unsent alerts; return how many went out. Never raises for an outage."""
        if not self.maybe_pending:
            return 0
        try:
            return self._publish()
        except OperationalError as exc:
            # The counts are committed; the alerts wait in the outbox for the next call.
            log.warning("outbox unreadable, will retry", extra={"error": str(exc)[:300]})
            return 0

    def _publish(self) -> int:
        self._looked_at = time.monotonic()
        sent_total = 0
        # Until a round finds nothing: sending a page's alert makes its next one claimable.
        while True:
            with transaction(self.sessions) as session:
                rows = session.execute(_claimable(session, self.chunk)).all()
                if not rows:
                    self.maybe_pending = False
                    return sent_total
                sent = self._send(rows)
                if sent:
                    session.execute(
                        update(AlertOutbox)
                        .where(AlertOutbox.id.in_(sent))
                        .values(sent_at=datetime.now(UTC))
                    )
            sent_total += len(sent)
            if len(sent) < len(rows):
                return sent_total  # the broker failed; maybe_pending stays set for next time

    def _send(self, rows) -> list[int]:
        sent: list[int] = []
        try:
            futures = [
                (
                    row.id,
                    self.producer.send(self.topic, key=row.page_id, value=row.payload.encode()),
                )
                for row in rows
            ]
            for row_id, future in futures:
                future.get(timeout=self.send_timeout_s)
                sent.append(row_id)
        except KafkaError as exc:
            log.warning(
                "could not publish alerts; they stay in the outbox",
                extra={"error": str(exc)[:300], "unsent": len(rows) - len(sent)},
            )
        return sent


def _claimable(session: Session, limit: int):
    """Up to `limit` unsent publishable alerts, each its page's oldest one, claimed."""
    earlier = aliased(AlertOutbox)
    return claim(
        session,
        select(AlertOutbox.id, AlertOutbox.page_id, AlertOutbox.payload)
        .where(
            AlertOutbox.sent_at.is_(None),
            publishable(),
            # An alert held for review does not hold up its page's later ones.
            ~exists().where(
                earlier.page_id == AlertOutbox.page_id,
                earlier.sent_at.is_(None),
                publishable(earlier),
                earlier.id < AlertOutbox.id,
            ),
        )
        .order_by(AlertOutbox.id)
        .limit(limit),
    )
