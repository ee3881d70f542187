"""The overview's funnel plots: per question, the limits, the pages drawn as dots and
listed, and the density of the rest.

A page's place on a question's plot depends only on its tally of that question (n and
the rounded score come from yes / neutral / no). So the plots start from the tallies
grouped, with how many pages share each: from page_rollups, a GROUP BY per question in
one SQL statement, a few hundred groups whatever the city's size (most pages have small
tallies); the pages themselves are read, in one more statement, only for the dots and
rows shown (the outliers, or every page of a small city or of the full table). The
limits, statuses and bins are computed from the groups by the same Python as for single
pages, so the numbers and the picture are the ones summing page by page gave, on either
database. Loading every page's figures to draw the plot took 2 s at 10,000 pages.

Before the consumer moved the rollups to today the figures are summed from the daily
rows (page_list.visible_figures) and grouped here: slower, never different.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from sqlalchemy import Column, ColumnElement, Text, cast, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from aggregator.accounts.models import Account
from aggregator.accounts.visibility import divisions_for
from aggregator.counting import rollups
from aggregator.dashboard import charts, page_list
from aggregator.pages.models import Page
from aggregator.stats import funnel
from aggregator.stats.figures import rounded
from aggregator.stats.scoring import Tally, question_score
from koe_directory import ANSWERS, Directory

# Beyond this many answered pages a funnel draws only the outliers as dots, the rest as
# a density, and lists the outliers: a dot and a row per page of a 10,000-page city made
# a 1 MB page nobody could read. The full table is one link away (?table=all).
MAX_DOTS = 300
MAX_OUTLIERS = 150
_SEVERITY = {"low3": 0, "high3": 1, "low2": 2, "high2": 3}

Counts = tuple[int, int, int]  # yes, neutral, no of one question
Wanted = Collection[Counts] | None  # the tallies of the pages to read; None: every one


class Figures(Protocol):
    """Where the plots' tallies come from (the rollups in SQL, or figures summed)."""

    def groups(self, questions: Sequence[str]) -> dict[str, Counter[Counts]]:
        """Per question, the answered pages per tally."""
        ...

    def pages(self, wanted: Mapping[str, Wanted]) -> dict[str, list[tuple[dict, Counts]]]:
        """Per question of `wanted`: (page with id, url and title; its tally) of the
        answered pages whose tally is one it wants, in page id order."""
        ...


@dataclass(frozen=True)
class Point:
    n: int
    score: float  # as the pages list shows it: rounded to 0.1

    @classmethod
    def of(cls, counts: Counts) -> Point:
        tally = Tally(*counts)
        score = rounded(question_score(tally))
        assert score is not None  # only answered tallies are plotted
        return cls(tally.n, score)


@dataclass(frozen=True)
class Judged:
    """One question's groups against their limits."""

    groups: Counter[Counts]
    ref: funnel.Reference
    points: dict[Counts, Point]
    statuses: dict[Counts, str]

    @classmethod
    def of(cls, groups: Counter[Counts]) -> Judged | None:
        """None when nobody answered."""
        yes, neutral, no = (sum(c[i] * pages for c, pages in groups.items()) for i in range(3))
        ref = funnel.reference([(yes, neutral, no)]) if groups else None
        if ref is None:
            return None
        points = {counts: Point.of(counts) for counts in groups}
        statuses = {c: funnel.status(ref, p.n, p.score) for c, p in points.items()}
        return cls(groups, ref, points, statuses)

    @property
    def small(self) -> bool:
        """Every page drawn as a dot."""
        return self.groups.total() <= MAX_DOTS


def plots(figures: Figures, questions: Sequence[str], *, full_table: bool) -> dict:
    """Per question: None when nobody answered, else ref, chart, entries (the rows
    listed) and dense (how many pages the density holds)."""
    groups = figures.groups(questions)
    judged = {q: Judged.of(groups[q]) for q in questions}
    wanted = {
        q: None if j.small or full_table else _outlier_counts(j)
        for q, j in judged.items()
        if j is not None
    }
    pages = figures.pages(wanted) if wanted else {}
    return {
        q: None if j is None else _plot(j, pages[q], full_table=full_table)
        for q, j in judged.items()
    }


def _plot(judged: Judged, pages: list[tuple[dict, Counts]], *, full_table: bool) -> dict:
    points, statuses = judged.points, judged.statuses
    entries: list[dict[str, Any]] = sorted(
        (
            {"page": page, "n": points[c].n, "score": points[c].score, "status": statuses[c]}
            | {"counts": c}
            for page, c in pages
        ),
        key=lambda e: (e["score"], e["n"]),
    )
    drawn = entries if judged.small else _outliers(entries)
    dense = judged.groups.copy()
    dense.subtract(e["counts"] for e in drawn)
    return {
        "ref": judged.ref,
        "chart": charts.funnel_chart(
            judged.ref,
            [(e["n"], e["score"], e) for e in drawn],
            [(points[c].n, points[c].score, pages) for c, pages in dense.items() if pages],
        ),
        "entries": entries if full_table else drawn,
        "dense": dense.total(),
    }


def _outliers(entries: list[dict]) -> list[dict]:
    """The outliers of `entries` drawn as dots and listed, the furthest out and the
    largest first, up to MAX_OUTLIERS, in the table's order."""
    shown = sorted(
        (e for e in entries if e["status"] in _SEVERITY),
        key=lambda e: (_SEVERITY[e["status"]], -e["n"]),
    )[:MAX_OUTLIERS]
    ids = {id(e) for e in shown}
    return [e for e in entries if id(e) in ids]


def _outlier_counts(judged: Judged) -> list[Counts]:
    """The tallies of the pages _outliers can pick: those ordered (severity, -n, score)
    up to and including the key of the MAX_OUTLIERS-th page, so the pages read hold
    every page ahead of the cut and every page tied with it."""
    groups, points, statuses = judged.groups, judged.points, judged.statuses

    def key(counts: Counts) -> tuple[int, int, float]:
        return _SEVERITY[statuses[counts]], -points[counts].n, points[counts].score

    ordered = sorted((c for c in groups if statuses[c] in _SEVERITY), key=key)
    taken = 0
    for index, counts in enumerate(ordered):
        taken += groups[counts]
        if taken >= MAX_OUTLIERS:
            last = key(counts)
            return [c for c in ordered[index:] if key(c) == last] + ordered[:index]
    return ordered


class RolledUp:
    """The tallies of a window from page_rollups (current at the day shown): the groups
    of every question in one statement, the pages of every question in another, each
    one scan of the visible pages."""

    def __init__(self, session: Session, directory: Directory, codes: list[str], window: str):
        self.session, self.window = session, window
        self.wanted = page_list._wanted(directory, codes)

    def _counts(self, question: str) -> list[Column[int]]:
        prefix = rollups.PREFIX[self.window]
        return [rollups.page_rollups.c[f"{prefix}_{question}_{a}"] for a in ANSWERS]

    def groups(self, questions: Sequence[str]) -> dict[str, Counter[Counts]]:
        plotted = (
            select(*(c for q in questions for c in self._counts(q)))
            .select_from(rollups.joined())
            .where(*self.wanted)
            .cte("plotted")
        )
        grouped = []
        for q in questions:
            yes, neutral, no = (plotted.c[c.name] for c in self._counts(q))
            grouped.append(
                select(literal(q).label("question"), yes, neutral, no, func.count())
                .where(yes + neutral + no > 0)
                .group_by(yes, neutral, no)
            )
        found: dict[str, Counter[Counts]] = {q: Counter() for q in questions}
        for question, yes, neutral, no, pages in self.session.execute(union_all(*grouped)):
            found[question][yes, neutral, no] = pages
        return found

    def pages(self, wanted: Mapping[str, Wanted]) -> dict[str, list[tuple[dict, Counts]]]:
        columns = {q: self._counts(q) for q in wanted}
        found = select(Page.id, Page.url, Page.title, *(c for q in wanted for c in columns[q]))
        rows = self.session.execute(
            found.select_from(rollups.joined())
            .where(*self.wanted, or_(*(_reads(columns[q], w) for q, w in wanted.items())))
            .order_by(Page.id)
        )
        keep = {q: None if w is None else set(w) for q, w in wanted.items()}
        pages: dict[str, list[tuple[dict, Counts]]] = {q: [] for q in wanted}
        for row in rows:
            page = {"id": row.id, "url": row.url, "title": row.title}
            for index, q in enumerate(wanted):
                first: int = 3 + 3 * index
                values: tuple[Any, ...] = tuple(row[first : first + 3])
                counts: Counts = (values[0], values[1], values[2])
                kept = keep[q]
                if sum(counts) and (kept is None or counts in kept):
                    pages[q].append((page, counts))
        return pages


def _reads(columns: list[Column[int]], wanted: Wanted) -> ColumnElement[bool]:
    """Whether a row's tally (yes, neutral, no `columns`) is one of `wanted`."""
    yes, neutral, no = columns
    if wanted is None:
        return yes + neutral + no > 0
    # One text key per tally: a long IN list of scalars is hashed by PostgreSQL, one of
    # row values is compared row by row (2 ms vs 50 ms at 10,000 pages).
    key = cast(yes, Text) + "," + cast(neutral, Text) + "," + cast(no, Text)
    return key.in_([",".join(map(str, counts)) for counts in wanted])


class Summed:
    """The tallies of a window from pages' figures (page_list.visible_figures)."""

    def __init__(self, rows: Iterable[dict], window: str):
        self.rows, self.window = list(rows), window

    def _answered(self, question: str) -> Iterable[tuple[dict, Counts]]:
        for row in self.rows:
            f = row["windows"][self.window]["questions"][question]
            if f["n"]:
                yield row, (f["yes"], f["neutral"], f["no"])

    def groups(self, questions: Sequence[str]) -> dict[str, Counter[Counts]]:
        return {q: Counter(counts for _row, counts in self._answered(q)) for q in questions}

    def pages(self, wanted: Mapping[str, Wanted]) -> dict[str, list[tuple[dict, Counts]]]:
        keep = {q: None if w is None else set(w) for q, w in wanted.items()}
        return {
            q: [(r, c) for r, c in self._answered(q) if kept is None or c in kept]
            for q, kept in keep.items()
        }


def figures_for(
    session: Session, directory: Directory, account: Account, as_of: date, window: str
) -> Figures:
    """From the rollups when they end at `as_of`, else summed from the daily rows."""
    if page_list.current(session, as_of):
        codes = [d.code for d in divisions_for(directory, account)]
        return RolledUp(session, directory, codes, window)
    return Summed(page_list.visible_figures(session, directory, account, as_of), window)
