"""client_token: one page view, so one person's change of mind.

widget.js makes a token per page view; a CMS that renders pages per request may put
one into the plain form's hidden `client_token`, and an empty one (a static page)
makes each plain-form answer a person of its own. Answers with different tokens are
different people, even from one address (a carrier's NAT, a city hall's PCs): the
address is the source's business (sources.py, budgets.py), never the person's.

With the same token on the same page:
- the same answers again are a retry (a 202 lost on the way back): the earlier
  response's id is answered and nothing is stored;
- other answers within KOE_REPLACE_WINDOW_MINUTES of the first are a change of mind:
  the new response replaces the token's latest one (its event names it in
  `replaces`, and the aggregator counts only the newest);
- later, or on another page, the token is refused (409 naming client_token): a token
  is a page view, and a page view does not last hours or visit two pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import CTE, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from feedback.models import AnswerToken
from koe_directory import QUESTION_KEYS
from koe_kit.db import dialect_insert, on_postgresql, rows_affected, table_of

_tokens = table_of(AnswerToken)


def canonical_answers(answers: Mapping[str, str]) -> str:
    """The answers as one string, in survey order: equal answers, equal strings. Migration
    0004 computes the same string in SQL for the tokens stored before it."""
    return ",".join(answers.get(key, "") for key in QUESTION_KEYS)


class TokenRefused(Exception):
    """A token used outside its page view; nothing may be stored."""


class Claim(NamedTuple):
    # A retry: the response already stored for these answers (store nothing).
    earlier: str | None = None
    # A change of mind: the response the new one replaces.
    replaces: str | None = None


def claim(
    session: Session,
    token: str,
    page_id: str,
    response_id: str,
    answers: Mapping[str, str],
    now: datetime,
    window_s: int,
) -> Claim:
    """Make `response_id` the token's response, or say why not (raises TokenRefused).

    The first use inserts the token's row; on PostgreSQL a concurrent request with the
    same token waits on that row until this transaction ends, then reads it (FOR
    UPDATE): one of two racing retries stores, the other answers its id.
    """
    canonical = canonical_answers(answers)
    connection = session.connection()
    inserted = connection.execute(
        _insert(session),
        {
            "client_token": token,
            "page_id": page_id,
            "response_id": response_id,
            "answers": canonical,
            "first_at": now,
        },
    ).first()
    if inserted is not None:
        return Claim()
    query = _READ.with_for_update() if on_postgresql(session) else _READ
    row = connection.execute(query, {"client_token": token}).one()
    if row.page_id != page_id:
        raise TokenRefused("was sent for another page; each page view makes its own")
    if row.answers == canonical:
        return Claim(earlier=row.response_id)
    first_at = row.first_at if row.first_at.tzinfo else row.first_at.replace(tzinfo=UTC)
    if now - first_at > timedelta(seconds=window_s):
        minutes = window_s // 60
        raise TokenRefused(
            f"answers can be changed for {minutes} minutes after the first; reload the page"
        )
    connection.execute(
        _REPLACE, {"token": token, "new_response_id": response_id, "new_answers": canonical}
    )
    return Claim(replaces=row.response_id)


def first_use_params(
    token: str, page_id: str, response_id: str, answers: Mapping[str, str], now: datetime
) -> dict[str, object]:
    return {
        "t_client_token": token,
        "t_page_id": page_id,
        "t_response_id": response_id,
        "t_answers": canonical_answers(answers),
        "t_first_at": now,
    }


def first_use_cte() -> CTE:
    """claim()'s first use as a CTE for a PostgreSQL statement that does more
    (services.record_at_once), run with first_use_params(): a row when the token was new,
    none when it was seen before (a retry or a change of mind: claim() tells which)."""
    return (
        postgresql.insert(_tokens)
        .values({c.name: bindparam(f"t_{c.name}", type_=c.type) for c in _tokens.c})
        .on_conflict_do_nothing(index_elements=["client_token"])
        .returning(_tokens.c.client_token)
        .cte("new_token")
    )


def retried(session: Session, token: str, page_id: str, answers: Mapping[str, str]) -> str | None:
    """The response a retry of these answers from this page view would get (the same
    token, page and answers as stored), or None: what a resent proof of work may buy."""
    row = session.connection().execute(_READ, {"client_token": token}).first()
    if row is None or row.page_id != page_id or row.answers != canonical_answers(answers):
        return None
    return row.response_id


def prune(session: Session, before: datetime) -> int:
    """Forget tokens first used before `before`: past the window they decide nothing but a
    late retry, which is then stored as a new answer within the budgets."""
    return rows_affected(session.execute(delete(_tokens).where(_tokens.c.first_at < before)))


_READ = select(
    _tokens.c.page_id, _tokens.c.response_id, _tokens.c.answers, _tokens.c.first_at
).where(_tokens.c.client_token == bindparam("client_token"))
_REPLACE = (
    update(_tokens)
    .where(_tokens.c.client_token == bindparam("token"))
    .values(response_id=bindparam("new_response_id"), answers=bindparam("new_answers"))
)


def _insert(session: Session):
    return (
        dialect_insert(session, _tokens)
        .on_conflict_do_nothing(index_elements=["client_token"])
        .returning(_tokens.c.client_token)
    )
