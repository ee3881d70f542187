"""The stats API: /api/v1/pages and /api/v1/pages/<page_id>, behind a bearer token."""

from __future__ import annotations

import base64
import hmac
import re
from datetime import date, datetime

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import text
from sqlalchemy.orm import Session

from aggregator.edits.page_view import edit_json, edit_views
from aggregator.query_args import whole_number
from aggregator.stats import figures as stats
from aggregator.stats import locale_split
from koe_directory import Directory
from koe_directory.catalogue import LOCALES
from koe_directory.divisions import CODE as DIVISION_CODE
from koe_directory.pages import PAGE_ID
from koe_kit.web import db_session

ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DEFAULT_DAYS, MAX_DAYS = 28, 366
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000

api = Blueprint("api", __name__, url_prefix="/api/v1")


@api.before_request
def require_bearer_token():
    token: str = current_app.extensions["aggregator.settings"].api_token
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        supplied.strip().encode("utf-8"), token.encode("utf-8")
    ):
        return None
    response = jsonify(error="Unauthorized", message="a valid bearer token is required")
    response.headers["WWW-Authenticate"] = 'Bearer realm="koe"'
    return response, 401


def _directory() -> Directory:
    return current_app.extensions["aggregator.directory"]


def _snapshot() -> Session:
    """The request's session, all of whose reads see one snapshot of the database.

    A page's figures come from several statements (answers per question, responses,
    the daily series); read one by one under READ COMMITTED, a batch the consumer
    commits between them would give an n that disagrees with its questions' counts.
    PostgreSQL: a REPEATABLE READ transaction. SQLite: one explicit read transaction
    (the driver starts none for SELECTs, so each statement would read on its own).
    """
    session = db_session()
    if session.in_transaction():
        session.rollback()  # reads before the view (a signed-in check): start afresh
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:
        session.execute(text("BEGIN"))
    return session


def _bad_request(field: str, reason: str):
    return jsonify(errors={field: [reason]}), 400


# Windows reach back weeks from as_of and series forward a day: at the calendar's ends
# that arithmetic overflows (a 500). No answer predates koe, nor lies centuries ahead.
FIRST_AS_OF, LAST_AS_OF = date(2000, 1, 1), date(2999, 12, 31)
AS_OF_FORMAT = f"must be a date as YYYY-MM-DD, from {FIRST_AS_OF} to {LAST_AS_OF}"


def _as_of() -> date | None:
    raw = request.args.get("as_of")
    if raw is None or raw == "":
        return datetime.now(current_app.extensions["aggregator.settings"].timezone).date()
    if not ISO_DAY.match(raw):
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        return None
    return day if FIRST_AS_OF <= day <= LAST_AS_OF else None


@api.get("/pages")
def list_pages():
    """Visible pages in id order, `limit` at a time (default 100); the answer's `next`,
    passed back as `cursor`, continues after its last page, and is null on the last one.
    `locale`: the figures of the answers given in that language (0 for a page with none)."""
    as_of = _as_of()
    if as_of is None:
        return _bad_request("as_of", AS_OF_FORMAT)
    division = request.args.get("division") or None
    if division is not None and not DIVISION_CODE.match(division):
        return _bad_request("division", "must be a division code (letters, digits, - and _)")
    limit = whole_number(request.args.get("limit", str(DEFAULT_LIMIT)), 1, MAX_LIMIT)
    if limit is None:
        return _bad_request("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    locale = request.args.get("locale") or None
    if locale is not None and locale not in LOCALES:
        return _bad_request("locale", f"must be one of {', '.join(LOCALES)}")
    after = None
    if request.args.get("cursor"):
        after = _page_after(request.args["cursor"])
        if after is None:
            return _bad_request("cursor", "must be the `next` of an earlier answer")
    pages, last = stats.list_pages_after(
        _snapshot(),
        as_of=as_of,
        directory=_directory(),
        after=after,
        limit=limit,
        division=division,
        locale=locale,
    )
    return jsonify(as_of=as_of.isoformat(), pages=pages, next=_cursor(last) if last else None)


def _cursor(page_id: str) -> str:
    """Opaque to clients (so none builds one by hand): the last listed id, base64url."""
    return base64.urlsafe_b64encode(page_id.encode("utf-8")).decode("ascii").rstrip("=")


def _page_after(cursor: str) -> str | None:
    try:
        page_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return page_id if PAGE_ID.match(page_id) else None


@api.get("/pages/<page_id>")
def page_detail(page_id: str):
    if not PAGE_ID.match(page_id):
        return jsonify(error="Not Found", message="no such page"), 404
    as_of = _as_of()
    if as_of is None:
        return _bad_request("as_of", AS_OF_FORMAT)
    days = whole_number(request.args.get("days", str(DEFAULT_DAYS)), 1, MAX_DAYS)
    if days is None:
        return _bad_request("days", f"must be a whole number from 1 to {MAX_DAYS}")
    page = stats.page_detail(_snapshot(), page_id, as_of=as_of, days=days, directory=_directory())
    if page is None:
        return jsonify(error="Not Found", message="no such page"), 404
    page["locales"] = locale_split.page_locales(db_session(), page_id, as_of)
    # The newest edits, judged as of as_of (README, "Did my edit help?").
    page["edits"] = [edit_json(e) for e in edit_views(db_session(), page_id, as_of)]
    return jsonify(page)
