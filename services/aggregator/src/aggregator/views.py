"""The stats API: /api/v1/pages and /api/v1/pages/<page_id>, behind a bearer token."""

from __future__ import annotations

import hmac
import re
from datetime import date, datetime

from flask import Blueprint, current_app, jsonify, request

from aggregator import locale_split, stats
from aggregator.query_args import whole_number
from koe_directory import Directory
from koe_directory.divisions import CODE as DIVISION_CODE
from koe_directory.pages import PAGE_ID
from koe_kit.web import db_session

ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DEFAULT_DAYS, MAX_DAYS = 28, 366

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


def _bad_request(field: str, reason: str):
    return jsonify(errors={field: [reason]}), 400


def _as_of() -> date | None:
    raw = request.args.get("as_of")
    if raw is None or raw == "":
        return datetime.now(current_app.extensions["aggregator.settings"].timezone).date()
    if not ISO_DAY.match(raw):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


@api.get("/pages")
def list_pages():
    as_of = _as_of()
    if as_of is None:
        return _bad_request("as_of", "must be a date as YYYY-MM-DD")
    division = request.args.get("division") or None
    if division is not None and not DIVISION_CODE.match(division):
        return _bad_request("division", "must be a division code (letters, digits, - and _)")
    pages = stats.list_pages(db_session(), as_of=as_of, directory=_directory(), division=division)
    return jsonify(as_of=as_of.isoformat(), pages=pages)


@api.get("/pages/<page_id>")
def page_detail(page_id: str):
    if not PAGE_ID.match(page_id):
        return jsonify(error="Not Found", message="no such page"), 404
    as_of = _as_of()
    if as_of is None:
        return _bad_request("as_of", "must be a date as YYYY-MM-DD")
    days = whole_number(request.args.get("days", str(DEFAULT_DAYS)), 1, MAX_DAYS)
    if days is None:
        return _bad_request("days", f"must be a whole number from 1 to {MAX_DAYS}")
    page = stats.page_detail(db_session(), page_id, as_of=as_of, days=days, directory=_directory())
    if page is None:
        return jsonify(error="Not Found", message="no such page"), 404
    page["locales"] = locale_split.page_locales(db_session(), page_id, as_of)
    return jsonify(page)
