"""Recording a response: the response row, the client's window and the outbox row, in the
caller's transaction."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Insert, bindparam, case, delete, insert, select, update
from sqlalchemy.orm import Session

from feedback.models import ClientGuard, OutboxEntry, Response
from feedback.schemas import Submission
from koe_directory import QUESTION_KEYS
from koe_kit import events
from koe_kit.db import dialect_insert

TOPIC = "koe.feedback.submitted.v1"
SOURCE = "koe/feedback"


@dataclass(frozen=True)
class Limits:
    """Per client and page: at most `rate_max` submissions per `rate_window_s`; a
    response within `replace_window_s` of the previous one replaces it."""

    rate_max: int
    rate_window_s: int
    replace_window_s: int


class Recorded(NamedTuple):
    response_id: str
    # The earlier response this one replaces, if it does.
    replaces: str | None = None


class RateLimited(Exception):
    """Too many submissions from one client for one page; nothing may be stored."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"rate limited, retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


def build_event(
    submission: Submission, response_id: str, received_at: datetime, replaces: str | None = None
) -> dict:
    """The CloudEvent for a response; raises events.InvalidEvent if it breaks the contract."""
    data = {
        "response_id": response_id,
        "page_id": submission.page_id,
        "page_url": submission.page_url,
        "page_title": submission.page_title,
        "division": submission.division,
        "locale": submission.locale,
        "answers": submission.answers,
    }
    if replaces is not None:
        # Optional, so events without it stay exactly what they were (DESIGN.md).
        data["replaces"] = replaces
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
    client: str | None = None,
    limits: Limits | None = None,
) -> Recorded:
    """Store one response and its event; return its id (and the one it replaces).

    A client_token seen before returns the earlier response's id and stores
    nothing: the widget retries with the same token after a lost answer.
    With a `client` (clients.client_hash) and `limits`, the client's window for
    this page is updated in the same transaction: over the rate limit raises
    RateLimited (the caller rolls back, nothing is kept); within the replacement
    window the new response names the one it replaces, and its event says so
    for the aggregator. An event that breaks the schema raises
    events.InvalidEvent, and the caller's rollback keeps nothing.
    """
    response_id = str(uuid.uuid4())
    answers = submission.answers
    # Core statements built once, run on the session's connection: this is the
    # hot path, and the ORM unit of work buys nothing for plain inserts.
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
            **{question: answers.get(question) for question in QUESTION_KEYS},
            "client_token": submission.client_token,
            "replaces": None,
            "received_at": received_at,
        },
    ).first()
    if stored is None:
        return Recorded(
            connection.execute(
                _EARLIER_RESPONSE, {"client_token": submission.client_token}
            ).scalar_one()
        )
    replaces = None
    if client is not None and limits is not None:
        replaces = _guard(session, client, submission.page_id, response_id, received_at, limits)
        if replaces is not None:
            connection.execute(_MARK_REPLACEMENT, {"new_id": response_id, "replaced_id": replaces})
    event = build_event(submission, response_id, received_at, replaces)
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
    return Recorded(response_id, replaces)


def _guard(
    session: Session,
    client: str,
    page_id: str,
    response_id: str,
    now: datetime,
    limits: Limits,
) -> str | None:
    """Count this submission in the client's window; the response it replaces, if any."""
    count, window_start, replaced = (
        session.connection()
        .execute(
            _guard_upsert(session),
            {
                "client_hash": client,
                "page_id": page_id,
                "last_response_id": response_id,
                "last_at": now,
                "window_start": now,
                "window_count": 1,
                "replaced_id": None,
                "rate_cutoff": now - timedelta(seconds=limits.rate_window_s),
                "replace_cutoff": now - timedelta(seconds=limits.replace_window_s),
            },
        )
        .one()
    )
    if count > limits.rate_max:
        if window_start.tzinfo is None:  # SQLite keeps UTC without the zone
            window_start = window_start.replace(tzinfo=UTC)
        ends = window_start + timedelta(seconds=limits.rate_window_s)
        raise RateLimited(max(1, math.ceil((ends - now).total_seconds())))
    return replaced


def prune_guard(session: Session, before: datetime) -> int:
    """Forget client windows untouched since `before`: they decide nothing any more."""
    return session.execute(delete(ClientGuard).where(ClientGuard.last_at < before)).rowcount


_responses = Response.__table__
_OUTBOX_INSERT = insert(OutboxEntry.__table__)
_MARK_REPLACEMENT = (
    update(_responses)
    .where(_responses.c.id == bindparam("new_id"))
    .values(replaces=bindparam("replaced_id"))
)
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


_guards = ClientGuard.__table__
_GUARD_UPSERTS: dict[str, Insert] = {}


def _guard_upsert(session: Session) -> Insert:
    dialect = session.get_bind().dialect.name
    statement = _GUARD_UPSERTS.get(dialect)
    if statement is None:
        insert_ = dialect_insert(session, _guards)
        # SET expressions read the row as it was (PostgreSQL and SQLite alike), so
        # the window, the count and the displaced response come from one statement.
        in_window = _guards.c.window_start > bindparam("rate_cutoff")
        statement = insert_.on_conflict_do_update(
            index_elements=["client_hash", "page_id"],
            set_={
                "window_count": case((in_window, _guards.c.window_count + 1), else_=1),
                "window_start": case(
                    (in_window, _guards.c.window_start), else_=insert_.excluded.window_start
                ),
                "replaced_id": case(
                    (
                        _guards.c.last_at > bindparam("replace_cutoff"),
                        _guards.c.last_response_id,
                    ),
                    else_=None,
                ),
                "last_response_id": insert_.excluded.last_response_id,
                "last_at": insert_.excluded.last_at,
            },
        ).returning(_guards.c.window_count, _guards.c.window_start, _guards.c.replaced_id)
        _GUARD_UPSERTS[dialect] = statement
    return statement
