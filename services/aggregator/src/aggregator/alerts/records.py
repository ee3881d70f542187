"""Alerts as the dashboard shows them, and the divisions' "対応済み" records.

The alerts are the aggregator's own outbox rows (each keeps the koe.alerts.v1
event it published), so the dashboard shows exactly what was emailed. A kind
this module has no words for (a later rule may add one) is shown by its name,
and any questions it carries are listed the same way.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from aggregator.accounts.auth import aware
from aggregator.alerts.models import AlertHandling, AlertOutbox, publishable
from aggregator.pages.models import Page
from koe_contract import ALERT_DROP, ALERT_RECOVERED
from koe_kit.db import among, dialect_insert

MAX_NOTE_LENGTH = 1000
# A page's own alerts on its view (a few a year under the drop rule's cooldown).
LIST_LIMIT = 500
# What the alerts list can show: open first, as a division's work to do.
STATUSES = ("open", "handled", "all")
# Event types that carry no `kind` of their own.
_KIND_BY_TYPE = {ALERT_DROP: "drop", ALERT_RECOVERED: "recovery"}


@dataclass(frozen=True)
class QuestionChange:
    question: str
    before: float | None
    n_before: int | None
    after: float | None
    n_after: int | None
    # The drop detector's chart: the weighted score it compared, with its effective n,
    # and how far below the reference counted as a drop (absent for the drop rule's).
    weighted: float | None = None
    effective_n: float | None = None
    limit_points: float | None = None


@dataclass(frozen=True)
class AlertView:
    alert_id: str
    page_id: str
    page_title: str | None
    page_url: str
    kind: str
    created_at: datetime
    recent: tuple[date, date] | None
    baseline: tuple[date, date] | None
    changes: list[QuestionChange] = field(default_factory=list)
    handled_by: str | None = None
    handled_at: datetime | None = None
    note: str = ""

    @property
    def handled(self) -> bool:
        return self.handled_at is not None


# An alert's page, if it is shown (pages/registry.py): a hidden page's alerts are not.
# Nor is an alert held for review (crowd.py) until an admin releases it: the lists are
# what was emailed; held alerts are the admins' (alerts/held.py).
# An edit's four-week report shares the outbox (edits/reports.py) but is no alert: nothing
# to handle, so no list counts it; the page's view shows its edits instead.
_an_alert = publishable() & ~AlertOutbox.edit_report
_shown_page = (Page.id == AlertOutbox.page_id) & Page.visible & _an_alert


def _scoped(session: Session, query: Select, page_ids: Collection[str] | None) -> Select:
    """The query over the given pages' alerts only; None means every page (an admin)."""
    if page_ids is None:
        return query
    return query.where(among(session, AlertOutbox.page_id, list(page_ids)))


def list_alerts(
    session: Session,
    page_ids: Collection[str] | None,
    *,
    page_id: str | None = None,
    status: str = "all",
    offset: int = 0,
    limit: int = LIST_LIMIT,
) -> list[AlertView]:
    """Newest first; status is one of STATUSES."""
    query = (
        select(AlertOutbox, AlertHandling, Page.title, Page.url)
        .join(Page, _shown_page)
        .outerjoin(AlertHandling, AlertHandling.alert_id == AlertOutbox.alert_id)
        # The id breaks ties, so a page boundary never shows an alert twice or skips one.
        .order_by(AlertOutbox.created_at.desc(), AlertOutbox.id.desc())
        .offset(offset)
        .limit(limit)
    )
    query = _scoped(session, query, page_ids)
    if page_id is not None:
        query = query.where(AlertOutbox.page_id == page_id)
    if status == "open":
        query = query.where(AlertHandling.alert_id.is_(None))
    elif status == "handled":
        query = query.where(AlertHandling.alert_id.is_not(None))
    return [
        alert_view(row, handling, title, url)
        for row, handling, title, url in session.execute(query)
    ]


def alert_counts(session: Session, page_ids: Collection[str] | None) -> dict[str, int]:
    """How many alerts there are of each status (and "all") over the given pages."""
    query = (
        select(func.count(), func.count(AlertHandling.alert_id))
        .select_from(AlertOutbox)
        .join(Page, _shown_page)  # as list_alerts, so the two agree
        .outerjoin(AlertHandling, AlertHandling.alert_id == AlertOutbox.alert_id)
    )
    every, handled = session.execute(_scoped(session, query, page_ids)).one()
    return {"open": every - handled, "handled": handled, "all": every}


def open_alert_counts(session: Session, page_ids: Collection[str]) -> dict[str, int]:
    if not page_ids:
        return {}
    rows = session.execute(
        _scoped(
            session,
            select(AlertOutbox.page_id, func.count())
            .outerjoin(AlertHandling, AlertHandling.alert_id == AlertOutbox.alert_id)
            .where(AlertHandling.alert_id.is_(None), _an_alert)
            .group_by(AlertOutbox.page_id),
            page_ids,
        )
    )
    return {page_id: count for page_id, count in rows}


def alert_page(session: Session, alert_id: str) -> str | None:
    """The page of an alert a division may handle (one that was emailed or released)."""
    return session.scalar(
        select(AlertOutbox.page_id).where(AlertOutbox.alert_id == alert_id, _an_alert)
    )


def mark_handled(session: Session, alert_id: str, *, by: str, note: str) -> None:
    """Record who handled the alert; the first record stays (a repeated POST changes nothing)."""
    insert = dialect_insert(session, AlertHandling.__table__)
    session.execute(
        insert.on_conflict_do_nothing(index_elements=["alert_id"]),
        {"alert_id": alert_id, "handled_by": by, "handled_at": datetime.now(UTC), "note": note},
    )


def alert_view(row: AlertOutbox, handling: AlertHandling | None, title, url) -> AlertView:
    event = json.loads(row.payload)
    data: dict[str, Any] = event.get("data", {})
    return AlertView(
        alert_id=row.alert_id,
        page_id=row.page_id,
        page_title=title,
        page_url=url,
        kind=str(data.get("kind") or _KIND_BY_TYPE.get(event.get("type"), event.get("type"))),
        created_at=aware(row.created_at),
        recent=_window(data.get("recent")),
        baseline=_window(data.get("baseline")),
        changes=[_change(q) for q in data.get("questions", []) if isinstance(q, dict)],
        handled_by=handling.handled_by if handling else None,
        handled_at=aware(handling.handled_at) if handling else None,
        note=handling.note if handling else "",
    )


def _window(raw: Any) -> tuple[date, date] | None:
    try:
        return date.fromisoformat(raw["start"]), date.fromisoformat(raw["end"])
    except (TypeError, KeyError, ValueError):
        return None


def _change(raw: dict[str, Any]) -> QuestionChange:
    before, after, chart = (_section(raw, key) for key in ("baseline", "recent", "chart"))
    return QuestionChange(
        question=str(raw.get("question", "")),
        before=before.get("score"),
        n_before=before.get("n"),
        after=after.get("score"),
        n_after=after.get("n"),
        weighted=chart.get("weighted_score"),
        effective_n=chart.get("effective_n"),
        limit_points=chart.get("limit_points"),
    )


def _section(raw: dict[str, Any], key: str) -> dict[str, Any]:
    """One object of a stored alert's question (an old payload may lack it)."""
    value = raw.get(key)
    return value if isinstance(value, dict) else {}
