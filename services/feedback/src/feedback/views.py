"""The survey endpoints: JSON for the widget's script, a plain form for pages without it.

Both take the same path: a mapping → the honeypot → FeedbackSchema → services.record
in one transaction (the page view's token, the source's budgets, the page's identity).
The JSON API also wants a solved proof-of-work challenge for the page (challenges.py),
spent in that transaction; the plain form cannot work one out and has tighter budgets
instead. They differ otherwise only in how the body is read and how they answer: JSON
errors for the script, a redirect back to the page for a person. Every refusal is
counted in metrics.REJECTIONS by reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, current_app, jsonify, redirect, request
from marshmallow import ValidationError
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from feedback import challenges, metrics, services, tokens
from feedback.budgets import OverBudget
from feedback.embed import WIDGET_NAME, snippet_ids
from feedback.retention import Retention
from feedback.schemas import (
    MAX_URL,
    FeedbackSchema,
    Submission,
    flatten_errors,
    on_allowed_origin,
)
from feedback.sources import Sources
from koe_directory import QUESTION_KEYS, canonical_url
from koe_kit.events import InvalidEvent
from koe_kit.web import db_session

log = logging.getLogger(__name__)
blueprint = Blueprint("feedback", __name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Fields the widget sends for spam checks; they never reach the schema.
HONEYPOT = "homepage"
ALTCHA = "altcha"  # the solved challenge, as ALTCHA's widget protocol names it
# The plain form's way back, never stored either: the page to return to and the
# name of the snippet on it (embed.WIDGET_NAME; absent for the page's first).
RETURN_TO = "return_to"
WIDGET = "koe_widget"
CORS_MAX_AGE_S = 3600
NULL_ORIGIN = (
    "null: the page did not say which site it is (a sandboxed frame, or a page whose"
    " Referrer-Policy is no-referrer or same-origin); koe answers only its sites' pages"
)


class Refused(Exception):
    """A submission turned away before anything is stored; counted by reason."""

    def __init__(self, reason: str, status: int, errors: dict[str, list[str]]):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.errors = errors
        self.retry_after_s: int | None = None


@dataclass
class Intake:
    """What the views need, built once in create_app."""

    schema: FeedbackSchema
    origins: frozenset[str]
    challenges: challenges.ChallengeSettings
    rules: services.Rules
    sources: Sources
    retention: Retention


def _intake() -> Intake:
    return current_app.extensions["koe.feedback.intake"]


def _errors(status: int, errors: dict[str, list[str]]):
    return jsonify(errors=errors), status


def _refuse(reason: str, status: int, errors: dict[str, list[str]]) -> Refused:
    metrics.REJECTIONS.labels(reason=reason).inc()
    return Refused(reason, status, errors)


def _validate(payload: dict[str, Any]) -> tuple[Submission | None, dict[str, list[str]]]:
    try:
        return _intake().schema.load(payload), {}
    except ValidationError as exc:
        return None, flatten_errors(exc.messages)


def _screen(payload: dict[str, Any]) -> None:
    """The honeypot: removes its field from `payload`; raises Refused."""
    honeypot = payload.pop(HONEYPOT, None)
    if honeypot is not None and not (isinstance(honeypot, str) and not honeypot.strip()):
        # Hidden from people (widget.css); only a form-filling bot writes here (and
        # only a bot sends anything but text: {} or 0 counted as empty once).
        raise _refuse("honeypot", 422, {HONEYPOT: ["must be left empty"]})


def _solved(proof: Any, submission: Submission, now: datetime) -> challenges.Solution:
    """The JSON API's proof of work for this page; raises Refused (403 naming altcha)."""
    try:
        return challenges.check(_intake().challenges, proof, submission.page_url, now)
    except challenges.BadSolution as exc:
        raise _refuse("challenge", 403, {ALTCHA: [str(exc)]}) from None


def _spend(session: Session, solution: challenges.Solution, submission: Submission) -> str | None:
    """Spend the proof in the answer's transaction; None, or the id to answer with when
    this is a retry of an answer that spent it (a 202 lost on the way: the same page
    view's same answers). Any other second use raises Refused."""
    if challenges.spend(session, solution):
        return None
    token = submission.client_token
    earlier = token and tokens.retried(session, token, submission.page_id, submission.answers)
    if not earlier:
        raise _refuse("challenge", 403, {ALTCHA: ["has been used; fetch a new challenge"]})
    return earlier


def _record(
    session: Session,
    submission: Submission,
    solution: challenges.Solution | None,
    now: datetime,
    source: str,
    form: bool,
) -> services.Recorded:
    """Spend the proof and record the answer: in one statement when it is a page view's
    first (services.record_at_once), else step by step in a transaction of its own."""
    rules = _intake().rules
    try:
        with session.begin():
            return services.record_at_once(session, submission, now, source, rules, solution, form)
    except services.NotAtOnce:
        pass  # rolled back: nothing of it stays
    with session.begin():
        earlier = solution and _spend(session, solution, submission)
        if earlier:
            return services.Recorded(earlier)
        return services.record(session, submission, now, source, rules, form)


def _accept(payload: dict[str, Any], proof: Any = None, *, form: bool) -> str:
    """Screen, validate and store one submission; its response id, or raises Refused.

    `proof` is the JSON API's `altcha`; the plain form (`form`) has none. Checked after
    the body is valid: a solution is bound to the page the body names.
    """
    _screen(payload)
    submission, errors = _validate(payload)
    if submission is None:
        raise _refuse("invalid", 422, errors)
    intake = _intake()
    session = db_session()
    now = datetime.now(UTC)
    solution = None if form else _solved(proof, submission, now)
    # request.remote_addr honours KOE_TRUSTED_PROXIES (create_app): never a header itself.
    source = intake.sources.source(request.remote_addr or "", now)
    try:
        recorded = _record(session, submission, solution, now, source, form)
    except OverBudget as exc:
        refused = _refuse(
            "budget", 429, {"budget": [f"{exc.scope.name}: {exc.scope.what}; try again later"]}
        )
        refused.retry_after_s = exc.retry_after_s
        raise refused from None
    except services.Refused as exc:
        reason = "token" if exc.field == "client_token" else "page_identity"
        raise _refuse(reason, exc.status, {exc.field: [exc.reason]}) from None
    except InvalidEvent as exc:
        # Validation above should make this impossible; if it happens the input
        # found a gap between it and the event schema, and it is still refused.
        log.warning("submission broke the event schema", extra={"reason": exc.reason})
        raise _refuse("invalid", 422, {_event_field(exc.reason): [exc.reason]}) from None
    if recorded.replaces is not None:
        metrics.REPLACEMENTS.inc()
    intake.retention.now_and_then(current_app.extensions["koe.sessions"], intake.sources, now)
    return recorded.response_id


def _event_field(reason: str) -> str:
    where = reason.split(":", 1)[0]
    return where.removeprefix("data.") if where.startswith("data.") else "body"


# -- CORS: the widget's script calls these from the city's pages ---------------------


def _request_origin() -> str | None:
    return request.headers.get("Origin")


def _allowed_origin(origin: str) -> bool:
    return origin != "null" and on_allowed_origin(origin, _intake().origins)


@blueprint.before_request
def _only_our_sites():
    """A browser on a foreign site gets no CORS headers and is refused, naming the origin.

    Requests without Origin (curl, servers) pass: CORS protects browsers, and the
    page_url check still applies. `Origin: null` is refused on every endpoint, the
    plain form included: a sandboxed iframe or a data: URL on any site sends it, so
    accepting it would let a third-party page make its visitors answer. A city page
    sends it too when its Referrer-Policy is no-referrer or same-origin; the message
    says so, for the city's web team (README, "Spam and abuse").
    """
    origin = _request_origin()
    if origin is None or _allowed_origin(origin):
        return None
    metrics.REJECTIONS.labels(reason="foreign_origin").inc()
    if origin == "null":
        return _errors(403, {"origin": [NULL_ORIGIN]})
    return _errors(403, {"origin": [f"{origin[:200]} is not a site koe serves"]})


@blueprint.after_request
def _cors_headers(response):
    origin = _request_origin()
    response.vary.add("Origin")
    if origin is not None and _allowed_origin(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
            response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
    return response


@blueprint.route("/api/v1/feedback", methods=["OPTIONS"])
@blueprint.route("/api/v1/feedback/challenge", methods=["OPTIONS"])
def preflight():
    return "", 204


# -- the endpoints ----------------------------------------------------------------


@blueprint.get("/api/v1/feedback/challenge")
def challenge():
    """A proof-of-work challenge for one page, for widget.js; stateless (no database),
    never cached (each is single-use)."""
    raw = request.args.get("page_url")
    problems = ["is required"] if raw is None else _page_url_problems(raw)
    if problems:
        metrics.REJECTIONS.labels(reason="invalid").inc()
        return _errors(422, {"page_url": problems})
    made = challenges.issue(_intake().challenges, canonical_url(raw), datetime.now(UTC))
    response = jsonify(made)
    response.headers["Cache-Control"] = "no-store"
    return response


def _page_url_problems(url: str) -> list[str]:
    """What the schema would say of `url` as a submission's page_url."""
    try:
        _intake().schema.fields["page_url"].deserialize(url)
    except ValidationError as exc:
        return flatten_errors(exc.messages)["body"]
    if not on_allowed_origin(url, _intake().origins):
        return ["not a page of a site koe serves"]
    return []


@blueprint.post("/api/v1/feedback")
def submit_json():
    if request.mimetype != "application/json":
        metrics.REJECTIONS.labels(reason="invalid").inc()
        return _errors(415, {"body": ["Content-Type must be application/json"]})
    try:
        payload = json.loads(request.get_data(cache=False))
    except UnicodeDecodeError:
        metrics.REJECTIONS.labels(reason="invalid").inc()
        return _errors(400, {"body": ["must be JSON text encoded in UTF-8"]})
    except RecursionError:
        # A few kilobytes of "[[[[…" reach Python's recursion limit: refused, not a 500.
        metrics.REJECTIONS.labels(reason="invalid").inc()
        return _errors(400, {"body": ["is nested too deeply"]})
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        metrics.REJECTIONS.labels(reason="invalid").inc()
        return _errors(400, {"body": ["must be a JSON object"]})
    unstorable = _unstorable(payload)
    if unstorable is not None:
        metrics.REJECTIONS.labels(reason="invalid").inc()
        return _errors(400, {"body": [unstorable]})
    proof = payload.pop(ALTCHA, None)
    try:
        response_id = _accept(payload, proof, form=False)
    except Refused as refused:
        response, status = _errors(refused.status, refused.errors)
        if refused.retry_after_s is not None:
            response.headers["Retry-After"] = str(refused.retry_after_s)
        return response, status
    return jsonify(id=response_id), 202


def _unstorable(payload: dict[str, Any]) -> str | None:
    """Why a parsed body still cannot be stored or published, or None."""
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # Valid JSON ("\ud83d") but not text: no database or topic can store it.
        return "must be valid Unicode text"
    except RecursionError:
        # Nested just below the depth json.loads managed: one frame deeper, it is too deep.
        return "is nested too deeply"
    return None


@blueprint.post("/feedback")
def submit_form():
    if request.mimetype not in FORM_TYPES:
        metrics.REJECTIONS.labels(reason="invalid").inc()
        return _errors(415, {"body": [f"Content-Type must be one of {', '.join(FORM_TYPES)}"]})
    form = request.form
    # The snippet carries page_url (filled by the CMS); return_to may say more (a query).
    return_to = form.get(RETURN_TO) or form.get("page_url", "")
    widget = form.get(WIDGET, "")
    payload = form_payload(form)
    wrong: dict[str, list[str]] = {}
    if not (len(return_to) <= MAX_URL and on_allowed_origin(return_to, _intake().origins)):
        # Never redirect off our sites.
        wrong[RETURN_TO] = ["must be a page of a site koe serves"]
    if widget and not WIDGET_NAME.fullmatch(widget):
        wrong[WIDGET] = ["must be up to 16 lowercase letters and digits"]
    if wrong:
        # No way back: say everything that is wrong in one answer.
        metrics.REJECTIONS.labels(reason="invalid").inc()
        payload.pop(HONEYPOT, None)
        _, errors = _validate(payload)
        return _errors(422, errors | wrong)
    try:
        _accept(payload, form=True)
    except Refused as refused:
        # A person without JavaScript is sent back to the page, which says so politely:
        # a form sent without an answer is told to answer, not to wait and retry.
        outcome = "empty" if set(refused.errors) == {"answers"} else "error"
        return redirect(back_to(return_to, outcome, widget), 303)
    return redirect(back_to(return_to, "thanks", widget), 303)


def form_payload(form: MultiDict[str, str]) -> dict[str, Any]:
    """The form's fields in the JSON shape; an empty field counts as not given."""
    payload: dict[str, Any] = {}
    answers: dict[str, str] = {}
    for name, value in form.items():
        if name in (RETURN_TO, WIDGET) or value == "":
            continue
        if name in QUESTION_KEYS:
            answers[name] = value
        else:
            # Unknown names go through too, so the schema refuses them as in JSON.
            payload[name] = value
    payload["answers"] = answers
    return payload


def back_to(url: str, outcome: str, widget: str = "") -> str:
    """The page the form came from, at the message of `widget`'s snippet that tells the
    outcome: widget.css shows the one the fragment targets (:target), without any script.

    Rebuilt from the canonical URL (the host koe checked), so nothing the sender
    wrote before the host, such as `https://evil.example\\@city/` (a backslash ends
    the host in browsers, an `@` in Python), reaches the Location header.
    """
    scheme, netloc, path, _, _ = urlsplit(canonical_url(url))
    given = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    query = [(k, v) for k, v in given if k != "koe"]
    query.append(("koe", outcome))
    anchor = snippet_ids(widget)[outcome]
    return urlunsplit((scheme, netloc, path, urlencode(query), anchor))
