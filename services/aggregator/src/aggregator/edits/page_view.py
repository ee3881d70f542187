"""A page's edits as its dashboard view shows them: each with its before/after per
question and the verdict, or, while its four weeks after are not over, the figures so far."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from aggregator.edits import verdict
from aggregator.edits.records import page_edits
from aggregator.edits.reports import comparisons, questions_json, window_json
from aggregator.stats.scoring import Window

# The newest edits a page's view compares (a page is edited a few times a year).
SHOWN = 5


@dataclass(frozen=True)
class EditView:
    day: date
    previous: date
    confirmed_by: str
    before: Window
    after: Window
    # The day the four weeks after are over and the verdict is given (and emailed).
    report_day: date
    complete: bool
    outcome: str
    questions: list[verdict.Comparison]


def edit_views(session: Session, page_id: str, today: date) -> list[EditView]:
    """The page's newest edits up to `today` first, up to SHOWN."""
    views = []
    known = [edit for edit in page_edits(session, page_id) if edit.day <= today]
    for edit in reversed(known[-SHOWN:]):
        compared = comparisons(session, page_id, edit.day, through=today)
        views.append(
            EditView(
                day=edit.day,
                previous=edit.previous,
                confirmed_by=edit.confirmed_by,
                before=verdict.before_window(edit.day),
                after=verdict.after_window(edit.day),
                report_day=verdict.report_day(edit.day),
                complete=verdict.report_day(edit.day) <= today,
                outcome=verdict.overall(compared),
                questions=compared,
            )
        )
    return views


def edit_json(view: EditView) -> dict[str, Any]:
    """An edit as the stats API gives it: the outcomes are null until the four weeks
    after it are over (the figures are those so far)."""
    return {
        "day": view.day.isoformat(),
        "previous": view.previous.isoformat(),
        "confirmed_by": view.confirmed_by,
        "before": window_json(view.before),
        "after": window_json(view.after),
        "report_day": view.report_day.isoformat(),
        "outcome": view.outcome if view.complete else None,
        "questions": questions_json(view.questions, judged=view.complete),
    }
