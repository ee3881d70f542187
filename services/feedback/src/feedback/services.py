"""Recording a response: the door's checks (token, budgets, page identity), the response
row and the outbox row, in the caller's transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Insert, bindparam, func, insert, literal, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from feedback import budgets, challenges, pages, tokens
from feedback.models import OutboxEntry, Response
from feedback.schemas import Submission
from koe_contract import FEEDBACK_SUBMITTED, FEEDBACK_TOPIC
from koe_contract.payloads import FeedbackSubmitted
from koe_directory import QUESTION_KEYS
from koe_kit import events
from koe_kit.db import on_postgresql, table_of

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
    data: FeedbackSubmitted = {
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
    if submission.page_modified is not None:
        data["page_modified"] = submission.page_modified.isoformat()
    return events.make_event(
        FEEDBACK_SUBMITTED,
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
    row, payload = _response_row(submission, response_id, received_at, replaces, source)
    limits = rules.budgets
    scopes = budgets.answer_scopes(limits, submission.page_id, form)
    if new_page:
        scopes.append(budgets.new_page_scope(limits))
    connection = session.connection()
    spend = budgets.params(source, scopes, received_at)
    if on_postgresql(session):
        # The response, its outbox row and the budgets in one statement: one round trip.
        spent = connection.execute(
            _record_and_spend(session, len(scopes)), {**_response_params(row, payload), **spend}
        )
    else:
        connection.execute(_RESPONSE_INSERT, row)
        connection.execute(
            _OUTBOX_INSERT,
            {
                "event_id": response_id,
                "topic": FEEDBACK_TOPIC,
                "key": submission.page_id,
                "payload": payload,
                "created_at": received_at,
            },
        )
        spent = connection.execute(budgets.upsert(session, len(scopes)), spend)
    budgets.check(spent, scopes, received_at)
    return Recorded(response_id, replaces)


def record_at_once(
    session: Session,
    submission: Submission,
    received_at: datetime,
    source: str,
    rules: Rules,
    proof: challenges.Solution | None,
    form: bool = False,
) -> Recorded:
    """record() and the spending of `proof` (the JSON API's proof of work) in one statement,
    on PostgreSQL, for the common answer: the first of its page view (a new client_token,
    or none), with an unspent proof, to a page this process knows. One round trip
    instead of one for each step: the proof, the token, the response with its outbox
    row, and the budgets are all written, and what came back says whether the proof
    and the token were new.

    When they were not (a retry, a change of mind, a proof sent twice), or the page is
    new to this process, or the database is SQLite, it raises NotAtOnce: the caller
    rolls back whatever ran and goes step by step (challenges.spend, record()), which
    tells those cases apart. The rules are the same either way: a response over a
    budget raises budgets.OverBudget, for the caller's rollback.
    """
    # A page not known here may be new (its budget) or moved (refused): record() tells.
    known = rules.known_urls.get(submission.page_id) == submission.page_url
    if not (known and on_postgresql(session)):
        raise NotAtOnce()
    response_id = str(uuid.uuid4())
    row, payload = _response_row(submission, response_id, received_at, None, source)
    scopes = budgets.answer_scopes(rules.budgets, submission.page_id, form)
    params = {**_response_params(row, payload), **budgets.params(source, scopes, received_at)}
    token = submission.client_token
    if token is not None:
        params |= tokens.first_use_params(
            token, submission.page_id, response_id, submission.answers, received_at
        )
    if proof is not None:
        params |= challenges.spend_params(proof)
    statement = _at_once(session, len(scopes), token is not None, proof is not None)
    spent = session.connection().execute(statement, params).all()
    # Every row carries how many of the token and the proof were new (0 or 1 each).
    claims = (token is not None) + (proof is not None)
    if any(r.new_claims != claims for r in spent):
        raise NotAtOnce()
    budgets.check(((r.scope, r.count, r.ends_at) for r in spent), scopes, received_at)
    return Recorded(response_id)


class NotAtOnce(Exception):
    """record_at_once() cannot tell this answer's fate: roll back, record it step by step."""


def _response_row(
    submission: Submission,
    response_id: str,
    received_at: datetime,
    replaces: str | None,
    source: str,
) -> tuple[dict[str, Any], str]:
    """The response's row and its event's payload; raises events.InvalidEvent."""
    event = build_event(submission, response_id, received_at, replaces, source)
    answers = submission.answers
    row = {
        "id": response_id,
        "page_id": submission.page_id,
        "page_url": submission.page_url,
        "page_title": submission.page_title,
        "division": submission.division,
        "locale": submission.locale,
        "page_modified": submission.page_modified,
        **{question: answers.get(question) for question in QUESTION_KEYS},
        "client_token": submission.client_token,
        "replaces": replaces,
        "source": source,
        "received_at": received_at,
    }
    return row, events.encode(event).decode("utf-8")


def _response_params(row: dict[str, Any], payload: str) -> dict[str, Any]:
    """The response CTEs' parameters (_response_and_event)."""
    return {
        **{f"r_{name}": value for name, value in row.items()},
        "r_topic": FEEDBACK_TOPIC,
        "r_payload": payload,
    }


_responses = table_of(Response)
_outbox = table_of(OutboxEntry)


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


_AT_ONCE: dict[tuple[int, bool, bool], Any] = {}


def _at_once(session: Session, scopes: int, token: bool, proof: bool) -> Any:
    """record_at_once()'s statement: _record_and_spend's, with the token's first use and
    the proof's spending as CTEs, and each budget row returned with `new_claims`, how
    many rows those two inserted. Built once per shape, all values bound."""
    key = (scopes, token, proof)
    statement = _AT_ONCE.get(key)
    if statement is None:
        claims = [cte for cte, wanted in ((_FIRST_USE, token), (_SPENT_PROOF, proof)) if wanted]
        new_claims: Any = literal(0)
        for cte in claims:
            new_claims = new_claims + select(func.count()).select_from(cte).scalar_subquery()
        statement = (
            budgets.upsert(session, scopes)
            .add_cte(*_RESPONSE_AND_EVENT, *claims)
            .returning(new_claims.label("new_claims"))
        )
        _AT_ONCE[key] = statement
    return statement


_FIRST_USE = tokens.first_use_cte()
_SPENT_PROOF = challenges.spend_cte()


def _record_and_spend(session: Session, scopes: int) -> Any:
    statement = _RECORD_AND_SPEND.get(scopes)
    if statement is None:
        statement = budgets.upsert(session, scopes).add_cte(*_RESPONSE_AND_EVENT)
        _RECORD_AND_SPEND[scopes] = statement
    return statement
