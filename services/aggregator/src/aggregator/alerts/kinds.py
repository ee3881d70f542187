"""What an alert says: a drop of some questions of a page, or their recovery. Pure.

The drop detector (detector.py, alerts/judging.py) makes them; alerts/raising.py records
and publishes them. Alert ids are uuid5s over what identifies the problem, so a replay
of the same events makes the same ids and the notifier emails once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from aggregator.stats.scoring import Tally, Window

ALERT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:koe:alerts")


@dataclass(frozen=True)
class QuestionDrop:
    question: str
    recent: Tally
    baseline: Tally
    drop_points: float
    p_value: float
    # The detector's chart behind it (alerts/judging.py): weighted_score,
    # effective_n, limit_points, half_life_days.
    chart: Mapping[str, float] | None = None


@dataclass(frozen=True)
class DropAlert:
    alert_id: str
    page_id: str
    as_of: date
    recent: Window
    baseline: Window
    questions: list[QuestionDrop] = field(default_factory=list)


def alert_id_for(page_id: str, questions: Iterable[str], recent: Window) -> str:
    key = "|".join([page_id, ",".join(sorted(questions)), str(recent.start), str(recent.end)])
    return str(uuid.uuid5(ALERT_NAMESPACE, key))


@dataclass(frozen=True)
class OpenDrop:
    """A question's last drop alert, not followed by a recovery yet."""

    question: str
    alert_id: str
    alert_day: date  # the as_of of the alert: the last day of the evidence for the drop
    baseline: Tally  # the level the page dropped from
    dropped: Tally  # the recent window that alerted


@dataclass(frozen=True)
class QuestionRecovery:
    drop: OpenDrop
    window: Window
    recent: Tally


@dataclass(frozen=True)
class RecoveryAlert:
    alert_id: str
    page_id: str
    as_of: date
    questions: list[QuestionRecovery] = field(default_factory=list)


def recovery_id_for(page_id: str, drops: Iterable[OpenDrop]) -> str:
    parts = sorted(f"{d.question}:{d.alert_id}" for d in drops)
    return str(uuid.uuid5(ALERT_NAMESPACE, "|".join(["recovered", page_id, *parts])))
