"""The survey that ends every city page: three questions, each answered yes, neutral or no.

Its words live here and nowhere else (DESIGN.md, "The survey": the seed page's and
SHIRASAGI's default), in Japanese and English. The widget asks with `text` and
`options`; the dashboard, the CSV and the emails name a question by its `short`
label. Alembic migrations keep frozen copies of their own on purpose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

# Answer values on the wire, in the order the survey offers them.
ANSWERS = ("yes", "neutral", "no")
LANGUAGES = ("ja", "en")

_T = TypeVar("_T")


@dataclass(frozen=True)
class Question:
    key: str
    text_ja: str
    text_en: str
    # Labels of the answers yes, neutral, no.
    answers_ja: tuple[str, str, str]
    answers_en: tuple[str, str, str]
    # What a column, heading or email calls the question.
    short_ja: str
    short_en: str

    def text(self, lang: str) -> str:
        """The question as the survey asks it."""
        return _in(lang, self.text_ja, self.text_en)

    def options(self, lang: str) -> tuple[tuple[str, str], ...]:
        """(answer value, label) for yes, neutral and no."""
        return tuple(zip(ANSWERS, _in(lang, self.answers_ja, self.answers_en), strict=True))

    def short(self, lang: str) -> str:
        return _in(lang, self.short_ja, self.short_en)


def _in(lang: str, ja: _T, en: _T) -> _T:
    if lang not in LANGUAGES:
        raise ValueError(f"the survey has no {lang!r} wording, only {', '.join(LANGUAGES)}")
    return en if lang == "en" else ja


QUESTIONS = (
    Question(
        key="findability",
        text_ja="このページは見つけやすかったですか?",
        text_en="Was this page easy to find?",
        answers_ja=("見つけやすかった", "ふつう", "見つけにくかった"),
        answers_en=("Easy to find", "Neither", "Hard to find"),
        short_ja="見つけやすさ",
        short_en="Findability",
    ),
    Question(
        key="clarity",
        text_ja="このページの内容はわかりやすかったですか?",
        text_en="Was the content of this page easy to understand?",
        answers_ja=("わかりやすかった", "ふつう", "わかりにくかった"),
        answers_en=("Easy to understand", "Neither", "Hard to understand"),
        short_ja="わかりやすさ",
        short_en="Clarity",
    ),
    Question(
        key="usefulness",
        text_ja="このページの内容は参考になりましたか?",
        text_en="Was the content of this page helpful?",
        answers_ja=("参考になった", "ふつう", "参考にならなかった"),
        answers_en=("Helpful", "Neither", "Not helpful"),
        short_ja="参考になったか",
        short_en="Usefulness",
    ),
)
QUESTION_KEYS = tuple(question.key for question in QUESTIONS)
QUESTIONS_BY_KEY: Mapping[str, Question] = {question.key: question for question in QUESTIONS}
