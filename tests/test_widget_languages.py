"""Every resident's language (issue 15) in a real browser: the widget in each locale
of the catalogue, with JavaScript and without, answers and is stored under its locale
(the feedback database and the event on the topic); axe-core finds no violation in
any language. A snippet made to follow the page (/embed lang=page) speaks the page's
<html lang> and records it. Screenshots per language go to $KOE_SCREENSHOT_DIR
(docs/screenshots/widget-<locale>.png are the committed ones).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from in_browser import PHONE, axe_violations
from koe_directory import QUESTIONS_BY_KEY
from koe_directory.catalogue import LOCALES, WIDGET_TEXTS, translate
from test_widget_browser import (
    HOST,
    arrived,
    embed_snippet,
    host_page,
    host_site,  # noqa: F401 (a fixture)
    koe,  # noqa: F401 (a fixture)
    open_page,
    page_id_of,
)

pytestmark = pytest.mark.e2e

WITH_SCRIPT = {"findability": "yes", "clarity": "no", "usefulness": "yes"}
WITHOUT_SCRIPT = {"findability": "neutral", "usefulness": "no"}


@pytest.fixture
def screenshots(tmp_path) -> Path:
    return Path(os.environ.get("KOE_SCREENSHOT_DIR") or tmp_path)


def demo_url(koe, locale: str) -> str:  # noqa: F811
    return koe.url("feedback", "/demo/tsu-dx" + ("" if locale == "ja" else f"/{locale}"))


def choose(page, locale: str, answers: dict[str, str]) -> None:
    """Check each answer by its label in `locale`, as a resident reading it would."""
    for key, value in answers.items():
        label = dict(QUESTIONS_BY_KEY[key].options(locale))[value]
        group = page.get_by_role("group", name=QUESTIONS_BY_KEY[key].text(locale))
        group.get_by_label(label, exact=True).check()


@pytest.mark.parametrize("locale", LOCALES)
def test_the_widget_speaks_each_language_with_and_without_javascript(
    koe,  # noqa: F811
    chromium,
    screenshots,
    locale,
):
    url = demo_url(koe, locale)
    send = translate(locale, WIDGET_TEXTS["submit"])
    context, page = open_page(chromium, url, f"lang-{locale}", PHONE, bypass_csp=True)
    try:
        page.wait_for_selector("#koe-feedback[data-koe-ready]", state="attached")
        widget = page.locator("#koe-feedback")
        assert widget.get_attribute("lang") == locale
        widget.scroll_into_view_if_needed()
        assert axe_violations(page, include="#koe-feedback") == []
        widget.screenshot(path=screenshots / f"widget-{locale}.png")

        choose(page, locale, WITH_SCRIPT)
        page.get_by_role("button", name=send).click()
        page.locator("#koe-thanks").wait_for(state="visible")
        assert page.locator("#koe-thanks").inner_text() == translate(locale, WIDGET_TEXTS["thanks"])
        assert axe_violations(page, include="#koe-feedback") == []
        assert page.errors == []
    finally:
        context.close()
    arrived(koe, page_id_of(url), WITH_SCRIPT, locale=locale)

    context, page = open_page(chromium, url, f"plain-{locale}", java_script_enabled=False)
    try:
        choose(page, locale, WITHOUT_SCRIPT)
        page.get_by_role("button", name=send).click()
        page.wait_for_url("**koe=thanks#koe-thanks")
        assert page.locator("#koe-thanks").is_visible()
    finally:
        context.close()
    arrived(koe, page_id_of(url), WITHOUT_SCRIPT, locale=locale)


def test_a_snippet_that_follows_the_page_speaks_and_records_the_pages_language(
    koe,  # noqa: F811
    chromium,
    host_site,  # noqa: F811
):
    url = f"{HOST}/pt.html"
    body = host_page(embed_snippet(koe, url, lang="page")).replace(
        '<html lang="ja">', '<html lang="pt-BR">'
    )
    assert 'lang="pt-BR"' in body
    host_site["/pt.html"] = (body, {})
    context, page = open_page(chromium, url, "follows-page")
    try:
        page.locator("#koe-feedback[lang=pt]").wait_for(state="attached")
        assert page.locator("#koe-title").inner_text() == translate("pt", WIDGET_TEXTS["heading"])
        choose(page, "pt", WITH_SCRIPT)
        page.get_by_role("button", name="Enviar").click()
        page.locator("#koe-thanks").wait_for(state="visible")
        assert axe_violations(page, include="#koe-feedback") == []
        assert page.errors == []
    finally:
        context.close()
    arrived(koe, page_id_of(url), WITH_SCRIPT, locale="pt")


def test_rough_edges_without_widget_css_on_a_slow_network(
    koe,  # noqa: F811
    chromium,
    host_site,  # noqa: F811
):
    """Issue 15: a host CSP that blocks widget.css hid the thank-you; a slow answer said
    nothing; 'please answer' stayed after an answer was chosen."""
    url = f"{HOST}/nocss.html"
    snippet = embed_snippet(koe, url)
    assert "widget.css" in snippet
    without_css = "\n".join(line for line in snippet.splitlines() if "widget.css" not in line)
    host_site["/nocss.html"] = (host_page(without_css), {})
    context, page = open_page(chromium, url, "no-css-slow")
    try:
        page.wait_for_selector("#koe-feedback[data-koe-ready]", state="attached")
        page.get_by_role("button", name="送信").click()
        message = page.locator(".koe-msg")
        message.wait_for(state="attached")
        page.wait_for_function("document.querySelector('.koe-msg').textContent !== ''")
        assert message.inner_text() == translate("ja", WIDGET_TEXTS["empty"])
        choose(page, "ja", {"clarity": "yes"})
        page.wait_for_function("document.querySelector('.koe-msg').textContent === ''")

        # Hold the answer on the wire: the button and a polite status say 送信中….
        held = []
        page.route("**/api/v1/feedback", lambda route: held.append(route))
        page.get_by_role("button", name="送信").click()
        page.wait_for_function("() => document.querySelector('.koe-st').textContent !== ''")
        assert page.get_by_role("status").inner_text() == "送信中…"
        assert page.locator(".koe-b").get_attribute("aria-disabled") == "true"
        for _ in range(100):  # the proof of work first, then the post
            if held:
                break
            page.wait_for_timeout(100)
        assert len(held) == 1
        assert page.get_by_role("status").inner_text() == "送信中…"
        held[0].continue_()
        page.locator("#koe-thanks").wait_for(state="visible")  # no stylesheet needed
        assert page.locator(".koe-st").inner_text() == ""
    finally:
        context.close()
    arrived(koe, page_id_of(url), {"clarity": "yes"})
