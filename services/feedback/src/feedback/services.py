"""Recording a response: the response row and its outbox row, in the caller's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Insert, bindparam, insert, select
from sqlalchemy.orm import Session

from feedback.models import OutboxEntry, Response
from feedback.schemas import Submission
from koe_kit import events
from koe_kit.db import dialect_insert

TOPIC = "koe.feedback.submitted.v1"
SOURCE = "koe/feedback"


def build_event(submission: Submission, response_id: str, received_at: datetime) -> dict:
    """The CloudEvent for a response; raises events.InvalidEvent if it breaks the contract."""
    return events.make_event(
        TOPIC,
        source=SOURCE,
        subject=submission.page_id,
        data={
            "response_id": response_id,
            "page_id": submission.page_id,
            "page_url": submission.page_url,
            "page_title": submission.page_title,
            "division": submission.division,
            "locale": submission.locale,
            "answers": submission.answers,
        },
        event_id=response_id,
        time=received_at,
    )


def record(session: Session, submission: Submission, received_at: datetime) -> str:
    """Store one response and its event; return the response id.

    A client_token seen before returns the earlier response's id and stores
    nothing: the widget retries with the same token after a lost answer.
    The event is built (and validated) before anything is written, so an event
    that breaks the schema is never stored.
    """
    response_id = str(uuid.uuid4())
    event = build_event(submission, response_id, received_at)
    answers = submission.answers
    # Core statements built once, run on the session's connection: this is the
    # hot path, and the ORM unit of work buys nothing for two plain inserts.
    connection = session.connection()
    stored = connection.execute(
        _response_insert(session),
        {
            "id": response_id,
            "page_id": submission.page_id,
            "page_url": submission.page_url,
            "page_title": submission.page_title,
            "division": submission.division,
            "locale": submission.locale,
            "findability": answers.get("findability"),
            "clarity": answers.get("clarity"),
            "usefulness": answers.get("usefulness"),
            "client_token": submission.client_token,
            "received_at": received_at,
        },
    ).first()
    if stored is None:
        return connection.execute(
            _EARLIER_RESPONSE, {"client_token": submission.client_token}
        ).scalar_one()
    connection.execute(
        _OUTBOX_INSERT,
        {
            "event_id": response_id,
            "topic": TOPIC,
            "key": submission.page_id,
            "payload": events.encode(event).decode("utf-8"),
            "created_at": received_at,
        },
    )
    return response_id


_responses = Response.__table__
_OUTBOX_INSERT = insert(OutboxEntry.__table__)
_EARLIER_RESPONSE = select(_responses.c.id).where(
    _responses.c.client_token == bindparam("client_token")
)
_RESPONSE_INSERTS: dict[str, Insert] = {}


def _response_insert(session: Session) -> Insert:
    dialect = session.get_bind().dialect.name
    statement = _RESPONSE_INSERTS.get(dialect)
    if statement is None:
        # Concurrent retries with one token race here; the loser waits for the
        # winner's commit and then inserts nothing (and returns no row).
        statement = (
            dialect_insert(session, _responses)
            .on_conflict_do_nothing(index_elements=["client_token"])
            .returning(_responses.c.id)
        )
        _RESPONSE_INSERTS[dialect] = statement
    return statement
