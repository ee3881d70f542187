"""The pages list's figure cells and sparkline marks, made once in Python.

A screen shows 100 pages x 3 windows x 3 questions and 100 sparklines: drawn in the
template, through a macro, a translation lookup and an escape per figure, that was half
of the list's time (issue 13). Here each label is translated once per request and each
cell's question items and each sparkline's marks are one piece of markup: every value
placed in it goes through markupsafe's escape (Markup.format, which does the same, cost
more than the template it replaced).
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

from aggregator.dashboard.access import _
from aggregator.dashboard.charts import Sparkline
from aggregator.dashboard.i18n import format_number, format_score
from koe_directory import QUESTION_KEYS


@dataclass(frozen=True)
class Cell:
    window: str
    label: str  # the window's name, for narrow screens' data-label
    chosen: bool  # the window the list is sorted by
    score_data: str  # data-score: the score, or "" when nobody answered
    n: int
    score: str
    n_text: str
    questions: Markup  # the <li> of each question: its name, score and n


def list_cells(rows: list[dict], windows: list[str], chosen: str) -> dict[str, list[Cell]]:
    """page id → its cells, one per window, from stats.page_json rows."""
    window_labels = {name: _("window." + name) for name in windows}
    question_labels = {q: escape(_("question." + q)) for q in QUESTION_KEYS}
    n_short = escape(_("n.short"))
    return {
        row["id"]: [
            _cell(
                row["windows"][name],
                name,
                window_labels[name],
                name == chosen,
                question_labels,
                n_short,
            )
            for name in windows
        ]
        for row in rows
    }


def spark_marks(line: Sparkline) -> tuple[Markup, Markup]:
    """A sparkline's polylines and its dots, each as one piece of markup."""
    lines = "".join(f'<polyline points="{escape(points)}" class="line"/>' for points in line.lines)
    dots = "".join(
        f'<circle cx="{escape(x)}" cy="{escape(y)}" r="1.6" class="dot"/>' for x, y in line.dots
    )
    # Safe markup: our own tags, every value in them escaped above.
    return Markup(lines), Markup(dots)  # noqa: S704


def _cell(
    figures: dict,
    name: str,
    label: str,
    chosen: bool,
    question_labels: dict[str, Markup],
    n_short: Markup,
) -> Cell:
    return Cell(
        window=name,
        label=label,
        chosen=chosen,
        score_data="" if figures["score"] is None else str(figures["score"]),
        n=figures["n"],
        score=format_score(figures["score"]),
        n_text=format_number(figures["n"]),
        questions=_question_items(figures["questions"], question_labels, n_short),
    )


def _question_items(questions: dict, question_labels: dict[str, Markup], n_short: Markup) -> Markup:
    items = []
    for q in QUESTION_KEYS:
        score = escape(format_score(questions[q]["score"]))
        n = escape(format_number(questions[q]["n"]))
        items.append(
            f'<li><span class="q">{question_labels[q]}</span> {score}'
            f' <span class="n">({n_short}={n})</span></li>'
        )
    # Safe markup: our own tags, the labels escaped once in list_cells, the figures here.
    return Markup("\n".join(items))  # noqa: S704
