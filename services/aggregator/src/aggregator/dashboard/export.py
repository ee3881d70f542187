"""CSV for Excel: every visible page's figures, and one page's daily series.

- UTF-8 with a BOM by default (Excel then opens it as UTF-8); `?encoding=shift_jis`
  gives Windows-31J (cp932, what Japanese Excel means by Shift_JIS). A character
  it cannot hold (e.g. an emoji in a page title) becomes "?", never an error
  half-way through a download.
- Japanese column headers; English with `?lang=en` (or the session's language).
- Streamed: rows are written while the database is read (the pages' rollups and
  the daily series through server-side cursors, page_list.visible_figures), so a
  large export neither waits for nor holds the whole file.
- A cell starting with = + - @ (or a tab or carriage return) gets a leading
  apostrophe, so Excel shows a title like "=HYPERLINK(...)" as text instead of
  running it (CSV formula injection).
- The figures are the stats API's own (stats.page_json / stats.figures_json).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, timedelta

from flask import Blueprint, Response, abort, request, stream_with_context
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aggregator.accounts.visibility import visible_page
from aggregator.counting.models import DailyCount, DailyResponse
from aggregator.dashboard import page_list
from aggregator.dashboard.access import (
    _,
    directory,
    lang,
    login_required,
    protect,
    signed_in_account,
    today,
)
from aggregator.query_args import whole_number
from aggregator.stats import figures as stats
from aggregator.stats.history import history, month_of
from aggregator.stats.scoring import WINDOWS, Tally
from koe_directory import QUESTION_KEYS
from koe_directory.catalogue import LOCALES
from koe_directory.pages import PAGE_ID
from koe_kit.web import db_session

export = Blueprint("export", __name__, url_prefix="/export")
protect(export)

MAX_DAYS = 3660
# pages.csv?locale=each: every language's figures, one part per language.
EACH = "each"
ENCODINGS = {"utf-8": ("utf-8", "utf-8"), "shift_jis": ("cp932", "Shift_JIS")}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Characters common in Japanese text that cp932 has only as a look-alike: without
# this an em dash or a yen sign in a title would become "?" in the Shift_JIS file.
# (Python's cp932 maps the wave dash 〜 and the minus − itself.)
_CP932_NEAREST = str.maketrans({"\u2014": "\u2015", "\u00a5": "\uffe5", "\u203e": "\uffe3"})
# Column headers of a question's figures, in the order of the cells.
_QUESTION_FIELDS = {
    "ja": ("満足度", "回答数", "はい", "ふつう", "いいえ", "95%下限", "95%上限"),
    "en": ("score", "n", "yes", "neutral", "no", "95% low", "95% high"),
}


# Bidirectional controls: they reorder how a cell reads without being seen (and in
# front of "=" hide it from a look at the first character); a title never needs them.
_BIDI_CONTROLS = dict.fromkeys(
    map(ord, "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)
# Excel (Japanese) takes full-width ＝＋－＠ for their ASCII forms when it opens a CSV.
_FULL_WIDTH_FORMULA_STARTS = ("\uff1d", "\uff0b", "\uff0d", "\uff20")


def neutralise(value: object) -> str:
    """The cell's text without bidi controls, with a formula-looking start made harmless."""
    text = "" if value is None else str(value).translate(_BIDI_CONTROLS)
    looks_like_formula = text.startswith(_FORMULA_STARTS + _FULL_WIDTH_FORMULA_STARTS)
    return "'" + text if looks_like_formula else text


def _question_headers(language: str, *, interval: bool) -> list[str]:
    score, n, yes, neutral, no, low, high = _QUESTION_FIELDS[language]
    fields = [score, n, low, high, yes, neutral, no] if interval else [score, n, yes, neutral, no]
    return [f"{_('question.' + q)} {field}" for q in QUESTION_KEYS for field in fields]


def _question_cells(figures: dict, *, interval: bool) -> list[object]:
    cells: list[object] = []
    for question in QUESTION_KEYS:
        q = figures["questions"][question]
        cells += [q["score"], q["n"]]
        if interval:
            cells += [q["wilson_low"], q["wilson_high"]]
        cells += [q["yes"], q["neutral"], q["no"]]
    return cells


def pages_header(language: str, *, by_locale: bool = False) -> list[str]:
    """by_locale: a first column names the language the row's answers were given in."""
    first = [_("csv.locale")] if by_locale else []
    return first + _pages_header(language)


def _pages_header(language: str) -> list[str]:
    if language == "en":
        head = ["page id", "title", "URL", "department", "division", "window", "start", "end"]
        head += ["responses", "score"]
    else:
        head = ["ページID", "タイトル", "URL", "部", "課", "期間", "開始日", "終了日"]
        head += ["回答者数", "満足度"]
    return head + _question_headers(language, interval=True)


def pages_rows(figures: Iterable[dict], locale: str | None = None) -> Iterator[list[object]]:
    """A row per page and window; with a `locale`, each row starts with it."""
    first = [locale] if locale else []
    for page in figures:
        owner = directory().owner(page["url"])
        for name in WINDOWS:
            figures_of = page["windows"][name]
            yield [
                *first,
                page["id"],
                page["title"],
                page["url"],
                owner.department,
                owner.name,
                _("window." + name),
                figures_of["start"],
                figures_of["end"],
                figures_of["n"],
                figures_of["score"],
                *_question_cells(figures_of, interval=True),
            ]


def daily_header(language: str) -> list[str]:
    head = ["day", "responses", "score"] if language == "en" else ["日付", "回答者数", "満足度"]
    return head + _question_headers(language, interval=False)


def daily_rows(session: Session, page_id: str, start: date, end: date) -> Iterator[list[object]]:
    """Every day from start to end (empty days too, as the stats API's series); a month
    folded into one row (retention.py) is one row, its date the month (YYYY-MM)."""
    answered, counts = history(DailyResponse), history(DailyCount)
    r, c = answered.c, counts.c
    rows = session.execute(
        select(r.day, r.monthly, r.responses, c.question, c.yes, c.neutral, c.no)
        .join(
            counts,
            (c.page_id == r.page_id) & (c.day == r.day) & (c.monthly == r.monthly),
        )
        # From the first of start's month: a folded month that began before start overlaps it.
        .where(r.page_id == page_id, r.day.between(month_of(start), end))
        .where((r.day >= start) | r.monthly)
        .order_by(r.day, r.monthly, c.question)
        .execution_options(yield_per=1000)
    )
    day = start
    current: tuple[date, bool] | None = None
    responses = 0
    tallies: dict[str, Tally] = {}
    for row in rows:
        if (row.day, row.monthly) != current:
            if current is not None:
                yield from _empty_days(day, current[0])
                yield _daily_row(*current, tallies, responses)
                day = _next(*current)
            current, responses, tallies = (row.day, row.monthly), row.responses, {}
        tallies[row.question] = Tally(row.yes, row.neutral, row.no)
    if current is not None:
        yield from _empty_days(day, current[0])
        yield _daily_row(*current, tallies, responses)
        day = _next(*current)
    yield from _empty_days(day, end + timedelta(days=1))


def _next(day: date, monthly: bool) -> date:
    """The first day after a row's day or month."""
    if monthly:
        return (day + timedelta(days=31)).replace(day=1)
    return day + timedelta(days=1)


def _empty_days(start: date, before: date) -> Iterator[list[object]]:
    while start < before:
        yield _daily_row(start, False, {}, 0)
        start += timedelta(days=1)


def _daily_row(day: date, monthly: bool, tallies: dict[str, Tally], responses: int) -> list[object]:
    figures = stats.figures_json(tallies, responses, with_interval=False)
    return [
        day.strftime("%Y-%m") if monthly else day.isoformat(),
        figures["n"],
        figures["score"],
        *_question_cells(figures, interval=False),
    ]


def _encoding() -> tuple[str, str]:
    choice = (request.args.get("encoding") or "utf-8").lower().replace("-", "_")
    choice = {"utf_8": "utf-8", "sjis": "shift_jis", "cp932": "shift_jis"}.get(choice, choice)
    if choice not in ENCODINGS:
        abort(400)
    return ENCODINGS[choice]


def _encoded(text: str, codec: str) -> bytes:
    if codec == "cp932":
        text = text.translate(_CP932_NEAREST)
    return text.encode(codec, errors="replace")


def csv_response(header: list[str], rows: Iterable[list[object]], filename: str) -> Response:
    codec, charset = _encoding()

    def generate() -> Iterator[bytes]:
        if codec == "utf-8":
            yield "\ufeff".encode()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(header)
        for index, row in enumerate(rows, start=1):
            writer.writerow([neutralise(cell) for cell in row])
            if index % 200 == 0:
                yield _encoded(buffer.getvalue(), codec)
                buffer.seek(0)
                buffer.truncate()
        yield _encoded(buffer.getvalue(), codec)

    return Response(
        stream_with_context(generate()),
        content_type=f"text/csv; charset={charset}",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@export.get("/pages.csv")
@login_required
def pages_csv():
    """Every answer's figures; `?locale=pt` those of the answers in one language, and
    `?locale=each` a part per language (each row names it), for the pages answered in it."""
    db, account = db_session(), signed_in_account()
    as_of = today()
    asked = request.args.get("locale") or None
    if asked is not None and asked != EACH and asked not in LOCALES:
        abort(400)
    if asked is None:
        rows = pages_rows(page_list.visible_figures(db, directory(), account, as_of))
        return csv_response(pages_header(lang()), rows, f"koe-pages-{as_of}.csv")
    locales = LOCALES if asked == EACH else (asked,)
    rows = (
        row
        for locale in locales
        for row in pages_rows(
            page_list.visible_figures(db, directory(), account, as_of, locale), locale
        )
    )
    header = pages_header(lang(), by_locale=True)
    return csv_response(header, rows, f"koe-pages-{asked}-{as_of}.csv")


@export.get("/pages/<page_id>/daily.csv")
@login_required
def daily_csv(page_id: str):
    db, account = db_session(), signed_in_account()
    if not PAGE_ID.match(page_id) or visible_page(db, directory(), account, page_id) is None:
        abort(404)
    end = today()
    raw_days = request.args.get("days")
    if raw_days:
        days = whole_number(raw_days, 1, MAX_DAYS)
        if days is None:
            abort(400)
        start = end - timedelta(days=days - 1)
    else:
        answered = history(DailyResponse).c
        first = db.scalar(select(func.min(answered.day)).where(answered.page_id == page_id))
        start = min(first, end) if first else end
    return csv_response(
        daily_header(lang()), daily_rows(db, page_id, start, end), f"koe-{page_id}-daily.csv"
    )
