"""The survey's catalogue: every language says every message, and nothing is guessed."""

from __future__ import annotations

import pytest

from koe_directory import QUESTIONS
from koe_directory.catalogue import LOCALES, WIDGET_TEXTS, direction, translate


@pytest.mark.parametrize("locale", LOCALES)
def test_every_locale_translates_every_message(locale):
    messages = [*WIDGET_TEXTS.values()]
    messages += [text for q in QUESTIONS for text in (q.text_ja, *q.answers_ja)]
    for message in messages:
        assert translate(locale, message).strip(), (locale, message)


def test_a_missing_translation_is_an_error_not_japanese():
    with pytest.raises(LookupError, match="no translation"):
        translate("pt", "このページは存在しません")
    with pytest.raises(LookupError, match="no 'fr' catalogue"):
        translate("fr", "送信")


def test_right_to_left_languages_get_rtl():
    assert [direction(locale) for locale in LOCALES] == ["ltr"] * len(LOCALES)
    assert direction("ar") == direction("fa-IR") == "rtl"
