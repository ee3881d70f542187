"""The pages list's figure cells, formatted once in Python.

A screen shows 100 pages x 3 windows x 3 questions: formatted in the template, through
a macro and a translation lookup per figure, that was half of the list's time
(issue 13). Here each label is translated once per request and each figure formatted
once; the template only places the strings (still escaped by Jinja).
"""

from __future__ import annotations

from dataclasses import dataclass

from aggregator.access import _
from aggregator.i18n import format_number, format_score
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
    questions: list[tuple[str, str, str]]  # (question's name, score, n) per question


def list_cells(rows: list[dict], windows: list[str], chosen: str) -> dict[str, list[Cell]]:
    """page id → its cells, one per window, from stats.page_json rows."""
    window_labels = {name: _("window." + name) for name in windows}
    question_labels = {q: _("question." + q) for q in QUESTION_KEYS}
    return {
        row["id"]: [
            _cell(row["windows"][name], name, window_labels[name], name == chosen, question_labels)
            for name in windows
        ]
        for row in rows
    }


def _cell(
    figures: dict, name: str, label: str, chosen: bool, question_labels: dict[str, str]
) -> Cell:
    return Cell(
        window=name,
        label=label,
        chosen=chosen,
        score_data="" if figures["score"] is None else str(figures["score"]),
        n=figures["n"],
        score=format_score(figures["score"]),
        n_text=format_number(figures["n"]),
        questions=[
            (
                question_labels[q],
                format_score(figures["questions"][q]["score"]),
                format_number(figures["questions"][q]["n"]),
            )
            for q in QUESTION_KEYS
        ],
    )
