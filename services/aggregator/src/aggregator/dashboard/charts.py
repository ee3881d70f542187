"""Geometry of the dashboard's server-rendered SVG charts. Pure, no I/O.

The templates draw what these functions lay out, so every text in a chart goes
through Jinja's escaping and no JavaScript charting library ships to the
browser. Scores are plotted on a fixed 0–100 axis so charts compare at a glance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from aggregator.stats.funnel import Z95, Z998, Reference
from aggregator.stats.trends import Point


def _y(score: float, top: float, bottom: float) -> float:
    return round(bottom - (bottom - top) * score / 100, 1)


# -- sparkline ------------------------------------------------------------------------------

SPARK_MIN_SPAN = 20.0


@dataclass(frozen=True)
class Sparkline:
    width: int
    height: int
    lines: list[str]  # SVG "points" attributes; a week without answers breaks the line
    dots: list[tuple[float, float]]


def sparkline(values: Sequence[float | None], width: int = 96, height: int = 28) -> Sparkline:
    """The scale spans the values' own range (at least SPARK_MIN_SPAN points), so a trend
    shows even in a small picture; the list's numbers carry the absolute level."""
    pad = 3
    step = (width - 2 * pad) / max(1, len(values) - 1)
    known = [v for v in values if v is not None]
    low, high = (min(known), max(known)) if known else (0.0, 100.0)
    if high - low < SPARK_MIN_SPAN:
        middle = min(max((low + high) / 2, SPARK_MIN_SPAN / 2), 100 - SPARK_MIN_SPAN / 2)
        low, high = middle - SPARK_MIN_SPAN / 2, middle + SPARK_MIN_SPAN / 2
    lines: list[str] = []
    current: list[str] = []
    dots = []
    for index, value in enumerate(values):
        if value is None:
            if current:
                lines.append(" ".join(current))
            current = []
            continue
        x = round(pad + index * step, 1)
        y = _y((value - low) / (high - low) * 100, pad, height - pad)
        current.append(f"{x},{y}")
        dots.append((x, y))
    if current:
        lines.append(" ".join(current))
    return Sparkline(width, height, [line for line in lines if " " in line], dots)


# -- a question's series: score, interval, n -------------------------------------------------


@dataclass(frozen=True)
class PlacedPoint:
    point: Point
    x: float
    y: float | None
    y_low: float | None
    y_high: float | None
    label: bool  # whether the date is written under this point


@dataclass(frozen=True)
class SeriesChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int  # the plot's lower edge; n and dates are written below it
    grid: list[tuple[int, float]]  # (score, y)
    points: list[PlacedPoint] = field(default_factory=list)


def series_chart(points: Sequence[Point], width: int = 640, height: int = 230) -> SeriesChart:
    left, right, top, bottom = 40, width - 8, 10, height - 50
    step = (right - left) / max(1, len(points))
    every = max(1, math.ceil(len(points) / 7))  # about seven dates fit under the axis
    placed = []
    for index, point in enumerate(points):
        placed.append(
            PlacedPoint(
                point=point,
                x=round(left + (index + 0.5) * step, 1),
                y=None if point.score is None else _y(point.score, top, bottom),
                y_low=None if point.low is None else _y(point.low, top, bottom),
                y_high=None if point.high is None else _y(point.high, top, bottom),
                label=(len(points) - 1 - index) % every == 0,
            )
        )
    grid = [(score, _y(score, top, bottom)) for score in (0, 25, 50, 75, 100)]
    return SeriesChart(width, height, left, right, top, bottom, grid, placed)


def marks(chart: SeriesChart, days: Sequence[date], span_days: int) -> list[tuple[date, float]]:
    """Where each of `days` (a page's edits) falls on the chart: the x of the point whose
    `span_days` from its start hold it (1 daily, 7 weekly); days off the chart are left out."""
    found = []
    for day in days:
        for placed in chart.points:
            start = placed.point.start
            if start <= day < start + timedelta(days=span_days):
                found.append((day, placed.x))
                break
    return found


# -- funnel plot -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelDot:
    x: float
    y: float
    item: object  # what the template labels the dot with


@dataclass(frozen=True)
class FunnelChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    grid: list[tuple[int, float]]
    ticks: list[tuple[int, float]]  # (n, x) on the log axis
    mean_y: float
    limits95: list[str]  # two polylines (upper, lower)
    limits998: list[str]
    dots: list[FunnelDot]
    # Pages not drawn as dots, counted per cell of a grid: (x, y, width, height, count,
    # shade 0–1). Empty unless the caller hands in `dense` points.
    cells: list[tuple[float, float, float, float, int, float]] = field(default_factory=list)


def funnel_chart(
    ref: Reference,
    dots: Sequence[tuple[int, float, object]],
    dense: Sequence[tuple[int, float, int]] = (),
    width: int = 640,
    height: int = 320,
) -> FunnelChart:
    """dots: (n, score 0–100, item), drawn one by one; dense: (n, score, pages) drawn as
    a density (a big city's thousands of unremarkable pages, as many at each point as
    `pages` says). x is log10(n), so small and large pages both show."""
    left, right, top, bottom = 40, width - 12, 10, height - 36
    max_n = max([n for n, _, _ in dots] + [n for n, _, _ in dense] + [10])
    span = math.log10(max_n * 1.2)

    def x_of(n: float) -> float:
        return round(left + (right - left) * math.log10(n) / span, 1)

    samples = sorted({1, *(round(10 ** (span * k / 60)) for k in range(61))})
    samples = [n for n in samples if 1 <= n <= max_n * 1.2]

    def curves(z: float) -> list[str]:
        upper, lower = [], []
        for n in samples:
            low, high = ref.limits(n, z)
            upper.append(f"{x_of(n)},{_y(high, top, bottom)}")
            lower.append(f"{x_of(n)},{_y(low, top, bottom)}")
        return [" ".join(upper), " ".join(lower)]

    ticks = [(10**k, x_of(10**k)) for k in range(0, int(span) + 1) if 10**k <= max_n * 1.2]
    cells = _density(
        [(x_of(n), _y(score, top, bottom), pages) for n, score, pages in dense if n],
        (left, right, top, bottom),
    )
    return FunnelChart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        grid=[(score, _y(score, top, bottom)) for score in (0, 25, 50, 75, 100)],
        ticks=ticks,
        mean_y=_y(ref.mean * 100, top, bottom),
        limits95=curves(Z95),
        limits998=curves(Z998),
        dots=[FunnelDot(x_of(n), _y(score, top, bottom), item) for n, score, item in dots if n],
        cells=cells,
    )


DENSITY_COLUMNS, DENSITY_ROWS = 32, 20


def _density(
    points: list[tuple[float, float, int]], box: tuple[float, float, float, float]
) -> list[tuple[float, float, float, float, int, float]]:
    """The points (x, y, how many pages) counted per cell of a DENSITY_COLUMNS x
    DENSITY_ROWS grid over the plot: a few hundred rectangles however many pages, shaded
    by the log of their count."""
    left, right, top, bottom = box
    width, height = (right - left) / DENSITY_COLUMNS, (bottom - top) / DENSITY_ROWS
    counts: dict[tuple[int, int], int] = {}
    for x, y, many in points:
        column = min(DENSITY_COLUMNS - 1, max(0, int((x - left) / width)))
        row = min(DENSITY_ROWS - 1, max(0, int((y - top) / height)))
        counts[column, row] = counts.get((column, row), 0) + many
    most = max(counts.values(), default=1)
    return [
        (
            round(left + column * width, 1),
            round(top + row * height, 1),
            round(width, 1),
            round(height, 1),
            count,
            round(0.15 + 0.85 * math.log1p(count) / math.log1p(most), 2),
        )
        for (column, row), count in sorted(counts.items())
    ]
