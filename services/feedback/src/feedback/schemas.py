"""What a survey submission must look like, for the JSON API and the HTML form alike."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates,
    validates_schema,
)

from feedback import pages
from koe_directory import ANSWERS, QUESTION_KEYS, Directory, canonical_url, page_id_for_url
from koe_directory.catalogue import LOCALES
from koe_directory.pages import PAGE_ID, origin_of

log = logging.getLogger(__name__)

MAX_URL = 2048
MAX_TITLE = 200
# C0/C1 controls (CR and LF among them) and the Unicode line/paragraph separators:
# a title is shown in emails and dashboards and must stay one plain line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s{2,}")
# What a browser never leaves raw in the URL it sends (it percent-encodes them, and
# reads a backslash as a slash): controls (NUL among them, which PostgreSQL text cannot
# hold), spaces, quotes and angle brackets. A page_url holding one is not a page's URL.
NOT_IN_A_URL = r'\x00-\x20\x7f-\x9f"<>\\\u2028\u2029'  # a regex character class's contents
_NOT_IN_A_URL = re.compile(f"[{NOT_IN_A_URL}]")


def _as_a_browser_sends_it(url: str) -> None:
    if _NOT_IN_A_URL.search(url):
        raise ValidationError("must not contain spaces, control characters, quotes, <, > or \\")


@dataclass(frozen=True)
class Submission:
    page_id: str
    page_url: str  # canonical
    page_title: str | None
    division: str | None
    locale: str
    answers: dict[str, str]
    client_token: str | None
    page_modified: date | None = None


class PlainLine(fields.String):
    """Text with control characters removed; an empty result counts as not given."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        text = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
        return text or None

    def _validate(self, value: Any) -> None:
        # An empty title became None: not given, so there is no length to check.
        if value is not None:
            super()._validate(value)


# No city page was last modified before the web took hold at city halls; an earlier
# date is a template printing something else (a founding date, a typo).
OLDEST_MODIFIED = date(2000, 1, 1)


class Day(fields.Date):
    """A calendar day written exactly YYYY-MM-DD, as a CMS template prints it for koe."""

    default_error_messages = {"invalid": "must be a date written YYYY-MM-DD"}
    _SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not (isinstance(value, str) and self._SHAPE.match(value)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def _a_page_s_modified_date(value: date) -> None:
    """Not before OLDEST_MODIFIED, nor in the future: a day of slack for a CMS in
    another time zone than the server's clock (Japan is UTC+9)."""
    if value < OLDEST_MODIFIED:
        raise ValidationError(f"must not be before {OLDEST_MODIFIED.isoformat()}")
    if value > datetime.now(UTC).date() + timedelta(days=1):
        raise ValidationError("must not be in the future")


class _AtLeastOneAnswer(Schema):
    class Meta:
        unknown = RAISE

    @validates_schema
    def _at_least_one(self, data: Mapping[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError(f"answer at least one of {', '.join(QUESTION_KEYS)}")


# One optional field per survey question, named from koe_directory.survey rather
# than from a second list of the questions.
AnswersSchema = _AtLeastOneAnswer.from_dict(
    {key: fields.String(validate=validate.OneOf(ANSWERS)) for key in QUESTION_KEYS},
    name="AnswersSchema",
)


class FeedbackSchema(Schema):
    """One submission. Built once per app: the origins and divisions never change at run time."""

    class Meta:
        unknown = RAISE

    page_url = fields.String(
        required=True,
        validate=[
            validate.Length(max=MAX_URL),
            validate.URL(schemes={"http", "https"}, require_tld=False),
            _as_a_browser_sends_it,
        ],
    )
    page_id = fields.String(allow_none=True, validate=validate.Regexp(PAGE_ID))
    page_title = PlainLine(allow_none=True, validate=validate.Length(max=MAX_TITLE))
    division = fields.String(allow_none=True)
    answers = fields.Nested(AnswersSchema, required=True)
    locale = fields.String(load_default="ja", validate=validate.OneOf(LOCALES))
    # pages.py: a page_id counts only when the city's CMS signed it.
    page_sig = fields.String(
        allow_none=True,
        validate=validate.Regexp(r"^[0-9a-fA-F]{32}\Z", error="must be 32 hex digits"),
    )
    client_token = fields.UUID(allow_none=True)
    # The page's last-modified date as the CMS prints it (SHIRASAGI's and Joruri's
    # 更新日): the aggregator notices an edit when it changes (edits.py there).
    page_modified = Day(allow_none=True, validate=_a_page_s_modified_date)

    def __init__(
        self,
        *,
        origins: Iterable[str],
        directory: Directory,
        cms_key: bytes | None = None,
        **kwargs: Any,
    ):
        self.origins = frozenset(origins)
        self.directory = directory
        self.cms_key = cms_key
        super().__init__(**kwargs)

    @validates("page_url")
    def _on_our_site(self, value: str, **_: Any) -> None:
        if not on_allowed_origin(value, self.origins):
            raise ValidationError("not a page of a site koe serves")

    @validates("division")
    def _known_division(self, value: str | None, **_: Any) -> None:
        if value is not None and not self.directory.knows(value):
            raise ValidationError("unknown division code")

    @validates_schema
    def _signed_page_id(self, data: Mapping[str, Any], **_: Any) -> None:
        sig, page_id = data.get("page_sig"), data.get("page_id")
        if self.cms_key is None or sig is None or page_id is None or "page_url" not in data:
            return
        try:
            url = canonical_url(data["page_url"])
        except ValueError:
            return  # page_url's own validation says what is wrong
        if not pages.signed(self.cms_key, page_id, url, sig):
            raise ValidationError(
                "is not the city CMS's signature of this page_id and page_url", "page_sig"
            )

    @post_load
    def _submission(self, data: dict[str, Any], **_: Any) -> Submission:
        url = canonical_url(data["page_url"])
        token = data.get("client_token")
        return Submission(
            page_id=self._page_id(url, data.get("page_id"), data.get("page_sig")),
            page_url=url,
            page_title=data.get("page_title"),
            division=self._division(url, data.get("division")),
            locale=data["locale"],
            answers=dict(data["answers"]),
            client_token=str(token) if token is not None else None,
            page_modified=data.get("page_modified"),
        )

    def _page_id(self, url: str, page_id: str | None, sig: str | None) -> str:
        """The CMS's id when it signed it (checked above), else the URL's: anyone can write
        an id, and an id names another page's history (pages.py)."""
        if self.cms_key is not None and page_id is not None and sig is not None:
            return page_id
        return page_id_for_url(url)

    def _division(self, url: str, claimed: str | None) -> str | None:
        """The owner of the page's URL prefix (None: the fallback), whatever the snippet
        says: a public POST must not move a page (and its alert emails) to another
        division. A snippet that names another division is a CMS mistake the citizen
        cannot fix, so the answer is kept, under the right division, and the mistake
        is logged."""
        owner = self.directory.prefix_owner(url)
        code = owner.code if owner is not None else None
        if claimed is not None and claimed != code:
            log.warning(
                "snippet names another division than the page's URL prefix",
                extra={"page_url": url, "claimed": claimed, "owner": code},
            )
        return code


def on_allowed_origin(url: str, origins: frozenset[str]) -> bool:
    try:
        return origin_of(url) in origins
    except ValueError:
        return False


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as {"answers.clarity": ["..."]}.

    A nested schema's own errors (`_schema`) belong to the field holding it.
    """
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if key == "_schema":
                path = prefix or "body"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            for where, reasons in flatten_errors(value, path).items():
                flat.setdefault(where, []).extend(reasons)
    elif isinstance(messages, list | tuple):
        for item in messages:
            for where, reasons in flatten_errors(item, prefix).items():
                flat.setdefault(where, []).extend(reasons)
    else:
        flat[prefix or "body"] = [str(messages)]
    return flat
