"""The `data` of each event type as TypedDicts, for mypy where services build and read
them. The JSON Schemas in schemas/ stay the contract on the wire (producers and
consumers validate against them); these types follow them field for field.
"""

# No `from __future__ import annotations`: NotRequired must be seen at run time, so that
# __required_keys__ (tests/test_topic_owners.py) is the schema's `required`.
from typing import Literal, NotRequired, TypedDict

from koe_contract import ALERT_DROP, ALERT_RECOVERED, EDIT_REVIEWED, FEEDBACK_SUBMITTED

# Question keys, answers and locales are plain str here: the domain carries them as
# str (koe_directory's lists), and the JSON Schema checks their values on every event.


class FeedbackSubmitted(TypedDict):
    """koe.feedback.submitted.v1"""

    response_id: str
    page_id: str
    page_url: str
    page_title: NotRequired[str | None]
    division: NotRequired[str | None]
    replaces: NotRequired[str]
    source: NotRequired[str]
    page_modified: NotRequired[str]
    locale: str
    answers: dict[str, str]  # question key -> "yes" | "neutral" | "no"


class Page(TypedDict):
    id: str
    url: str
    title: str | None
    division: str | None


class Window(TypedDict):
    """Inclusive calendar days (ISO dates) in the city's time zone."""

    start: str
    end: str


class Interval(TypedDict):
    low: float
    high: float


class Tally(TypedDict):
    yes: int
    neutral: int
    no: int
    n: int
    score: float
    interval: NotRequired[Interval]


class DroppedQuestion(TypedDict):
    question: str
    recent: Tally
    baseline: Tally
    drop_points: float
    p_value: float
    # weighted_score, effective_n, limit_points, half_life_days: the drop detector's
    chart: NotRequired[dict[str, float]]


class AlertDrop(TypedDict):
    """koe.alerts.v1"""

    alert_id: str
    kind: Literal["drop"]
    page: Page
    recent: Window
    baseline: Window
    questions: list[DroppedQuestion]


class RecoveredQuestion(TypedDict):
    question: str
    drop_alert_id: str
    baseline: Tally
    dropped: Tally
    recent: Tally
    window: Window


class AlertRecovered(TypedDict):
    """koe.alerts.recovered.v1"""

    alert_id: str
    page: Page
    as_of: str
    questions: list[RecoveredQuestion]


Outcome = Literal["better", "worse", "unclear", "too_few"]


class Edit(TypedDict):
    day: str
    previous: str
    confirmed_by: Literal["sources", "list"]


class EditTally(TypedDict):
    """An edit's side: unlike an alert's tally it may have no answer (n 0, score None)."""

    yes: int
    neutral: int
    no: int
    n: int
    score: float | None
    interval: Interval | None


class Change(TypedDict):
    points: float
    low: float
    high: float


class ReviewedQuestion(TypedDict):
    question: str
    outcome: Outcome
    before: EditTally
    after: EditTally
    change: Change | None


class EditReviewed(TypedDict):
    """koe.alerts.edit.reviewed.v1"""

    alert_id: str
    page: Page
    edit: Edit
    before: Window
    after: Window
    outcome: Outcome
    questions: list[ReviewedQuestion]


# The payload type of each event type (tests/test_topic_owners.py holds them to the schemas).
BY_EVENT_TYPE: dict[str, type] = {
    FEEDBACK_SUBMITTED: FeedbackSubmitted,
    ALERT_DROP: AlertDrop,
    ALERT_RECOVERED: AlertRecovered,
    EDIT_REVIEWED: EditReviewed,
}
