"""The survey endpoints: JSON for the widget's script, a plain form for pages without it.

Both take the same path: a mapping → FeedbackSchema → services.record in one
transaction. They differ only in how the body is read and how they answer.
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
from werkzeug.datastructures import MultiDict

from feedback import services
from feedback.schemas import (
    MAX_URL,
    QUESTIONS,
    FeedbackSchema,
    Submission,
    flatten_errors,
    on_allowed_origin,
)
from koe_kit.events import InvalidEvent
from koe_kit.web import db_session

log = logging.getLogger(__name__)
blueprint = Blueprint("feedback", __name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
WIDGET_ANCHOR = "koe-feedback"


@dataclass(frozen=True)
class Intake:
    """What the views need, built once in create_app."""

    schema: FeedbackSchema
    origins: frozenset[str]


def _intake() -> Intake:
    return current_app.extensions["koe.feedback.intake"]


def _errors(status: int, errors: dict[str, list[str]]):
    return jsonify(errors=errors), status


def _validate(payload: dict[str, Any]) -> tuple[Submission | None, dict[str, list[str]]]:
    try:
        return _intake().schema.load(payload), {}
    except ValidationError as exc:
        return None, flatten_errors(exc.messages)


def _accept(payload: dict[str, Any]) -> tuple[str | None, dict[str, list[str]]]:
    """Validate and store one submission; (response id, {}) or (None, errors)."""
    submission, errors = _validate(payload)
    if submission is None:
        return None, errors
    session = db_session()
    try:
        with session.begin():
            return services.record(session, submission, datetime.now(UTC)), {}
    except InvalidEvent as exc:
        # Validation above should make this impossible; if it happens the input
        # found a gap between it and the event schema, and it is still refused.
        log.warning("submission broke the event schema", extra={"reason": exc.reason})
        return None, {_event_field(exc.reason): [exc.reason]}


def _event_field(reason: str) -> str:
    where = reason.split(":", 1)[0]
    return where.removeprefix("data.") if where.startswith("data.") else "body"


@blueprint.post("/api/v1/feedback")
def submit_json():
    if request.mimetype != "application/json":
        return _errors(415, {"body": ["Content-Type must be application/json"]})
    try:
        payload = json.loads(request.get_data(cache=False))
    except ValueError:
        return _errors(400, {"body": ["not valid JSON"]})
    if not isinstance(payload, dict):
        return _errors(400, {"body": ["must be a JSON object"]})
    response_id, errors = _accept(payload)
    if errors:
        return _errors(422, errors)
    return jsonify(id=response_id), 202


@blueprint.post("/feedback")
def submit_form():
    if request.mimetype not in FORM_TYPES:
        return _errors(415, {"body": [f"Content-Type must be one of {', '.join(FORM_TYPES)}"]})
    form = request.form
    return_to = form.get("return_to", "")
    payload = form_payload(form)
    if not (len(return_to) <= MAX_URL and on_allowed_origin(return_to, _intake().origins)):
        # Never redirect off our sites; say everything that is wrong in one answer.
        _, errors = _validate(payload)
        errors["return_to"] = ["must be a page of a site koe serves"]
        return _errors(422, errors)
    _, errors = _accept(payload)
    return redirect(back_to(return_to, "error" if errors else "thanks"), 303)


def form_payload(form: MultiDict[str, str]) -> dict[str, Any]:
    """The form's fields in the JSON shape; an empty field counts as not given."""
    payload: dict[str, Any] = {}
    answers: dict[str, str] = {}
    for name, value in form.items():
        if name == "return_to" or value == "":
            continue
        if name in QUESTIONS:
            answers[name] = value
        else:
            # Unknown names go through too, so the schema refuses them as in JSON.
            payload[name] = value
    payload["answers"] = answers
    return payload


def back_to(url: str, outcome: str) -> str:
    """The page the form came from, marked so the widget shows the outcome in place."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "koe"]
    query.append(("koe", outcome))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), WIDGET_ANCHOR))
