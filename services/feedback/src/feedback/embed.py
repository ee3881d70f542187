"""The embed: the snippet a city's CMS template carries, its static files, and /embed,
the page that fills the snippet in for a site, division and language.

The snippet is a plain HTML form (it works with JavaScript off) plus widget.css
and widget.js, which upgrades the same form in place. README, "Embedding the
survey", documents it.
"""

from __future__ import annotations

import json
import re

from flask import Blueprint, Flask, abort, current_app, jsonify, render_template, request
from markupsafe import Markup

from feedback.schemas import on_allowed_origin
from koe_directory import QUESTIONS, Directory
from koe_directory.catalogue import (
    LOCALES,
    NAMES,
    SOURCE_LOCALE,
    WIDGET_TEXTS,
    direction,
    translate,
)
from koe_directory.pages import origin_of

blueprint = Blueprint("embed", __name__)

# Public, cookie-free files: any site may load them (CORS lets a CMS add SRI).
# An hour, then a cheap revalidation by ETag: the snippet names the files
# without a version, so a new widget.js must reach pages within the day.
STATIC_MAX_AGE_S = 3600
# The pages koe itself serves (/embed, /demo) run under this policy: no inline
# script or style anywhere, which proves the widget needs neither.
CSP = (
    "default-src 'self'; base-uri 'none'; object-src 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_URL_PLACEHOLDER = "PAGE_URL"
# The CMS's tag for the page's last-modified date, written YYYY-MM-DD.
PAGE_MODIFIED_PLACEHOLDER = "PAGE_MODIFIED"
# The CMS's tag for the page's title: without JavaScript the form carries the title
# widget.js would read from <title>. Like every title a client sends, it is only a vote:
# it becomes the page's once enough sources sent it (README, "Pages keep their identity").
PAGE_TITLE_PLACEHOLDER = "PAGE_TITLE"
# /embed's language for a CMS that serves one template in many languages: the snippet
# is Japanese without JavaScript and takes the page's <html lang> with it.
PAGE_LANGUAGE = "page"
# A second snippet on one page needs ids of its own: without JavaScript the
# thank-you is shown by its id (:target), and the first element with the id wins.
# /embed's `widget` names it; the ids and the plain form's way back carry the name.
WIDGET_NAME = re.compile(r"[a-z0-9]{1,16}")


def snippet_ids(widget: str = "") -> dict[str, str]:
    """The snippet's element ids: today's for the first snippet, suffixed for a named one."""
    suffix = f"-{widget}" if widget else ""
    parts = ("feedback", "title", "thanks", "error", "empty")
    return {part: f"koe-{part}{suffix}" for part in parts}


def widget_texts(locale: str) -> dict[str, str]:
    """The widget's own words in `locale`, by name (catalogue.WIDGET_TEXTS)."""
    return {name: translate(locale, message) for name, message in WIDGET_TEXTS.items()}


# What widget.js says after the page loaded (the rest is in the snippet's markup).
SCRIPT_TEXTS = ("submit", "sending", "empty", "down", "busy", "bad")


def script_texts(locale: str) -> dict[str, object]:
    """What widget.js needs to speak `locale`: its messages, and the questions to relabel
    a snippet made for another language (/i18n/<locale>.json)."""
    texts = widget_texts(locale)
    return {
        "locale": locale,
        "dir": direction(locale),
        **texts,
        "questions": {
            q.key: [q.text(locale), *(label for _, label in q.options(locale))] for q in QUESTIONS
        },
    }


def snippet(
    base_url: str,
    lang: str,
    page_url: str,
    division: str | None = None,
    widget: str = "",
    modified: str = "",
    title: str = "",
) -> Markup:
    """The embed snippet: stylesheet, survey form and script, all from `base_url` (koe).

    lang: a catalogue locale, or PAGE_LANGUAGE.
    widget: the name of a further snippet on the same page (WIDGET_NAME), or "".
    modified: the page's last-modified date (or the CMS tag printing it), or "" for none.
    title: the page's title (or the CMS tag printing it), or "" for none.
    """
    follow_page = lang == PAGE_LANGUAGE
    if follow_page:
        lang = SOURCE_LOCALE
    texts = widget_texts(lang)
    # Safe markup: the template is ours and Jinja escaped every value put into it.
    return Markup(  # noqa: S704
        render_template(
            "snippet.html",
            base=base_url.rstrip("/"),
            lang=lang,
            page_url=page_url,
            division=division,
            widget=widget,
            modified=modified,
            title=title,
            ids=snippet_ids(widget),
            questions=QUESTIONS,
            follow_page=follow_page,
            t=texts,
            dir=direction(lang),
            script_texts=json.dumps(
                {name: texts[name] for name in SCRIPT_TEXTS}, ensure_ascii=False
            ),
        ).strip()
    )


def with_csp(html: str, status: int = 200) -> tuple[str, int, dict[str, str]]:
    return html, status, {"Content-Security-Policy": CSP}


def init_widget(app: Flask) -> None:
    """Headers for the widget's static files."""
    app.config["SEND_FILE_MAX_AGE_DEFAULT"] = STATIC_MAX_AGE_S

    @app.after_request
    def static_headers(response):
        if request.endpoint == "static":
            response.headers["Access-Control-Allow-Origin"] = "*"
            response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
        return response


@blueprint.get("/i18n/<locale>.json")
def strings(locale: str):
    """widget.js's words in one language, fetched only by a snippet that must relabel
    itself (made for the page's language, `data-koe-lang="page"`). Public and the
    same for every page, like the static files: it names no page and sets no cookie."""
    if locale not in LOCALES:
        abort(404)
    response = jsonify(script_texts(locale))
    response.cache_control.public = True
    response.cache_control.max_age = STATIC_MAX_AGE_S
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def public_url() -> str:
    """KOE_PUBLIC_URL, or a 404 that names it: the snippet must not name whatever host
    the request's Host header says (a proxy or cache in front could hand it on)."""
    url = current_app.extensions["koe.feedback.settings"].public_url
    if url is None:
        abort(404, description="set KOE_PUBLIC_URL (where citizens reach koe) to use this page")
    return url


def _directory() -> Directory:
    return current_app.extensions["koe.feedback.directory"]


@blueprint.get("/embed")
def generator():
    """Fill the snippet in for a site origin, a division code and a language."""
    base_url = public_url()
    directory = _directory()
    origins = sorted(current_app.extensions["koe.feedback.intake"].origins)
    args = request.args
    site = args.get("origin", "").strip()
    division = args.get("division", "").strip() or None
    lang = args.get("lang", "ja")
    page_url = args.get("page_url", "").strip() or PAGE_URL_PLACEHOLDER
    widget = args.get("widget", "").strip()
    modified = PAGE_MODIFIED_PLACEHOLDER if args.get("modified") else ""
    title = PAGE_TITLE_PLACEHOLDER if args.get("title") else ""
    errors: dict[str, str] = {}
    code = ""
    if site:
        try:
            site = origin_of(site)
        except ValueError:
            errors["origin"] = "not an http(s) origin / http(s) のオリジンではありません"
        else:
            if not on_allowed_origin(site, frozenset(origins)):
                errors["origin"] = (
                    "not in KOE_ALLOWED_ORIGINS / koe が受け付けるサイトではありません"
                )
        if division is not None and not directory.knows(division):
            errors["division"] = "unknown division / divisions.yaml にない課です"
        if lang not in (*LOCALES, PAGE_LANGUAGE):
            errors["lang"] = f"one of {', '.join(LOCALES)} / 対応している言語ではありません"
        if page_url != PAGE_URL_PLACEHOLDER and not (
            page_url.startswith(("http://", "https://"))
            and on_allowed_origin(page_url, frozenset([site]))
        ):
            errors["page_url"] = "must be a page of the site / サイトのページの URL にしてください"
        if widget and not WIDGET_NAME.fullmatch(widget):
            errors["widget"] = (
                "up to 16 lowercase letters and digits / 半角英小文字と数字で16文字まで"
            )
        if not errors:
            code = str(snippet(base_url, lang, page_url, division, widget, modified, title))
    html = render_template(
        "embed.html",
        origins=origins,
        divisions=sorted(directory.divisions.values(), key=lambda d: d.code),
        site=site,
        division=division or "",
        lang=lang,
        locales=LOCALES,
        languages=NAMES | {PAGE_LANGUAGE: "ページの言語に合わせる / the page's language"},
        page_url=page_url if page_url != PAGE_URL_PLACEHOLDER else "",
        widget=widget,
        modified=bool(modified),
        title=bool(title),
        title_placeholder=PAGE_TITLE_PLACEHOLDER,
        placeholder=PAGE_URL_PLACEHOLDER,
        modified_placeholder=PAGE_MODIFIED_PLACEHOLDER,
        errors=errors,
        code=code,
    )
    return with_csp(html, 422 if errors else 200)
