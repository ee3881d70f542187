"""Alerts held for review (crowd.py): what admins see, release and dismiss.

A held alert is an alert_outbox row with a held_reason. Releasing it makes it
publishable: the outbox sends it once, like any other alert (the notifier emails
once per alert id). Dismissing it means it is never sent. Either decision is final
and made once: the update only takes a row that is still waiting, so two admins
pressing at once, or one pressing twice, decide it once. Who decided and when is
kept on the row. Domain functions take a session and never commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from aggregator.accounts.auth import aware
from aggregator.alerts.models import AlertOutbox
from aggregator.alerts.records import AlertView, alert_view
from aggregator.pages.models import Page

STATES = ("waiting", "released", "dismissed")

_held = AlertOutbox.held_reason.is_not(None)
_waiting = _held & AlertOutbox.released_at.is_(None) & AlertOutbox.dismissed_at.is_(None)
_BY_STATE = {
    "waiting": _waiting,
    "released": AlertOutbox.released_at.is_not(None),
    "dismissed": AlertOutbox.dismissed_at.is_not(None),
}


@dataclass(frozen=True)
class DayRow:
    day: date
    n: int
    sources: int


@dataclass(frozen=True)
class HeldAlert:
    alert: AlertView
    reason: str
    start: date | None
    end: date | None
    n: int
    sources: int
    largest_source_share: float | None
    busiest_day: date | None
    busiest_day_share: float | None
    days: list[DayRow]
    rule: dict[str, Any]
    released_by: str | None
    released_at: datetime | None
    dismissed_by: str | None
    dismissed_at: datetime | None

    @property
    def state(self) -> str:
        if self.released_at is not None:
            return "released"
        return "dismissed" if self.dismissed_at is not None else "waiting"


def held_counts(session: Session) -> dict[str, int]:
    """How many held alerts are in each state."""
    return {
        state: session.scalar(select(func.count()).select_from(AlertOutbox).where(_held, where))
        or 0
        for state, where in _BY_STATE.items()
    }


def list_held(
    session: Session, state: str = "waiting", *, offset: int = 0, limit: int = 50
) -> list[HeldAlert]:
    """Held alerts in `state` (one of STATES), newest first."""
    query = (
        select(AlertOutbox, Page.title, Page.url)
        .outerjoin(Page, Page.id == AlertOutbox.page_id)
        .where(_held, _BY_STATE[state])
        .order_by(AlertOutbox.created_at.desc(), AlertOutbox.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return [_held_view(row, title, url) for row, title, url in session.execute(query)]


def get_held(session: Session, alert_id: str) -> HeldAlert | None:
    found = session.execute(
        select(AlertOutbox, Page.title, Page.url)
        .outerjoin(Page, Page.id == AlertOutbox.page_id)
        .where(AlertOutbox.alert_id == alert_id, _held)
    ).one_or_none()
    return None if found is None else _held_view(*found)


def release(session: Session, alert_id: str, *, by: str, now: datetime) -> bool:
    """Let a waiting alert be sent; False when it is not waiting (already decided)."""
    return _decide(session, alert_id, released_by=by, released_at=now)


def dismiss(session: Session, alert_id: str, *, by: str, now: datetime) -> bool:
    """Never send a waiting alert; False when it is not waiting (already decided)."""
    return _decide(session, alert_id, dismissed_by=by, dismissed_at=now)


def _decide(session: Session, alert_id: str, **values: Any) -> bool:
    result = session.execute(
        update(AlertOutbox).where(AlertOutbox.alert_id == alert_id, _waiting).values(**values)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def _held_view(row: AlertOutbox, title: str | None, url: str | None) -> HeldAlert:
    evidence: dict[str, Any] = json.loads(row.held_evidence or "{}")
    window = evidence.get("window") or {}
    return HeldAlert(
        alert=alert_view(row, None, title, url or ""),
        reason=str(row.held_reason),
        start=_day(window.get("start")),
        end=_day(window.get("end")),
        n=int(evidence.get("n", 0)),
        sources=int(evidence.get("sources", 0)),
        largest_source_share=evidence.get("largest_source_share"),
        busiest_day=_day(evidence.get("busiest_day")),
        busiest_day_share=evidence.get("busiest_day_share"),
        days=[
            DayRow(day, int(d.get("n", 0)), int(d.get("sources", 0)))
            for d in evidence.get("days", [])
            if (day := _day(d.get("day"))) is not None
        ],
        rule=evidence.get("rule", {}),
        released_by=row.released_by,
        released_at=aware(row.released_at) if row.released_at else None,
        dismissed_by=row.dismissed_by,
        dismissed_at=aware(row.dismissed_at) if row.dismissed_at else None,
    )


def _day(raw: Any) -> date | None:
    try:
        return date.fromisoformat(raw)
    except (TypeError, ValueError):
        return None
