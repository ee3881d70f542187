"""Bookkeeping of sent alerts. Functions take a session and never commit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from koe_directory import Division
from koe_kit.db import dialect_insert, table_of
from notifier.models import FINAL, RETRYING, SENT, SentAlert

_ERROR_LIMIT = 2000


def is_done(session: Session, alert_id: str) -> bool:
    """Sent, or failed for good: either way no email goes out again."""
    record = session.get(SentAlert, alert_id)
    return record is not None and record.status in FINAL


def record_attempt(
    session: Session,
    alert_id: str,
    *,
    status: str,
    division: Division,
    at: datetime,
    error: str | None = None,
) -> None:
    """Count one attempt and its outcome.

    An upsert, so two group members racing over one alert during a rebalance
    cannot fail on the primary key; a final outcome already stored is never
    overwritten (the first member's mail is the one that counts).
    """
    table = table_of(SentAlert)
    values = {
        "alert_id": alert_id,
        "status": status,
        "attempts": 1,
        "division_code": division.code,
        "recipients": ", ".join(division.emails),
        "first_attempt_at": at,
        "sent_at": at if status == SENT else None,
        "last_error": error[:_ERROR_LIMIT] if error else None,
    }
    insert = dialect_insert(session, table).values(**values)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[table.c.alert_id],
            set_={
                "status": insert.excluded.status,
                "attempts": table.c.attempts + 1,
                "division_code": insert.excluded.division_code,
                "recipients": insert.excluded.recipients,
                "sent_at": insert.excluded.sent_at,
                "last_error": insert.excluded.last_error,
            },
            where=table.c.status == RETRYING,
        )
    )
