"""What every dashboard request goes through: language, CSRF, the signed-in account,
security headers and HTML error pages. Shared by the dashboard and CSV blueprints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException, NotFound

from aggregator.accounts import auth
from aggregator.accounts.models import Account
from aggregator.config import Settings
from aggregator.dashboard import csrf
from aggregator.dashboard.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    MESSAGES,
    format_change,
    format_date,
    format_number,
    format_score,
    format_share,
    translate,
)
from koe_directory import Directory
from koe_kit.web import db_session, json_error

API_PREFIX = "/api"

SESSION_KEY = "auth"
# No script at all and nothing from elsewhere: an injected tag could not run or load.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def settings() -> Settings:
    return current_app.extensions["aggregator.settings"]


def directory() -> Directory:
    return current_app.extensions["aggregator.directory"]


def today() -> date:
    return datetime.now(settings().timezone).date()


def lang() -> str:
    return g.get("lang", DEFAULT_LANGUAGE)


def _(key: str, **values: object) -> str:
    return translate(lang(), key, **values)


def plural(key: str, count: int, **values: object) -> str:
    """English says "1 open alert" but "2 open alerts": a key may have a ".one" twin
    for a count of one (Japanese needs none, so its twin repeats the same words)."""
    one = f"{key}.one"
    return _(one if count == 1 and one in MESSAGES else key, count=format_number(count), **values)


def translate_or(key: str, fallback: str) -> str:
    """A word for a value koe may not know yet (an alert kind a later rule adds)."""
    return _(key) if key in MESSAGES else fallback


def safe_next(target: str | None) -> str | None:
    """A path on this site to return to after sign-in, never another site's URL.

    Browsers drop tabs and line breaks from a Location and read a backslash as a
    slash, so "/<TAB>/evil.example" or "/<BACKSLASH>evil.example" would lead to another host:
    any whitespace, control character or backslash disqualifies the target. (A
    path koe itself sends here, request.full_path, has none of them.)
    """
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or any(ch == "\\" or ch.isspace() or not ch.isprintable() for ch in target)
    ):
        return None
    return target


def current_account() -> Account | None:
    if "account" not in g:
        token = session.get(SESSION_KEY)
        g.account = auth.session_account(db_session(), token, datetime.now(UTC)) if token else None
    return g.account


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_account() is None:
            target = request.full_path if request.query_string else request.path
            return redirect(url_for("dashboard.sign_in", next=target))
        return view(*args, **kwargs)

    return wrapped


def signed_in_account() -> Account:
    """The account of a `login_required` view (anyone else was sent to sign in)."""
    account = current_account()
    assert account is not None
    return account


def _choose_language() -> None:
    chosen = request.args.get("lang")
    if chosen in LANGUAGES:
        session["lang"] = chosen
    g.lang = session.get("lang", DEFAULT_LANGUAGE)


def before_request() -> None:
    _choose_language()
    csrf.protect()
    # No one types a NUL, and PostgreSQL text cannot hold one: refuse it here (400)
    # rather than fail in the database (500).
    if any("\x00" in value for value in request.form.values()):
        abort(400)


def after_request(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    # Divisions' figures are private: no shared cache may keep them.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["Content-Language"] = lang()
    return response


def lang_url(code: str) -> str:
    """This page in another language."""
    args = request.args.to_dict()
    args["lang"] = code
    return f"{request.path}?{urlencode(args)}"


def page_url(**changes: object) -> str:
    """This page with some query arguments changed (None removes one)."""
    args: dict[str, Any] = request.args.to_dict()
    args.pop("lang", None)
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    return f"{request.path}?{urlencode(args)}" if args else request.path


def template_globals() -> dict[str, Any]:
    return {
        "_": _,
        "_or": translate_or,
        "_n": plural,
        "lang": lang(),
        "account": current_account(),
        "csrf_token": csrf.csrf_token,
        "csrf_field": csrf.FIELD,
        "lang_url": lang_url,
        "page_url": page_url,
        "fmt_date": lambda value: format_date(value, lang(), settings().timezone),
        "fmt_num": format_number,
        # A city's pages share one host: the path is what tells two of one title apart.
        "url_path": lambda url: urlsplit(url).path,
        "fmt_score": format_score,
        "fmt_change": format_change,
        "fmt_share": format_share,
    }


def error_page(exc: HTTPException):
    code = exc.code or 500
    known = code if code in (400, 404, 429) else 400
    # The globals given here too: a URL outside every blueprint gets no context processor.
    page = render_template("dashboard/error.html", code=code, known=known, **template_globals())
    response = current_app.make_response((page, code))
    if exc.response is not None and "Retry-After" in exc.response.headers:
        response.headers["Retry-After"] = exc.response.headers["Retry-After"]
    return response


def unknown_url(exc: NotFound):
    """A URL no route knows. Under /api/ a program asked: JSON, as every API error. Anywhere
    else it is a person with a mistyped or old link: the dashboard's own 404 page in their
    language, with the dashboard's headers (no blueprint ran its hooks for this URL)."""
    if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
        return json_error(exc)
    _choose_language()
    return after_request(error_page(exc))


def protect(blueprint: Blueprint) -> None:
    """The hooks every dashboard blueprint shares."""
    blueprint.before_request(before_request)
    blueprint.after_request(after_request)
    blueprint.context_processor(template_globals)
    for code in (400, 403, 404, 405, 422, 429):
        blueprint.register_error_handler(code, error_page)
