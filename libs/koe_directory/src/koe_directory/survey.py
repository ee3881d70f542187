"""The survey that ends every city page: three questions, each answered yes, neutral or no.

Its Japanese words live here (DESIGN.md, "The survey": the seed page's and
SHIRASAGI's default, with the full-width ？ Japanese text ends a question with);
their translations into every language the widget speaks are in the catalogue
(catalogue.py). The widget asks with `text` and `options`; the dashboard, the CSV
and the emails, in Japanese or English, name a question by its `short` label.
Alembic migrations keep frozen copies of their own on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from koe_directory.catalogue import translate

# Answer values on the wire, in the order the survey offers them.
ANSWERS = ("yes", "neutral", "no")
# The languages of the short labels (the dashboard's and the emails').
LANGUAGES = ("ja", "en")

_T = TypeVar("_T")


@dataclass(frozen=True)
class Question:
    key: str
    text_ja: str
    # Labels of the answers yes, neutral, no.
    answers_ja: tuple[str, str, str]
    # What a column, heading or email calls the question.
    short_ja: str
    short_en: str

    def text(self, locale: str) -> str:
        """The question as the survey asks it in `locale` (catalogue.LOCALES)."""
        return translate(locale, self.text_ja)

    def options(self, locale: str) -> tuple[tuple[str, str], ...]:
        """(answer value, label) for yes, neutral and no, in `locale`."""
        labels = (translate(locale, label) for label in self.answers_ja)
        return tuple(zip(ANSWERS, labels, strict=True))

    def short(self, lang: str) -> str:
        return _in(lang, self.short_ja, self.short_en)


def _in(lang: str, ja: _T, en: _T) -> _T:
    if lang not in LANGUAGES:
        raise ValueError(f"the survey has no {lang!r} wording, only {', '.join(LANGUAGES)}")
    return en if lang == "en" else ja


QUESTIONS = (
    Question(
        key="findability",
        text_ja="このページは見つけやすかったですか？",
        answers_ja=("見つけやすかった", "ふつう", "見つけにくかった"),
        short_ja="見つけやすさ",
        short_en="Findability",
    ),
    Question(
        key="clarity",
        text_ja="このページの内容はわかりやすかったですか？",
        answers_ja=("わかりやすかった", "ふつう", "わかりにくかった"),
        short_ja="わかりやすさ",
        short_en="Clarity",
    ),
    Question(
        key="usefulness",
        text_ja="このページの内容は参考になりましたか？",
        answers_ja=("参考になった", "ふつう", "参考にならなかった"),
        short_ja="参考になったか",
        short_en="Usefulness",
    ),
)
QUESTION_KEYS = tuple(question.key for question in QUESTIONS)
QUESTIONS_BY_KEY: Mapping[str, Question] = {question.key: question for question in QUESTIONS}
