"""The survey's words in every language koe asks in: one gettext catalogue.

A city page is for all its residents, so the widget speaks Japanese (the source
language: each message's id is its Japanese wording), やさしい日本語 and the
languages Tsu's foreign residents read. The translations live in
`locale/<locale>/LC_MESSAGES/survey.po` (gettext, read with Babel, the ecosystem's
tool; `survey.pot` is the template a translator starts from) and nowhere else.
Locales are the codes on the wire (koe.feedback.submitted.v1 `data.locale`) and in
the HTML `lang` attribute: やさしい日本語 is `ja-x-easy`, Japanese to a screen
reader and to the browser's fonts, and its own locale in the statistics.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from babel.messages.pofile import read_po

SOURCE_LOCALE = "ja"
LOCALES = ("ja", "ja-x-easy", "en", "pt", "es", "zh-Hans", "ko", "vi", "fil")
# Each language by its own name, as a resident looks for it in a list.
NAMES = {
    "ja": "日本語",
    "ja-x-easy": "やさしい にほんご",
    "en": "English",
    "pt": "Português",
    "es": "Español",
    "zh-Hans": "简体中文",
    "ko": "한국어",
    "vi": "Tiếng Việt",
    "fil": "Filipino",
}
# Written right to left; none of today's locales is, but a catalogue added for
# one of these gets dir="rtl" without anything else changing.
RTL_LANGUAGES = frozenset({"ar", "fa", "he", "ur"})
DOMAIN = "survey"

# The widget's own words besides the questions, by the name the snippet and
# widget.js use for them; the value is the message id (its Japanese wording).
WIDGET_TEXTS = {
    "heading": "このページに対するアンケートにお答えください",
    "submit": "送信",
    "sending": "送信中…",
    "thanks": "ご回答ありがとうございました。今後のページ作成の参考にさせていただきます。",
    "error": "送信できませんでした。時間をおいて、もう一度お試しください。",
    "empty": "少なくとも1つの質問にお答えください。",
    "down": "ただいま送信できません。時間をおいて、もう一度お試しください。",
    "busy": "短い間に何度も送信されました。しばらくしてから、もう一度お試しください。",
    "bad": "送信できませんでした。ページを再読み込みして、もう一度お試しください。",
    "honeypot": "この欄は空のままにしてください",
}


def direction(locale: str) -> str:
    """The value of the HTML `dir` attribute for text in `locale`."""
    return "rtl" if locale.split("-")[0] in RTL_LANGUAGES else "ltr"


def translate(locale: str, message: str) -> str:
    """`message` (its Japanese wording) in `locale`."""
    if locale == SOURCE_LOCALE:
        return message
    try:
        return _catalogue(locale)[message]
    except KeyError:
        raise LookupError(f"the {locale!r} catalogue has no translation of {message!r}") from None


@cache
def _catalogue(locale: str) -> dict[str, str]:
    if locale not in LOCALES:
        raise LookupError(f"koe has no {locale!r} catalogue, only {', '.join(LOCALES)}")
    path = resources.files(__package__) / "locale" / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po:
        catalogue = read_po(po, domain=DOMAIN)
    # An empty or fuzzy entry is not a reviewed translation: refuse it like a missing one.
    return {
        str(entry.id): str(entry.string)
        for entry in catalogue
        if entry.id and entry.string and not entry.fuzzy
    }
