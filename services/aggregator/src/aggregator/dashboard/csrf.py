"""CSRF protection for the dashboard's forms: a synchroniser token per session.

Every POST must carry `csrf_token` equal to the random token kept in the
session. Flask signs the session cookie (HMAC with KOE_SECRET_KEY), so another
site can neither read nor forge the token; SameSite=Lax on the cookie is a
second layer. About 30 lines instead of Flask-WTF, which would bring WTForms
for forms that are three fields in all.
"""

from __future__ import annotations

import hmac
import secrets

from flask import abort, request, session

FIELD = "csrf_token"
_KEY = "csrf"


def csrf_token() -> str:
    """The session's token, made on first use (templates call it for every form)."""
    token = session.get(_KEY)
    if not token:
        token = session[_KEY] = secrets.token_urlsafe(32)
    return token


def rotate() -> None:
    """A new token at sign-in and sign-out, so a token seen before cannot be replayed."""
    session[_KEY] = secrets.token_urlsafe(32)


def protect() -> None:
    """before_request: refuse any unsafe method without the session's token (400)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    expected = session.get(_KEY)
    supplied = request.form.get(FIELD, "")
    if not expected or not hmac.compare_digest(supplied.encode(), expected.encode()):
        abort(400, description="csrf")
