"""The alert email, as a pure function: alert data + division → EmailMessage.

Only text we control goes into headers, plus the page title after
`header_safe` has stripped every line break and control character (a title
comes from the embedding page, so it is someone else's text).
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from typing import Any

from koe_directory import Division

SUBJECT_PREFIX = "【koe】ページの評価が下がりました: "
TITLE_IN_SUBJECT_MAX = 60
UNTITLED = "(タイトルなし)"


QUESTIONS: dict[str, tuple[str, str, tuple[str, str, str]]] = {
    # key: (short label, the question as the survey asks it, answer labels yes/neutral/no)
    "findability": (
        "見つけやすさ",
        "このページは見つけやすかったですか?",
        ("見つけやすかった", "ふつう", "見つけにくかった"),
    ),
    "clarity": (
        "わかりやすさ",
        "このページの内容はわかりやすかったですか?",
        ("わかりやすかった", "ふつう", "わかりにくかった"),
    ),
    "usefulness": (
        "参考になったか",
        "このページの内容は参考になりましたか?",
        ("参考になった", "ふつう", "参考にならなかった"),
    ),
}


def compose_alert_email(
    alert: Mapping[str, Any],
    division: Division,
    *,
    mail_from: str,
    sent_at: datetime,
    dashboard_url: str | None = None,
) -> EmailMessage:
    """`alert` is the `data` of a koe.alerts.v1 event (already schema-valid)."""
    alert_id = str(uuid.UUID(alert["alert_id"]))
    page = alert["page"]
    title = one_line(page.get("title") or "") or UNTITLED

    message = EmailMessage(policy=SMTP)
    message["Subject"] = SUBJECT_PREFIX + truncate(title, TITLE_IN_SUBJECT_MAX)
    message["From"] = mail_from
    message["To"] = ", ".join(division.emails)
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id(alert_id, mail_from)
    # RFC 3834: tells vacation responders not to answer a robot.
    message["Auto-Submitted"] = "auto-generated"
    body = _body(alert, alert_id, division, title, dashboard_url)
    # base64 keeps the Japanese body 7-bit clean for any relay on the way.
    message.set_content(body, charset="utf-8", cte="base64")
    return message


def message_id(alert_id: str, mail_from: str) -> str:
    """The same alert always gets the same Message-ID, so a resend is recognisable."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
    return f"<koe-alert-{alert_id}@{domain}>"


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


# Cc: C0/C1 controls; Cf: bidi overrides, zero-width characters; the rest: unassigned
# or private code points, which no title needs.
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn"}


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def japanese_date(day: str) -> str:
    d = date.fromisoformat(day)
    return f"{d.year}年{d.month}月{d.day}日"


def japanese_window(window: Mapping[str, str]) -> str:
    return f"{japanese_date(window['start'])}〜{japanese_date(window['end'])}"


def points(score: float) -> str:
    return f"{score:,.1f}点"


def count(n: int) -> str:
    return f"{n:,}件"


def _body(
    alert: Mapping[str, Any],
    alert_id: str,
    division: Division,
    title: str,
    dashboard_url: str | None,
) -> str:
    page = alert["page"]
    recent, baseline = alert["recent"], alert["baseline"]
    owner = " ".join(p for p in (division.department, division.name) if p)
    lines = [
        f"{owner} ご担当者様",
        "",
        "ページ末尾のアンケート(koe)で、次のページの評価が下がりました。",
        "",
        f"ページ: {title}",
        f"URL: {one_line(page['url'])}",
    ]
    if dashboard_url:
        lines.append(f"ダッシュボード: {dashboard_url}/pages/{page['id']}")
    lines += [
        "",
        f"今回の期間: {japanese_window(recent)}",
        f"比較の期間: {japanese_window(baseline)}",
        "",
    ]
    for question in alert["questions"]:
        label, asked, answers = QUESTIONS[question["question"]]
        before, after = question["baseline"], question["recent"]
        lines += [
            f"■ {label}「{asked}」",
            f"  {points(before['score'])} (回答{count(before['n'])})"
            f" → {points(after['score'])} (回答{count(after['n'])})",
            f"  {question['drop_points']:,.1f}ポイント低下",
            "  今回の内訳: "
            + " / ".join(
                f"{answer} {count(after[key])}"
                for answer, key in zip(answers, ("yes", "neutral", "no"), strict=True)
            ),
            "",
        ]
    lines += [
        "ページの内容や、ページへのたどり着きやすさを見直すきっかけにしてください。",
        "このメールは koe が自動で送信しています。",
        "",
        "--",
        "Summary (English): satisfaction with this page dropped.",
    ]
    for question in alert["questions"]:
        before, after = question["baseline"], question["recent"]
        lines.append(
            f"- {question['question']}: {before['score']:.1f} (n={before['n']:,})"
            f" -> {after['score']:.1f} (n={after['n']:,}),"
            f" down {question['drop_points']:.1f} points"
        )
    lines += [
        f"Recent window {recent['start']} to {recent['end']},"
        f" baseline {baseline['start']} to {baseline['end']}.",
        f"Alert id: {alert_id}",
    ]
    return "\n".join(lines) + "\n"
