"""Bookkeeping of daily digests. Functions take a session and never commit.

An alert for a division with `delivery: daily` becomes a waiting entry. The
digest of a division for day D, due at D `digest_hour`:00 in the city's time
zone, lists every entry that arrived before that moment and no earlier digest
listed. Its row in `digests` is created by the one digest step that claims it
(a primary key, so two notifier processes cannot both claim it), in the same
transaction that assigns the entries to it; from then on the row says whether
the email went out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from koe_directory import Division
from koe_kit import events
from koe_kit.db import dialect_insert, rows_affected, table_of
from notifier.models import FAILED, RETRYING, SENDING, SENT, Digest, DigestEntry

_ERROR_LIMIT = 2000


def _utc(moment: datetime) -> datetime:
    """Every stored or compared time in UTC: SQLite keeps no offset, only the digits."""
    return moment.astimezone(UTC)


def add_entry(
    session: Session, event: Mapping[str, Any], division: Division, received_at: datetime
) -> None:
    """Store an alert for its division's next digest (once: a redelivery is ignored)."""
    insert = dialect_insert(session, table_of(DigestEntry)).values(
        alert_id=event["data"]["alert_id"],
        division_code=division.code,
        event=events.encode(dict(event)).decode("utf-8"),
        received_at=_utc(received_at),
        digest_date=None,
    )
    session.execute(insert.on_conflict_do_nothing(index_elements=["alert_id"]))


def is_queued(session: Session, alert_id: str) -> bool:
    return session.get(DigestEntry, alert_id) is not None


def due_day(now: datetime, hour: int, timezone: ZoneInfo) -> date:
    """The day of the latest digest moment (`hour`:00 city time) at or before now."""
    local = now.astimezone(timezone)
    return local.date() if local.hour >= hour else local.date() - timedelta(days=1)


def digest_moment(day: date, hour: int, timezone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=timezone)


def waiting_divisions(session: Session) -> list[str]:
    return list(
        session.scalars(
            select(DigestEntry.division_code)
            .where(DigestEntry.digest_date.is_(None))
            .distinct()
            .order_by(DigestEntry.division_code)
        )
    )


def claim_new(
    session: Session, division: Division, day: date, *, before: datetime, now: datetime
) -> bool:
    """Create the digest of (division, day) with the entries that arrived before
    `before` and are in no digest yet. False when there is nothing to send or the
    digest of that day exists already (sent, or claimed by another process)."""
    before, now = _utc(before), _utc(now)
    waiting = DigestEntry.division_code == division.code, DigestEntry.digest_date.is_(None)
    entries = session.scalar(select(func.count()).where(*waiting, DigestEntry.received_at < before))
    if not entries:
        return False
    insert = dialect_insert(session, table_of(Digest)).values(
        division_code=division.code,
        digest_date=day,
        status=SENDING,
        entries=entries,
        attempts=0,
        recipients=", ".join(division.emails),
        claimed_at=now,
    )
    # RETURNING, not rowcount: an ORM session reports -1 rows for this on psycopg.
    claimed = session.execute(
        insert.on_conflict_do_nothing(index_elements=["division_code", "digest_date"]).returning(
            Digest.division_code
        )
    ).first()
    if claimed is None:
        return False
    session.execute(
        update(DigestEntry)
        .where(*waiting, DigestEntry.received_at < before)
        .values(digest_date=day)
    )
    return True


@dataclass(frozen=True)
class Claimed:
    division_code: str
    day: date


def claim_retries(session: Session, now: datetime, lease: timedelta) -> list[Claimed]:
    """Digests to try again: due retries, and claims whose step died mid-send
    (older than `lease`). Each is taken with a compare-and-set on its status, so
    one process gets it."""
    now = _utc(now)
    retry = and_(Digest.status == RETRYING, Digest.next_attempt_at <= now)
    stale = and_(Digest.status == SENDING, Digest.claimed_at < now - lease)
    candidates = session.execute(
        select(Digest.division_code, Digest.digest_date, Digest.status, Digest.claimed_at).where(
            or_(retry, stale)
        )
    ).all()
    taken = []
    for code, day, status, claimed_at in candidates:
        result = session.execute(
            update(Digest)
            .where(
                Digest.division_code == code,
                Digest.digest_date == day,
                Digest.status == status,
                Digest.claimed_at == claimed_at,
            )
            .values(status=SENDING, claimed_at=now)
        )
        if rows_affected(result):
            taken.append(Claimed(code, day))
    return taken


def entries_of(session: Session, division_code: str, day: date) -> list[dict[str, Any]]:
    """The events a digest lists, in arrival order."""
    rows = session.scalars(
        select(DigestEntry.event)
        .where(DigestEntry.division_code == division_code, DigestEntry.digest_date == day)
        .order_by(DigestEntry.received_at, DigestEntry.alert_id)
    )
    return [json.loads(row) for row in rows]


def record(
    session: Session,
    division_code: str,
    day: date,
    *,
    status: str,
    at: datetime,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> None:
    assert status in (SENT, FAILED, RETRYING)
    at = _utc(at)
    retry_at = _utc(retry_at) if retry_at else None
    session.execute(
        update(Digest)
        .where(Digest.division_code == division_code, Digest.digest_date == day)
        .values(
            status=status,
            attempts=Digest.attempts + 1,
            sent_at=at if status == SENT else None,
            next_attempt_at=retry_at,
            last_error=error[:_ERROR_LIMIT] if error else None,
        )
    )


def attempts(session: Session, division_code: str, day: date) -> int:
    row = session.get(Digest, (division_code, day))
    return row.attempts if row else 0
