"""Recording a response: the door's checks (token, budgets, page identity), the response
row and the outbox row, in the caller's transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Insert, bindparam, insert, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from feedback import budgets, pages, tokens
from feedback.models import OutboxEntry, Response
from feedback.schemas import Submission
from koe_directory import QUESTION_KEYS
from koe_kit import events
from koe_kit.db import on_postgresql

TOPIC = "koe.feedback.submitted.v1"
SOURCE = "koe/feedback"


@dataclass(frozen=True)
class Rules:
    """The door's rules: budgets per source, and how long a page view may change its mind;
    and this process's memory of the pages koe knows."""

    budgets: budgets.Budgets
    replace_window_s: int
    known_urls: pages.KnownUrls = field(default_factory=pages.KnownUrls)


class Recorded(NamedTuple):
    response_id: str
    # The earlier response this one replaces, if it does.
    replaces: str | None = None


class Refused(Exception):
    """The door refuses the answer (a token out of its page view, a page's URL changed):
    nothing may be stored; `field` names what is wrong, `status` the HTTP answer."""

    def __init__(self, field: str, reason: str, status: int):
        super().__init__(reason)
        self.field = field
        self.reason = reason
        self.status = status


def build_event(
    submission: Submission,
    response_id: str,
    received_at: datetime,
    replaces: str | None = None,
    source: str | None = None,
) -> dict:
    """The CloudEvent for a response; raises events.InvalidEvent if it breaks the contract."""
    data: dict[str, Any] = {
        "response_id": response_id,
        "page_id": submission.page_id,
        "page_url": submission.page_url,
        "page_title": submission.page_title,
        "division": submission.division,
        "locale": submission.locale,
        "answers": submission.answers,
    }
    # Optional fields, so events without them stay exactly what they were (DESIGN.md).
    if replaces is not None:
        data["replaces"] = replaces
    if source is not None:
        data["source"] = source
    return events.make_event(
        TOPIC,
        source=SOURCE,
        subject=submission.page_id,
        data=data,
        event_id=response_id,
        time=received_at,
    )


def record(
    session: Session,
    submission: Submission,
    received_at: datetime,
    source: str,
    rules: Rules,
    form: bool = False,
) -> Recorded:
    """Store one response from `source` (sources.py) and its event; its id (and the one it
    replaces).

    In order, each step only when the one before let the answer in:
    1. its client_token (tokens.py): a retry answers the earlier id and stores (and
       spends) nothing; a change of mind names the response it replaces; a token out
       of its page view raises Refused (409);
    2. the page's identity (pages.py): another URL for a known page raises Refused
       (422);
    3. the response and its outbox row;
    4. the source's budgets, all in one statement: for answers (per page and across
       pages; the form's own when `form`) and, for a page new to koe, for new pages.
       Over one raises budgets.OverBudget. Last, because every answer of a source
       locks that source's budget rows until it commits: spent just before the
       commit, they are held for one statement, not for the whole request, and the
       answers of one busy network (a city hall, a carrier's NAT) queue the least.
    Whatever raises, the caller's rollback keeps nothing of it; an event that breaks
    the schema raises events.InvalidEvent.
    """
    response_id = str(uuid.uuid4())
    replaces = None
    if submission.client_token is not None:
        try:
            claim = tokens.claim(
                session,
                submission.client_token,
                submission.page_id,
                response_id,
                submission.answers,
                received_at,
                rules.replace_window_s,
            )
        except tokens.TokenRefused as exc:
            raise Refused("client_token", str(exc), 409) from None
        if claim.earlier is not None:
            return Recorded(claim.earlier)
        replaces = claim.replaces
    try:
        new_page = pages.fix(
            session, submission.page_id, submission.page_url, received_at, rules.known_urls
        )
    except pages.PageMoved as exc:
        raise Refused("page_url", str(exc), 422) from None
    event = build_event(submission, response_id, received_at, replaces, source)
    answers = submission.answers
    row = {
        "id": response_id,
        "page_id": submission.page_id,
        "page_url": submission.page_url,
        "page_title": submission.page_title,
        "division": submission.division,
        "locale": submission.locale,
        **{question: answers.get(question) for question in QUESTION_KEYS},
        "client_token": submission.client_token,
        "replaces": replaces,
        "source": source,
        "received_at": received_at,
    }
    payload = events.encode(event).decode("utf-8")
    limits = rules.budgets
    scopes = budgets.answer_scopes(limits, submission.page_id, form)
    if new_page:
        scopes.append(budgets.new_page_scope(limits))
    connection = session.connection()
    spend = budgets.params(source, scopes, received_at)
    if on_postgresql(session):
        # The response, its outbox row and the budgets in one statement: one round trip.
        spent = connection.execute(
            _record_and_spend(session, len(scopes)),
            {
                **{f"r_{name}": value for name, value in row.items()},
                "r_topic": TOPIC,
                "r_payload": payload,
                **spend,
            },
        )
    else:
        connection.execute(_RESPONSE_INSERT, row)
        connection.execute(
            _OUTBOX_INSERT,
            {
                "event_id": response_id,
                "topic": TOPIC,
                "key": submission.page_id,
                "payload": payload,
                "created_at": received_at,
            },
        )
        spent = connection.execute(budgets.upsert(session, len(scopes)), spend)
    budgets.check(spent, scopes, received_at)
    return Recorded(response_id, replaces)


_responses = Response.__table__
_outbox = OutboxEntry.__table__


def _param(column: Any) -> Any:
    # Typed, so PostgreSQL need not guess the type of a parameter in a SELECT list; named
    # apart from the columns of the budgets upsert the statement is attached to.
    return bindparam(f"r_{column.name}", type_=column.type)


_RESPONSE_INSERT: Insert = insert(_responses)
_OUTBOX_INSERT: Insert = insert(_outbox)


def _response_and_event() -> tuple[Any, Any]:
    """PostgreSQL: the response and its outbox row as data-modifying CTEs, to run with
    the budgets upsert in one statement (bench/bench_ingest.py). The outbox row is
    inserted FROM the response's RETURNING; both run whatever the budgets say, and
    record() raises OverBudget for the caller's rollback to take them back."""
    response = (
        postgresql.insert(_responses)
        .values({column.name: _param(column) for column in _responses.c})
        .returning(_responses.c.id, _responses.c.page_id, _responses.c.received_at)
        .cte("response")
    )
    event = (
        postgresql.insert(_outbox)
        .from_select(
            ["event_id", "topic", "key", "payload", "created_at"],
            select(
                response.c.id,
                _param(_outbox.c.topic),
                response.c.page_id,
                _param(_outbox.c.payload),
                response.c.received_at,
            ),
        )
        .cte("event")
    )
    return response, event


_RESPONSE_AND_EVENT = _response_and_event()
_RECORD_AND_SPEND: dict[int, Any] = {}


def _record_and_spend(session: Session, scopes: int) -> Any:
    statement = _RECORD_AND_SPEND.get(scopes)
    if statement is None:
        statement = budgets.upsert(session, scopes).add_cte(*_RESPONSE_AND_EVENT)
        _RECORD_AND_SPEND[scopes] = statement
    return statement
