"""Alert and digest emails, as pure functions: alert events + division → EmailMessage.

Every email has a Japanese text part and an HTML part (multipart/alternative),
rendered from templates/ by Jinja2. The HTML templates autoescape, so a page
title carrying markup is shown as text. Only text we control goes into headers,
plus the page title after `header_text` has stripped every line break and
control character and turned angle brackets into full-width ones (a title comes
from the embedding page, so it is someone else's text).
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from functools import partial
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from koe_contract import ALERT_DROP, ALERT_RECOVERED, EDIT_REVIEWED
from koe_contract import payloads as wire
from koe_directory import QUESTIONS_BY_KEY, Division

SUBJECTS = {
    ALERT_DROP: "【koe】ページの評価が下がりました: ",
    ALERT_RECOVERED: "【koe】ページの評価が回復しました: ",
}
TITLE_IN_SUBJECT_MAX = 60
UNTITLED = "(タイトルなし)"


def named(key: str) -> tuple[str, str]:
    """A question's short label and its wording in the survey, for the Japanese parts."""
    question = QUESTIONS_BY_KEY[key]
    return question.short("ja"), question.text("ja")


def japanese_date(day: str | date) -> str:
    d = date.fromisoformat(day) if isinstance(day, str) else day
    return f"{d.year}年{d.month}月{d.day}日"


def japanese_window(window: wire.Window) -> str:
    return f"{japanese_date(window['start'])}〜{japanese_date(window['end'])}"


def points(score: float) -> str:
    return f"{score:,.1f}点"


def count(n: int) -> str:
    return f"{n:,}件"


_templates = Environment(
    loader=PackageLoader("notifier", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_templates.filters.update(points=points, count=count, jdate=japanese_date)


@dataclass(frozen=True)
class Score:
    score: float
    n: int
    # The 95% Wilson interval; absent from alerts raised before it was added.
    low: float | None
    high: float | None

    @classmethod
    def of(cls, tally: Mapping[str, Any]) -> Score:
        interval = tally.get("interval") or {}
        return cls(tally["score"], tally["n"], interval.get("low"), interval.get("high"))

    @property
    def interval(self) -> str | None:
        if self.low is None or self.high is None:
            return None
        return f"{self.low:,.1f}〜{self.high:,.1f}点"

    @property
    def english(self) -> str:
        spread = f", 95% CI {self.low:.1f}-{self.high:.1f}" if self.low is not None else ""
        return f"{self.score:.1f} (n={self.n:,}{spread})"


@dataclass(frozen=True)
class QuestionView:
    key: str
    label: str
    asked: str
    before: Score
    after: Score
    # Drops: how far, and the recent answers by label. Recoveries: the score that
    # alerted and the days the recovery was judged on.
    drop_points: float | None = None
    breakdown: tuple[tuple[str, int], ...] = ()
    dropped: Score | None = None
    period: str | None = None


@dataclass(frozen=True)
class PageView:
    kind: str  # "drop" or "recovery"
    alert_id: str
    title: str
    url: str
    dashboard: str | None
    questions: tuple[QuestionView, ...]
    period: str | None = None
    baseline_period: str | None = None


def page_view(event: Mapping[str, Any], dashboard_url: str | None) -> PageView:
    data = event["data"]
    page = data["page"]
    view = partial(
        PageView,
        alert_id=str(uuid.UUID(data["alert_id"])),
        title=one_line(page.get("title") or "") or UNTITLED,
        url=one_line(page["url"]),
        dashboard=f"{dashboard_url}/pages/{page['id']}" if dashboard_url else None,
    )
    if event["type"] == ALERT_RECOVERED:
        return view(
            kind="recovery",
            questions=tuple(
                QuestionView(
                    q["question"],
                    *named(q["question"]),
                    before=Score.of(q["baseline"]),
                    dropped=Score.of(q["dropped"]),
                    after=Score.of(q["recent"]),
                    period=japanese_window(q["window"]),
                )
                for q in data["questions"]
            ),
        )
    return view(
        kind="drop",
        period=japanese_window(data["recent"]),
        baseline_period=japanese_window(data["baseline"]),
        questions=tuple(
            QuestionView(
                q["question"],
                *named(q["question"]),
                before=Score.of(q["baseline"]),
                after=Score.of(q["recent"]),
                drop_points=q["drop_points"],
                breakdown=tuple(
                    (label, q["recent"][answer])
                    for answer, label in QUESTIONS_BY_KEY[q["question"]].options("ja")
                ),
            )
            for q in data["questions"]
        ),
    )


def compose_alert_email(
    event: Mapping[str, Any],
    division: Division,
    *,
    mail_from: str,
    sent_at: datetime,
    dashboard_url: str | None = None,
) -> EmailMessage:
    """`event` is a koe.alerts.v1, koe.alerts.recovered.v1 or koe.alerts.edit.reviewed.v1
    event (already schema-valid)."""
    view: PageView | EditView
    if event["type"] == EDIT_REVIEWED:
        view = edit_view(event, dashboard_url)
        subject, template, context = f"【koe】ページ更新の効果: {view.outcome}: ", "edit", "edit"
    else:
        view = page_view(event, dashboard_url)
        subject, template, context = SUBJECTS[event["type"]], "alert", "page"
    return _message(
        subject + truncate(header_text(view.title), TITLE_IN_SUBJECT_MAX),
        division,
        mail_from=mail_from,
        sent_at=sent_at,
        message_id=message_id(f"alert-{view.alert_id}", mail_from),
        template=template,
        **{context: view},
    )


OUTCOMES = {
    "better": "良くなりました",
    "worse": "悪くなりました",
    "unclear": "はっきりした変化はありません",
    "too_few": "回答が少なく判断できません",
}
OUTCOMES_EN = {
    "better": "better",
    "worse": "worse",
    "unclear": "no clear change",
    "too_few": "too few answers to tell",
}


@dataclass(frozen=True)
class EditQuestion:
    key: str
    label: str
    asked: str
    outcome: str
    before: Score | None  # None: nobody answered in the window
    after: Score | None
    change: str | None  # signed points with the change's 95% interval
    change_en: str | None


@dataclass(frozen=True)
class EditView:
    alert_id: str
    title: str
    url: str
    dashboard: str | None
    day: str  # the edit's (the page's new last-modified date), in Japanese
    day_iso: str
    previous: str
    before_period: str
    after_period: str
    outcome: str  # in Japanese
    outcome_en: str
    questions: tuple[EditQuestion, ...]


def _signed(value: float) -> str:
    return f"{value:+,.1f}".replace("-", "\u2212")


def edit_view(event: Mapping[str, Any], dashboard_url: str | None) -> EditView:
    data: wire.EditReviewed = event["data"]
    page = data["page"]
    questions = []
    for q in data["questions"]:
        change = q["change"]
        questions.append(
            EditQuestion(
                q["question"],
                *named(q["question"]),
                outcome=OUTCOMES[q["outcome"]],
                before=Score.of(q["before"]) if q["before"]["n"] else None,
                after=Score.of(q["after"]) if q["after"]["n"] else None,
                change=None
                if change is None
                else f"{_signed(change['points'])}ポイント (95%信頼区間 "
                f"{_signed(change['low'])}〜{_signed(change['high'])})",
                change_en=None
                if change is None
                else f"{change['points']:+.1f} points (95% CI {change['low']:+.1f} to "
                f"{change['high']:+.1f})",
            )
        )
    return EditView(
        alert_id=str(uuid.UUID(data["alert_id"])),
        title=one_line(page.get("title") or "") or UNTITLED,
        url=one_line(page["url"]),
        dashboard=f"{dashboard_url}/pages/{page['id']}#edits" if dashboard_url else None,
        day=japanese_date(data["edit"]["day"]),
        day_iso=data["edit"]["day"],
        previous=japanese_date(data["edit"]["previous"]),
        before_period=japanese_window(data["before"]),
        after_period=japanese_window(data["after"]),
        outcome=OUTCOMES[data["outcome"]],
        outcome_en=OUTCOMES_EN[data["outcome"]],
        questions=tuple(questions),
    )


def compose_digest_email(
    events: Sequence[Mapping[str, Any]],
    division: Division,
    *,
    day: date,
    mail_from: str,
    sent_at: datetime,
    dashboard_url: str | None = None,
) -> EmailMessage:
    """One division's digest for `day`: every alert it lists, drops first, in arrival order."""
    views = [page_view(event, dashboard_url) for event in events]
    drops = [v for v in views if v.kind == "drop"]
    recoveries = [v for v in views if v.kind == "recovery"]
    subject = (
        f"【koe】ページ評価のまとめ {japanese_date(day)}: "
        f"低下 {count(len(drops))}・回復 {count(len(recoveries))}"
    )
    return _message(
        subject,
        division,
        mail_from=mail_from,
        sent_at=sent_at,
        message_id=message_id(f"digest-{division.code}-{day.isoformat()}", mail_from),
        template="digest",
        day=day,
        drops=drops,
        recoveries=recoveries,
    )


def _message(
    subject: str,
    division: Division,
    *,
    mail_from: str,
    sent_at: datetime,
    message_id: str,
    template: str,
    **context: Any,
) -> EmailMessage:
    """The mail to `division`, its text and HTML parts rendered from `template`.txt/.html.
    The Date header keeps sent_at's own zone: the callers give the city's (+0900)."""
    context.update(division=division, owner=owner(division))
    text = _templates.get_template(f"{template}.txt").render(context)
    html = _templates.get_template(f"{template}.html").render(context)
    message = EmailMessage(policy=SMTP)
    message["Subject"] = subject
    message["From"] = mail_from
    message["To"] = ", ".join(division.emails)
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id
    # RFC 3834: tells vacation responders not to answer a robot.
    message["Auto-Submitted"] = "auto-generated"
    # base64 keeps the Japanese parts 7-bit clean for any relay on the way.
    message.set_content(text, charset="utf-8", cte="base64")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="base64")
    return message


def owner(division: Division) -> str:
    return " ".join(p for p in (division.department, division.name) if p)


def message_id(local: str, mail_from: str) -> str:
    """The same alert (or digest) always gets the same Message-ID: a resend is recognisable."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<koe-{local}@{domain}>"


def one_line(text: str) -> str:
    """Line breaks and tabs become spaces, other control and format characters go,
    and runs of spaces collapse to one."""
    kept = "".join(
        ch
        for ch in unicodedata.normalize("NFC", text)
        if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE
    )
    # str.split() splits on every Unicode line break too (CR, LF, U+0085, U+2028, ...).
    return " ".join(kept.split())


def header_text(text: str) -> str:
    """`one_line`, with < and > full-width: a header never carries markup, even for
    a mail client or archive that would show a header as HTML. And no "=?": Python's
    email package decodes an RFC 2047 encoded word it finds in a header value it is
    given, so a title "=?utf-8?q?=0D=0ABcc:...?=" would become a real line break, and
    a header (or a body) of the title's choosing, in the mail as sent."""
    return one_line(text).translate(_NO_MARKUP).replace("=?", "＝?")


_NO_MARKUP = str.maketrans({"<": "＜", ">": "＞"})

# Cc: C0/C1 controls; Cf: bidi overrides, zero-width characters; the rest: unassigned
# or private code points, which no title needs.
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn"}


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
