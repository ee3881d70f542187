"""Per-page window figures kept beside the daily rows, so lists sort and page in SQL.

A listing used to sum every visible page's daily rows on each request: its cost grew
with pages × days. page_rollups holds, per page, what stats/figures.py would sum for the
windows 7d, 28d and all ending at one day, `rollup_state.as_of`:
responses (the page's n) and yes / neutral / no per question. page_locale_rollups
holds the same per page and language, from the per-language tables (locale_split.py),
for the list's language filter.

Both are kept right by two moves, in the consumer's batch transaction:
- `add`: a batch's deltas (the same ones it adds to daily_counts and daily_responses,
  replacements and excess included) go to every window their day falls in;
- `advance`: when the city-local day changes, the 7d and 28d windows are summed again
  from the daily rows of their last 28 days (bounded per page, found by the day
  indexes), and `all` gains the days between the old and the new as_of (a day
  after as_of is in no window yet, as in stats/figures.py, which reads only day <= as_of).
  The first advance (or a rebuild) sums everything, months folded from old days too.

A batch holds rollup_state's row shared and `advance` holds it exclusively, so two
consumers never advance twice nor add a delta relative to a day that just moved.
Readers use the rollups only when as_of is the day they ask for; any other day (the
stats API's `?as_of=`, or the minutes after midnight before the consumer's first
batch or idle tick) is summed from the daily rows as before: slower, never different.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import (
    Column,
    ColumnElement,
    Date,
    FromClause,
    Integer,
    String,
    Table,
    case,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session

from aggregator.counting.models import (
    DailyCount,
    DailyLocaleCount,
    DailyLocaleResponse,
    DailyResponse,
)
from aggregator.db import Base
from aggregator.pages.models import Page
from aggregator.stats.history import history
from aggregator.stats.scoring import WINDOWS, Tally, window_ending
from koe_directory import ANSWERS, QUESTION_KEYS
from koe_kit.db import bulk_add, bulk_insert

# Column name prefixes of the windows (a column name cannot start with a digit).
PREFIX = {"7d": "d7", "28d": "d28", "all": "all"}
_MOVING = ("7d", "28d")
_IN_CHUNK = 500


def _columns(window: str) -> list[str]:
    p = PREFIX[window]
    return [f"{p}_n"] + [f"{p}_{q}_{a}" for q in QUESTION_KEYS for a in ANSWERS]


COLUMNS = [name for window in WINDOWS for name in _columns(window)]

page_rollups = Table(
    "page_rollups",
    Base.metadata,
    Column("page_id", String(128), primary_key=True),
    *(Column(name, Integer, nullable=False, server_default="0") for name in COLUMNS),
    postgresql_with={"fillfactor": 70},  # updated in place by every batch
)

page_locale_rollups = Table(
    "page_locale_rollups",
    Base.metadata,
    Column("page_id", String(128), primary_key=True),
    Column("locale", String(16), primary_key=True),
    *(Column(name, Integer, nullable=False, server_default="0") for name in COLUMNS),
    postgresql_with={"fillfactor": 70},
)


@dataclass(frozen=True)
class _Kept:
    """A rollup table, its key, and the daily tables it sums."""

    table: Table
    keys: tuple[str, ...]
    counts: type[Base]
    responses: type[Base]


_KEPT = (
    _Kept(page_rollups, ("page_id",), DailyCount, DailyResponse),
    _Kept(page_locale_rollups, ("page_id", "locale"), DailyLocaleCount, DailyLocaleResponse),
)

# A batch's deltas: (rollup key, day, question) -> [yes, neutral, no]; (key, day) -> n.
Counts = Mapping[tuple[tuple[str, ...], date, str], list[int]]
Responses = Mapping[tuple[tuple[str, ...], date], int]

rollup_state = Table(
    "rollup_state",
    Base.metadata,
    Column("id", Integer, primary_key=True),  # one row, id 1
    Column("as_of", Date, nullable=True),  # None: nothing rolled up yet
)


def current_day(session: Session) -> date | None:
    """The day the rollups' windows end at (read without a lock: for readers)."""
    return session.scalar(select(rollup_state.c.as_of).where(rollup_state.c.id == 1))


def _locked_day(session: Session, *, exclusive: bool) -> date | None:
    query = select(rollup_state.c.as_of).where(rollup_state.c.id == 1)
    row = session.execute(query.with_for_update(read=not exclusive)).first()
    if row is None:
        bulk_insert(session, rollup_state, [{"id": 1, "as_of": None}])
        return None
    return row.as_of


def add(
    session: Session,
    today: date,
    counts: Mapping[tuple[str, date, str], list[int]],
    responses: Mapping[tuple[str, date], int],
    locale_counts: Mapping[tuple[str, date, str, str], list[int]],
    locale_responses: Mapping[tuple[str, date, str], int],
) -> None:
    """Add a batch's deltas (ingest.py's, with the per-language ones) to the windows
    ending at `today` (advancing to it first)."""
    as_of = _locked_day(session, exclusive=False)
    if as_of is None or as_of < today:
        advance(session, today)
        as_of = today
    pages, languages = _KEPT
    _add_deltas(
        session,
        pages,
        as_of,
        {((p,), d, q): c for (p, d, q), c in counts.items()},
        {((p,), d): n for (p, d), n in responses.items()},
    )
    _add_deltas(
        session,
        languages,
        as_of,
        {((p, lc), d, q): c for (p, d, lc, q), c in locale_counts.items()},
        {((p, lc), d): n for (p, d, lc), n in locale_responses.items()},
    )


def _add_deltas(
    session: Session, kept: _Kept, as_of: date, counts: Counts, responses: Responses
) -> None:
    rows: dict[tuple[str, ...], dict[str, int]] = {}
    windows = {name: window_ending(as_of, length) for name, length in WINDOWS.items()}

    def cells(key: tuple[str, ...], day: date) -> list[str]:
        """The prefixes of the windows `day` is in. A day after as_of is in none and
        makes no row: a page's language appears in the list once its day has come, as
        stats/figures.py (day <= as_of) lists it."""
        if day > as_of:
            return []
        rows.setdefault(key, dict.fromkeys(COLUMNS, 0))
        return [PREFIX[n] for n, w in windows.items() if w.start is None or day >= w.start]

    for (key, day, question), (yes, neutral, no) in counts.items():
        for p in cells(key, day):
            rows[key][f"{p}_{question}_yes"] += yes
            rows[key][f"{p}_{question}_neutral"] += neutral
            rows[key][f"{p}_{question}_no"] += no
    for (key, day), n in responses.items():
        for p in cells(key, day):
            rows[key][f"{p}_n"] += n
    bulk_add(
        session,
        kept.table,
        [{**dict(zip(kept.keys, key, strict=True)), **row} for key, row in rows.items()],
        list(kept.keys),
        COLUMNS,
    )


def advance(session: Session, today: date) -> None:
    """Move the windows' end to `today` (never back): see the module's docstring."""
    as_of = _locked_day(session, exclusive=True)
    if as_of is not None and as_of >= today:
        return
    for kept in _KEPT:
        counts, responses = kept.counts.__table__, kept.responses.__table__
        assert isinstance(counts, Table) and isinstance(responses, Table)
        if as_of is None:
            # Nothing rolled up yet: every answer, the months folded from old days too.
            everything = history(kept.counts), history(kept.responses)
            _add_sums(session, kept, ["all"], *everything, date.min, today)
        else:
            # `all` gains the days after the old as_of, up to today; no fold moves those
            # (retention.fold_before), so the daily rows hold them.
            after = as_of + timedelta(days=1)
            _add_sums(session, kept, ["all"], counts, responses, after, today)
        # 7d and 28d: summed again from their days. Only a page with daily rows in the
        # last 28 days of the old or the new end can have a non-zero moving window.
        moving = [name for window in _MOVING for name in _columns(window)]
        # (A page's answers and responses move together, so d28_n = 0 means all of it is.)
        session.execute(
            update(kept.table).where(kept.table.c.d28_n != 0).values(dict.fromkeys(moving, 0))
        )
        start = window_ending(today, WINDOWS["28d"]).start
        assert start is not None
        _add_sums(session, kept, list(_MOVING), counts, responses, start, today)
    session.execute(update(rollup_state).where(rollup_state.c.id == 1).values(as_of=today))


def rebuild(session: Session, today: date) -> None:
    """Every page's rollup from its daily rows alone (after filling those by hand)."""
    _locked_day(session, exclusive=True)
    for kept in _KEPT:
        session.execute(delete(kept.table))
    session.execute(update(rollup_state).where(rollup_state.c.id == 1).values(as_of=None))
    advance(session, today)


def _add_sums(
    session: Session,
    kept: _Kept,
    windows: list[str],
    counts: FromClause,
    answered: FromClause,
    first: date,
    today: date,
) -> None:
    """Add to `windows` of `kept` the sums of the rows of `counts` and `answered` (its
    daily tables, or their history.py unions) within each window, from `first` on."""
    starts = {name: window_ending(today, WINDOWS[name]).start for name in windows}

    def within(day: ColumnElement[date], name: str, value: ColumnElement[int]):
        start = starts[name]
        return func.coalesce(
            func.sum(value if start is None else case((day >= start, value), else_=0)), 0
        )

    sums: dict[tuple[str, ...], dict[str, int]] = {}
    c, r = counts.c, answered.c
    keys_of_c, keys_of_r = [c[k] for k in kept.keys], [r[k] for k in kept.keys]
    count_columns = [
        within(c.day, name, c[a]).label(f"{PREFIX[name]}_{a}") for name in windows for a in ANSWERS
    ]
    counted = session.execute(
        select(*keys_of_c, c.question, *count_columns)
        .where(c.day.between(first, today))
        .group_by(*keys_of_c, c.question)
    )
    for row in counted:
        if row.question not in QUESTION_KEYS:
            continue
        cells = sums.setdefault(tuple(row[: len(kept.keys)]), dict.fromkeys(COLUMNS, 0))
        for name in windows:
            for a in ANSWERS:
                cells[f"{PREFIX[name]}_{row.question}_{a}"] += int(
                    getattr(row, f"{PREFIX[name]}_{a}")
                )
    response_columns = [within(r.day, name, r.responses).label(PREFIX[name]) for name in windows]
    summed = session.execute(
        select(*keys_of_r, *response_columns)
        .where(r.day.between(first, today))
        .group_by(*keys_of_r)
    )
    for row in summed:
        cells = sums.setdefault(tuple(row[: len(kept.keys)]), dict.fromkeys(COLUMNS, 0))
        for name in windows:
            cells[f"{PREFIX[name]}_n"] += int(getattr(row, PREFIX[name]))
    rows = [{**dict(zip(kept.keys, key, strict=True)), **cells} for key, cells in sums.items()]
    for start in range(0, len(rows), _IN_CHUNK):
        bulk_add(session, kept.table, rows[start : start + _IN_CHUNK], list(kept.keys), COLUMNS)


# -- reading ----------------------------------------------------------------------------------


def tallies(row: Mapping[str, int], window: str) -> tuple[dict[str, Tally], int]:
    """A rollup row's tallies per question and responses for one window."""
    p = PREFIX[window]
    return (
        {
            q: Tally(row[f"{p}_{q}_yes"], row[f"{p}_{q}_neutral"], row[f"{p}_{q}_no"])
            for q in QUESTION_KEYS
        },
        row[f"{p}_n"],
    )


def score(window: str, table: Table = page_rollups) -> ColumnElement[float]:
    """The page score (scoring.page_score) in SQL: the mean of the question scores that
    have answers, NULL when none has."""
    p = PREFIX[window]
    c = table.c
    scores, answered = [], []
    for q in QUESTION_KEYS:
        yes, neutral, no = (c[f"{p}_{q}_{a}"] for a in ANSWERS)
        n = yes + neutral + no
        scores.append(case((n > 0, (yes + neutral * 0.5) * 100.0 / n), else_=0.0))
        answered.append(case((n > 0, 1), else_=0))
    count = answered[0] + answered[1] + answered[2]
    return case((count > 0, (scores[0] + scores[1] + scores[2]) / count), else_=literal(None))


def responses(window: str, table: Table = page_rollups) -> ColumnElement[int]:
    return table.c[f"{PREFIX[window]}_n"]


def joined(locale: str | None = None):
    """pages LEFT JOIN page_rollups (a page with no answer yet has no rollup row); with
    a `locale`, pages JOIN that language's rollups: the pages answered in it only, as
    stats.list_pages lists them."""
    if locale is None:
        return Page.__table__.outerjoin(page_rollups, page_rollups.c.page_id == Page.id)
    c = page_locale_rollups.c
    return Page.__table__.join(page_locale_rollups, (c.page_id == Page.id) & (c.locale == locale))


def table_for(locale: str | None) -> Table:
    """The rollups the list reads: all answers, or one language's."""
    return page_rollups if locale is None else page_locale_rollups


def zero_if_missing(row: Mapping[str, int | None]) -> dict[str, int]:
    return {name: int(row.get(name) or 0) for name in COLUMNS}
