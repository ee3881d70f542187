"""Recording a response: the response row, the client's window and the outbox row, in the
caller's transaction."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    Insert,
    Select,
    bindparam,
    case,
    delete,
    insert,
    literal,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from feedback.models import ClientGuard, OutboxEntry, Response
from feedback.schemas import Submission
from koe_directory import QUESTION_KEYS
from koe_kit import events
from koe_kit.db import dialect_insert, on_postgresql

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
    row = {
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
    }
    if client is not None and limits is not None and on_postgresql(session):
        return _record_at_once(session, submission, row, client, limits)
    # Core statements built once, run on the session's connection: this is the
    # hot path, and the ORM unit of work buys nothing for plain inserts.
    connection = session.connection()
    stored = connection.execute(_response_insert(session), row).first()
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


def _record_at_once(
    session: Session, submission: Submission, row: dict, client: str, limits: Limits
) -> Recorded:
    """record() on PostgreSQL: the response, the client's window and the outbox row in
    one statement instead of three or four: with BEGIN and COMMIT a request now waits
    for three round trips, not five or six (bench/bench_ingest.py: ~920 → ~1,115 req/s).

    The event is built (and validated) in Python before anything is sent, without
    `replaces`: that is only known once the window is updated, and a replacement is
    the rare case, so it then costs a second statement that sets both.
    """
    response_id, received_at = row["id"], row["received_at"]
    event = build_event(submission, response_id, received_at)
    connection = session.connection()
    stored = connection.execute(
        _RECORD_AT_ONCE,
        {
            **row,
            "client_hash": client,
            "rate_cutoff": received_at - timedelta(seconds=limits.rate_window_s),
            "replace_cutoff": received_at - timedelta(seconds=limits.replace_window_s),
            "topic": TOPIC,
            "payload": events.encode(event).decode("utf-8"),
        },
    ).first()
    if stored is None:
        # The token was seen before: the response insert did nothing, and so (it
        # drives them) neither did the window nor the outbox.
        return Recorded(
            connection.execute(
                _EARLIER_RESPONSE, {"client_token": submission.client_token}
            ).scalar_one()
        )
    count, window_start, replaces, outbox_id = stored
    _check_rate(count, window_start, received_at, limits)
    if replaces is not None:
        event = build_event(submission, response_id, received_at, replaces)
        connection.execute(
            _MARK_REPLACEMENT_AND_EVENT,
            {
                "new_id": response_id,
                "replaced_id": replaces,
                "outbox_id": outbox_id,
                "payload": events.encode(event).decode("utf-8"),
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
    _check_rate(count, window_start, now, limits)
    return replaced


def _check_rate(count: int, window_start: datetime, now: datetime, limits: Limits) -> None:
    """Raise RateLimited when this submission is over the limit of its window."""
    if count > limits.rate_max:
        if window_start.tzinfo is None:  # SQLite keeps UTC without the zone
            window_start = window_start.replace(tzinfo=UTC)
        ends = window_start + timedelta(seconds=limits.rate_window_s)
        raise RateLimited(max(1, math.ceil((ends - now).total_seconds())))


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


def _window_rules(insert_: Insert) -> dict[str, Any]:
    """The client window's ON CONFLICT update, for both ways of recording: SET
    expressions read the row as it was (PostgreSQL and SQLite alike), so the window,
    the count and the displaced response come from one statement."""
    in_window = _guards.c.window_start > bindparam("rate_cutoff")
    excluded = insert_.excluded  # type: ignore[attr-defined]
    return {
        "window_count": case((in_window, _guards.c.window_count + 1), else_=1),
        "window_start": case((in_window, _guards.c.window_start), else_=excluded.window_start),
        "replaced_id": case(
            (_guards.c.last_at > bindparam("replace_cutoff"), _guards.c.last_response_id),
            else_=None,
        ),
        "last_response_id": excluded.last_response_id,
        "last_at": excluded.last_at,
    }


_WINDOW = (_guards.c.window_count, _guards.c.window_start, _guards.c.replaced_id)


def _guard_upsert(session: Session) -> Insert:
    dialect = session.get_bind().dialect.name
    statement = _GUARD_UPSERTS.get(dialect)
    if statement is None:
        insert_ = dialect_insert(session, _guards)
        statement = insert_.on_conflict_do_update(
            index_elements=["client_hash", "page_id"], set_=_window_rules(insert_)
        ).returning(*_WINDOW)
        _GUARD_UPSERTS[dialect] = statement
    return statement


def _record_at_once_statement() -> Select[Any]:
    """PostgreSQL only. Data-modifying CTEs all see one snapshot, so each step reads
    the one before through RETURNING: the window and the outbox row are inserted FROM
    the response's RETURNING, and a token seen before (no row) leaves both untouched,
    as in the step-by-step path. Concurrent retries with one token: the loser waits
    for the winner's commit, inserts nothing and so touches nothing else either.
    Over the rate limit everything is written, and record() raises RateLimited so
    the caller's rollback keeps none of it."""

    def param(column: Any) -> Any:
        # Typed, so PostgreSQL need not guess the type of a parameter in a SELECT list.
        return bindparam(column.name, type_=column.type)

    response = (
        postgresql.insert(_responses)
        .values({column.name: param(column) for column in _responses.c})
        .on_conflict_do_nothing(index_elements=["client_token"])
        .returning(_responses.c.id)
        .cte("response")
    )
    received_at = param(_responses.c.received_at)
    window_insert = postgresql.insert(_guards).from_select(
        ["client_hash", "page_id", "last_response_id", "last_at", "window_start", "window_count"],
        select(
            param(_guards.c.client_hash),
            param(_guards.c.page_id),
            response.c.id,
            received_at,
            received_at,
            literal(1),
        ),
    )
    window = (
        window_insert.on_conflict_do_update(
            index_elements=["client_hash", "page_id"], set_=_window_rules(window_insert)
        )
        .returning(*_WINDOW)
        .cte("window")
    )
    outbox = OutboxEntry.__table__
    event = (
        postgresql.insert(outbox)
        .from_select(
            ["event_id", "topic", "key", "payload", "created_at"],
            select(
                response.c.id,
                param(outbox.c.topic),
                param(_guards.c.page_id),
                param(outbox.c.payload),
                received_at,
            ),
        )
        .returning(outbox.c.id)
        .cte("event")
    )
    # One row each (or none, for a token seen before): joined on true.
    return select(
        window.c.window_count, window.c.window_start, window.c.replaced_id, event.c.id
    ).select_from(window.join(event, true()))


_RECORD_AT_ONCE = _record_at_once_statement()
# A replacement: the response names the one it replaces, and its event (by the
# outbox row's id, the primary key) is the one built with `replaces`.
_MARK_REPLACEMENT_AND_EVENT = text("""
    WITH marked AS (
        UPDATE responses SET replaces = :replaced_id WHERE id = :new_id
    )
    UPDATE outbox SET payload = :payload WHERE id = :outbox_id
""")


def earlier_response(session: Session, submission: Submission) -> str | None:
    """The stored response this submission repeats (same client_token, same answers):
    a retry of a submission whose 202 was lost. None for anything else."""
    if submission.client_token is None:
        return None
    row = session.execute(
        select(_responses.c.id, *(_responses.c[key] for key in QUESTION_KEYS)).where(
            _responses.c.client_token == submission.client_token
        )
    ).first()
    if row is None:
        return None
    stored = {key: row._mapping[key] for key in QUESTION_KEYS if row._mapping[key] is not None}
    return row.id if stored == submission.answers else None
