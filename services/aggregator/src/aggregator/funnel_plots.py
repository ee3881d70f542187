"""The overview's funnel plots: per question, the limits, the pages drawn as dots and
listed, and the density of the rest.

A page's place on a question's plot depends only on its tally of that question (n and
the rounded score come from yes / neutral / no). So the plots start from the tallies
grouped, with how many pages share each: from page_rollups, one GROUP BY per question
in SQL, a few hundred groups whatever the city's size (most pages have small tallies);
the pages themselves are read only for the dots and rows shown (the outliers, or every
page of a small city or of the full table). The limits, statuses and bins are computed
from the groups by the same Python as for single pages, so the numbers and the picture
are the ones summing page by page gave, on either database. Loading every page's
figures to draw the plot took 2 s at 10,000 pages.

Before the consumer moved the rollups to today the figures are summed from the daily
rows (page_list.visible_figures) and grouped here: slower, never different.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session

from aggregator import charts, funnel, page_list, rollups
from aggregator.models import Account, Page
from aggregator.scoring import Tally, question_score
from aggregator.stats import rounded
from aggregator.visibility import divisions_for
from koe_directory import Directory

# Beyond this many answered pages a funnel draws only the outliers as dots, the rest as
# a density, and lists the outliers: a dot and a row per page of a 10,000-page city made
# a 1 MB page nobody could read. The full table is one link away (?table=all).
MAX_DOTS = 300
MAX_OUTLIERS = 150
_SEVERITY = {"low3": 0, "high3": 1, "low2": 2, "high2": 3}

Counts = tuple[int, int, int]  # yes, neutral, no of one question


class Figures(Protocol):
    """Where a plot's tallies come from (the rollups in SQL, or figures summed)."""

    def groups(self, question: str) -> Counter[Counts]:
        """Answered pages per tally of `question`."""
        ...

    def pages(self, question: str, wanted: Iterable[Counts] | None) -> list[tuple[dict, Counts]]:
        """(page with id, url and title; its tally) of the answered pages whose tally is
        one of `wanted` (None: all), in page id order."""
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


def plots(figures: Figures, questions: Iterable[str], *, full_table: bool) -> dict:
    """Per question: None when nobody answered, else ref, chart, entries (the rows
    listed) and dense (how many pages the density holds)."""
    return {q: _plot(figures, q, full_table=full_table) for q in questions}


def _plot(figures: Figures, question: str, *, full_table: bool) -> dict | None:
    groups = figures.groups(question)
    totals = tuple(sum(c[i] * pages for c, pages in groups.items()) for i in range(3))
    ref = funnel.reference([totals]) if groups else None
    if ref is None:
        return None
    points = {counts: Point.of(counts) for counts in groups}
    statuses = {c: funnel.status(ref, p.n, p.score) for c, p in points.items()}
    small = sum(groups.values()) <= MAX_DOTS
    wanted = None if small or full_table else _outlier_counts(groups, points, statuses)
    entries = sorted(
        (
            {"page": page, "n": points[c].n, "score": points[c].score, "status": statuses[c]}
            | {"counts": c}
            for page, c in figures.pages(question, wanted)
        ),
        key=lambda e: (e["score"], e["n"]),
    )
    drawn = entries if small else _outliers(entries)
    dense = groups.copy()
    dense.subtract(e["counts"] for e in drawn)
    return {
        "ref": ref,
        "chart": charts.funnel_chart(
            ref,
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


def _outlier_counts(
    groups: Counter[Counts], points: dict[Counts, Point], statuses: dict[Counts, str]
) -> list[Counts]:
    """The tallies of the pages _outliers can pick: those ordered (severity, -n, score)
    up to and including the key of the MAX_OUTLIERS-th page, so the pages read hold
    every page ahead of the cut and every page tied with it."""

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
    """The tallies of a window from page_rollups (current at the day shown)."""

    def __init__(self, session: Session, directory: Directory, codes: list[str], window: str):
        self.session, self.window = session, window
        self.wanted = page_list._wanted(directory, codes)

    def _columns(self, question: str):
        prefix = rollups.PREFIX[self.window]
        c = rollups.page_rollups.c
        return [c[f"{prefix}_{question}_{a}"] for a in ("yes", "neutral", "no")]

    def groups(self, question: str) -> Counter[Counts]:
        yes, neutral, no = columns = self._columns(question)
        rows = self.session.execute(
            select(*columns, func.count())
            .select_from(rollups.joined())
            .where(*self.wanted, yes + neutral + no > 0)
            .group_by(*columns)
        )
        return Counter({(r[0], r[1], r[2]): r[3] for r in rows})

    def pages(self, question: str, wanted: Iterable[Counts] | None) -> list[tuple[dict, Counts]]:
        yes, neutral, no = columns = self._columns(question)
        found = select(Page.id, Page.url, Page.title, *columns).select_from(rollups.joined())
        if wanted is None:
            found = found.where(*self.wanted, yes + neutral + no > 0)
        else:
            # One text key per tally: a long IN list of scalars is hashed by PostgreSQL,
            # one of row values is compared row by row (2 ms vs 50 ms at 10,000 pages).
            keys = [",".join(map(str, counts)) for counts in wanted]
            key = cast(yes, Text) + "," + cast(neutral, Text) + "," + cast(no, Text)
            found = found.where(*self.wanted, key.in_(keys))
        return [
            ({"id": r.id, "url": r.url, "title": r.title}, (r[3], r[4], r[5]))
            for r in self.session.execute(found.order_by(Page.id))
        ]


class Summed:
    """The tallies of a window from pages' figures (page_list.visible_figures)."""

    def __init__(self, rows: Iterable[dict], window: str):
        self.rows, self.window = list(rows), window

    def _answered(self, question: str) -> Iterable[tuple[dict, Counts]]:
        for row in self.rows:
            f = row["windows"][self.window]["questions"][question]
            if f["n"]:
                yield row, (f["yes"], f["neutral"], f["no"])

    def groups(self, question: str) -> Counter[Counts]:
        return Counter(counts for _row, counts in self._answered(question))

    def pages(self, question: str, wanted: Iterable[Counts] | None) -> list[tuple[dict, Counts]]:
        keep = None if wanted is None else set(wanted)
        return [(r, c) for r, c in self._answered(question) if keep is None or c in keep]


def figures_for(
    session: Session, directory: Directory, account: Account, as_of: date, window: str
) -> Figures:
    """From the rollups when they end at `as_of`, else summed from the daily rows."""
    if page_list.current(session, as_of):
        codes = [d.code for d in divisions_for(directory, account)]
        return RolledUp(session, directory, codes, window)
    return Summed(page_list.visible_figures(session, directory, account, as_of), window)
