"""The citizen's widget in a real browser (Debian's Chromium): with and without
JavaScript, by keyboard only, with koe down, and on a hostile site of its own
origin with koe behind a path prefix. Each checks that the response is in the
feedback database and on the topic. axe-core finds no WCAG 2.1 A/AA violation
in the widget.

One koe stack (SQLite, as `make run` has it) serves the whole module, with the
demo page (/demo/tsu-dx) as the city's page. Screenshots go to
$KOE_SCREENSHOT_DIR when set (docs/screenshots/ holds the committed ones).
"""

from __future__ import annotations

import html
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from feedback.app import create_app
from feedback.config import load_settings
from in_browser import DESKTOP, PHONE, axe_violations
from koe_devkit.local_broker import free_port, wait_for_port
from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from widget_support import module_koe, stored_responses, wait_published

pytestmark = pytest.mark.e2e

HOST_PORT = free_port()
HOST = f"http://127.0.0.1:{HOST_PORT}"
# The same host by another name: as https:// is to http://, or www. to none.
HOST_ALIAS = f"http://localhost:{HOST_PORT}"
# A host page whose global CSS would wreck any widget that trusted it.
HOSTILE_CSS = (
    "html {font-size: 10px} * {display: inline !important; font-size: 2px; color: white}"
    " fieldset {display: none !important} legend {visibility: hidden !important}"
    " form {display: flex !important; flex-direction: row-reverse !important}"
    " #main input[type=radio] {opacity: 0 !important; position: absolute !important;"
    " appearance: none !important} #main {width: 280px !important; display: block !important}"
    " button {background: white !important; color: white !important; border: 0 !important}"
    " body {background: #fff}"
)
TEXTS = {
    "ja": {"answers": ("見つけやすかった", "わかりにくかった", "参考になった"), "send": "送信"},
    "en": {"answers": ("Easy to find", "Hard to understand", "Helpful"), "send": "Send"},
}
WANTED = {"findability": "yes", "clarity": "no", "usefulness": "yes"}


@pytest.fixture(scope="module")
def koe(tmp_path_factory, pg_admin):
    var_dir = tmp_path_factory.mktemp("widget") / "var"
    with module_koe(var_dir, pg_admin, sqlite=True, also_allowed=(HOST,)) as running:
        yield running


@pytest.fixture
def screenshots(tmp_path) -> Path:
    return Path(os.environ.get("KOE_SCREENSHOT_DIR") or tmp_path)


def demo_url(koe, lang: str) -> str:
    return koe.url("feedback", "/demo/tsu-dx" + ("/en" if lang == "en" else ""))


def page_id_of(url: str) -> str:
    return page_id_for_url(canonical_url(url))


def open_page(browser, url: str, agent: str, device: dict | None = None, **options):
    """A fresh context (no shared state) as one citizen; its page errors, CSP reports
    and requests."""
    context = browser.new_context(
        **(device or DESKTOP), user_agent=f"Mozilla/5.0 {agent}", **options
    )
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.requests = []  # type: ignore[attr-defined]
    page.on("request", lambda request: page.requests.append(request))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on(
        "console",
        lambda message: (
            "Content Security Policy" in message.text and page.errors.append(message.text)
        ),
    )
    page.goto(url)
    return context, page


# Records the alert region's text after each change to it, as a screen reader hears them.
WATCH_ALERTS = """() => {
    window.koeSaid = [];
    new MutationObserver(changes => changes.forEach(change => window.koeSaid.push(
        Array.from(change.addedNodes, node => node.textContent).join("")
    ))).observe(document.querySelector(".koe-msg"), {childList: true});
}"""


def answer(page, lang: str) -> None:
    for label in TEXTS[lang]["answers"]:
        page.get_by_label(label, exact=True).check()


def arrived(koe, page_id: str, answers: dict[str, str], locale: str = "ja") -> str:
    """The response with these answers is in the feedback database and on the topic."""

    def row():
        for response in stored_responses(koe, page_id):
            given = {
                q: getattr(response, q)
                for q in ("findability", "clarity", "usefulness")
                if getattr(response, q)
            }
            if given == answers and response.locale == locale:
                return response
        return None

    response = wait_until(row, timeout_s=10, what=f"{answers} in the feedback database")
    event = wait_published(koe, response.id)
    assert event["data"]["answers"] == answers
    # Snippets here name somu-dx, but a page's owner comes from its URL alone: these pages
    # live under no division's prefix, so the event names none (the fallback owns them).
    assert not event["data"]["page_url"].startswith("https://www.info.city.tsu.mie.jp/")
    assert event["data"]["division"] is None
    return response.id


def thanked(page) -> None:
    thanks = page.locator("#koe-thanks")
    thanks.wait_for(state="visible")
    assert page.evaluate("document.activeElement.id") == "koe-thanks"
    assert page.locator("form.koe-form").is_hidden()


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_answering_with_javascript_on_a_phone_and_a_desktop(koe, chromium, screenshots, lang):
    url = demo_url(koe, lang)
    for device_name, device in (("phone", PHONE), ("desktop", DESKTOP)):
        # axe-core is injected as an inline script, which the demo's CSP (rightly)
        # refuses; the other tests run under the CSP and see no violation.
        context, page = open_page(chromium, url, f"{lang}-{device_name}", device, bypass_csp=True)
        try:
            page.wait_for_selector("#koe-feedback[data-koe-ready]", state="attached")
            widget = page.locator("#koe-feedback")
            widget.scroll_into_view_if_needed()
            assert axe_violations(page, include="#koe-feedback") == []
            widget.screenshot(path=screenshots / f"widget-{lang}-{device_name}-before.png")

            answer(page, lang)
            page.get_by_role("button", name=TEXTS[lang]["send"]).click()
            thanked(page)
            assert axe_violations(page, include="#koe-feedback") == []
            widget.screenshot(path=screenshots / f"widget-{lang}-{device_name}-after.png")
            assert page.errors == []
        finally:
            context.close()
        arrived(koe, page_id_of(url), WANTED, locale=lang)


def test_without_javascript_the_same_form_posts_and_comes_back_thanked(koe, chromium, host_site):
    url = demo_url(koe, "ja")
    plain, page = open_page(chromium, url, "no-js", java_script_enabled=False)
    scripted, upgraded = open_page(chromium, url, "layout")
    try:
        # The upgrade moves nothing: the widget's box is the same with and without it,
        # and the browser saw no layout shift.
        upgraded.wait_for_selector("#koe-feedback[data-koe-ready]", state="attached")
        box = "JSON.stringify(document.querySelector('#koe-feedback').getBoundingClientRect())"
        assert page.evaluate(box) == upgraded.evaluate(box)
        shifts = upgraded.evaluate(
            """() => new Promise(done => {
                let total = 0;
                new PerformanceObserver(list => {
                    for (const entry of list.getEntries()) total += entry.value;
                }).observe({type: "layout-shift", buffered: true});
                setTimeout(() => done(total), 300);
            })"""
        )
        assert shifts == 0

        answer(page, "ja")
        page.get_by_role("button", name="送信").click()
        page.wait_for_url("**koe=thanks#koe-thanks")
        assert page.locator("#koe-thanks").is_visible()  # by CSS :target alone
        assert page.locator("form.koe-form").is_hidden()

        # A page with a second snippet, named in /embed: it comes back to its own thank-you.
        two_url = f"{HOST}/two.html"
        host_site["/two.html"] = (
            host_page(embed_snippet(koe, two_url) + embed_snippet(koe, two_url, widget="side")),
            {},
        )
        page.goto(two_url)
        first, second = page.locator(".koe-w").first, page.locator(".koe-w").nth(1)
        second.get_by_label("ふつう").first.check()
        second.get_by_role("button", name="送信").click()
        page.wait_for_url("**koe=thanks#koe-thanks-side")
        assert second.locator(".koe-done").is_visible()
        assert second.locator("form").is_hidden()
        assert first.locator(".koe-done").is_hidden()
        assert first.locator("form").is_visible()
    finally:
        plain.close()
        scripted.close()
    plain_answer = arrived(koe, page_id_of(url), WANTED)
    # Without JavaScript the form carries the page's <title>, as widget.js sends it: a page
    # answered only this way is not "(タイトルなし)" (the title is still only a vote).
    assert wait_published(koe, plain_answer)["data"]["page_title"] == "津市の自治体DX取組状況|津市"
    arrived(koe, page_id_of(two_url), {"findability": "neutral"})


def test_the_demo_page_s_wide_table_scrolls_by_keyboard_on_a_phone(koe, chromium):
    context, page = open_page(chromium, demo_url(koe, "ja"), "table", PHONE, bypass_csp=True)
    try:
        region = page.locator(".demo-table")
        assert region.evaluate("e => e.scrollWidth > e.clientWidth")  # wider than a phone
        assert axe_violations(page, include=".demo-table") == []  # scrollable-region-focusable
        while page.evaluate("document.activeElement.className") != "demo-table":
            page.keyboard.press("Tab")  # reached by Tab, before the survey's first stop
            assert page.evaluate("!document.activeElement.closest('.koe-w')")
        page.keyboard.press("ArrowRight")
        page.wait_for_function("document.querySelector('.demo-table').scrollLeft > 0")
    finally:
        context.close()


def test_keyboard_only_with_the_error_and_the_thanks_announced(koe, chromium):
    url = demo_url(koe, "ja")
    assert (
        koe.http.get(url, timeout=10)
        .headers["Content-Security-Policy"]
        .startswith("default-src 'self'")
    )
    # This citizen's earlier plain post was refused (the script had not loaded yet): the
    # page opens at the no-JavaScript error, and the thank-you must then replace it.
    context, page = open_page(chromium, f"{url}?koe=error#koe-error", "keyboard")
    try:
        page.wait_for_selector("#koe-feedback[data-koe-ready]", state="attached")
        assert page.locator("#koe-error").is_visible()
        focused = "document.activeElement.name || document.activeElement.textContent"
        for _ in range(30):
            page.keyboard.press("Tab")
            if page.evaluate(focused) == "findability":
                break
        assert page.evaluate(focused) == "findability"
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"  # focus is visible

        # Sending nothing says so in the alert region and goes back to the questions; a
        # second try says it again as a change of the region, which a screen reader announces.
        page.evaluate(WATCH_ALERTS)
        empty = "少なくとも1つの質問にお答えください。"
        for tries in (1, 2):
            for _ in range(3):
                page.keyboard.press("Tab")
            assert page.evaluate(focused) == "送信"
            page.keyboard.press("Enter")
            wait_until(
                lambda tries=tries: page.evaluate("window.koeSaid").count(empty) == tries,
                timeout_s=5,
                what=f"the alert said {tries} times",
            )
            assert page.get_by_role("alert").inner_text() == empty
            assert page.evaluate(focused) == "findability"

        page.keyboard.press("Space")  # findability: yes
        page.keyboard.press("Tab")
        page.keyboard.press("ArrowDown")  # clarity: neutral
        page.keyboard.press("Tab")
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")  # usefulness: no
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        thanked(page)
        # Emptied before each message, and no refusal for a fast keyboard user.
        assert page.evaluate("window.koeSaid") == [empty, "", empty, ""]
        assert page.locator("#koe-error").is_hidden()
        assert page.errors == []  # no script error and no CSP violation under the demo's CSP
    finally:
        context.close()
    arrived(koe, page_id_of(url), {"findability": "yes", "clarity": "neutral", "usefulness": "no"})


def test_with_koe_down_the_page_says_so_politely_and_a_retry_arrives_once(koe, chromium):
    url = demo_url(koe, "en")
    context, page = open_page(chromium, url, "outage")
    try:
        page.wait_for_selector("#koe-feedback[data-koe-ready]", state="attached")
        page.get_by_label("Hard to find", exact=True).check()
        koe.stack.kill("feedback-web", signal.SIGTERM)
        page.get_by_role("button", name="Send").click()
        alert = page.get_by_role("alert")
        wait_until(lambda: alert.inner_text(), timeout_s=10, what="the polite message")
        assert alert.inner_text() == (
            "Sorry, your answers cannot be sent right now. Please try again later."
        )
        assert page.locator("form.koe-form").is_visible()
        assert page.errors == []  # nothing thrown into the host page

        koe.stack.start("feedback-web")
        wait_for_port("127.0.0.1", koe.stack.port("feedback"), timeout_s=30)
        page.get_by_role("button", name="Send").click()
        thanked(page)
        assert page.errors == []
    finally:
        context.close()
    arrived(koe, page_id_of(url), {"findability": "no"}, locale="en")
    outage_rows = [row for row in stored_responses(koe, page_id_of(url)) if row.findability == "no"]
    assert len(outage_rows) == 1  # the retry carried the same client_token


class HostSite(BaseHTTPRequestHandler):
    """Another site (another origin) whose CMS carries the snippet: path → (html, headers)."""

    pages: dict[str, tuple[str, dict[str, str]]] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        body, headers = self.pages.get(urlsplit(self.path).path, ("", {}))
        self.send_response(200 if body else 404)
        for name, value in {"Content-Type": "text/html; charset=utf-8", **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_):
        pass


def embed_snippet(koe, page_url: str, base: str | None = None, **params: str) -> str:
    """The snippet as /embed (of koe at `base`) makes it for the host site's page, as its
    web team pastes it."""
    generated = koe.http.get(
        (base or koe.url("feedback", "")) + "/embed",
        params={"origin": HOST, "division": "somu-dx", "lang": "ja", "page_url": page_url} | params,
        timeout=10,
    )
    assert generated.status_code == 200
    text = generated.text
    start = text.index(">", text.index('<textarea id="snippet"')) + 1
    return html.unescape(text[start : text.index("</textarea>")])


def host_page(body: str, head: str = "", title: str = "よそのサイト") -> str:
    return (
        f'<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>{title}</title>'
        f"{head}</head><body>{body}</body></html>"
    )


@pytest.fixture(scope="module")
def host_site(koe):
    server = ThreadingHTTPServer(("127.0.0.1", HOST_PORT), HostSite)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield HostSite.pages
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def koe_under_prefix(koe):
    """koe as a city's reverse proxy may serve it, under /koe (https://city.example/koe/):
    the feedback app mounted there, on the stack's database, whose relay publishes it."""
    mounted = DispatcherMiddleware(NotFound(), {})
    server = make_server("127.0.0.1", 0, mounted, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}/koe"
    # Its snippet names where citizens reach it: the prefix (KOE_PUBLIC_URL).
    app = create_app(load_settings(koe.stack.service_env("feedback") | {"KOE_PUBLIC_URL": base}))
    mounted.mounts["/koe"] = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    server.server_close()
    app.extensions["koe.engine"].dispose()


def test_on_another_site_with_hostile_css_the_widget_stays_usable(
    koe, koe_under_prefix, chromium, host_site
):
    """...and quiet until touched, with koe behind a path prefix and a canonical link to
    the same page on another origin."""
    url = f"{HOST}/hostile.html"
    snippet = embed_snippet(koe, url, base=koe_under_prefix)
    # A right-to-left column 280 px wide, and a <title> whose 200th character is an emoji
    # (widget.js cuts titles at 200: by characters, or koe would refuse half an emoji).
    host_site["/hostile.html"] = (
        host_page(
            f'<main id="main" dir="rtl"><h1>よそのサイト</h1>{snippet}</main>',
            head=(
                f"<style>{HOSTILE_CSS}</style>"
                f'<link rel="canonical" href="{HOST_ALIAS}/hostile.html">'
            ),
            title="あ" * 199 + "\N{GRINNING FACE}" + "い" * 10,
        ),
        {},
    )
    koe_host = urlsplit(koe_under_prefix).netloc
    context, page = open_page(chromium, url, "hostile", PHONE)

    def to_koe() -> list[tuple[str, str]]:
        return [(r.method, r.url) for r in page.requests if urlsplit(r.url).netloc == koe_host]

    try:
        page.wait_for_selector("#koe-feedback[data-koe-ready]", state="attached")
        legend = page.locator("legend").first
        style = legend.evaluate(
            "e => { const s = getComputedStyle(e); return [s.fontSize, s.color, s.visibility,"
            " s.direction, getComputedStyle(e.parentElement).display] }"
        )
        assert style == ["16px", "rgb(26, 26, 26)", "visible", "ltr", "block"]
        radio = page.get_by_label("見つけやすかった", exact=True)
        assert radio.evaluate(
            "e => { const s = getComputedStyle(e); return [s.opacity, s.position, s.appearance] }"
        ) == ["1", "static", "auto"]
        button = page.get_by_role("button", name="送信")
        assert button.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(11, 87, 208)"
        widget = page.locator("#koe-feedback")
        box = widget.bounding_box()
        assert box["width"] >= 270 and box["height"] >= 300  # laid out, not collapsed
        assert widget.evaluate("e => e.scrollWidth <= e.clientWidth")  # nothing cut off
        # A page view alone tells koe nothing: its two files (cached for an hour) and no call.
        # (Before axe-core, which reads the stylesheet again itself.)
        assert sorted(to_koe()) == [
            ("GET", f"{koe_under_prefix}/static/widget.css"),
            ("GET", f"{koe_under_prefix}/static/widget.js"),
        ]
        assert axe_violations(page, include="#koe-feedback") == []

        answer(page, "ja")
        button.click()  # cross-origin: CORS on koe's side
        thanked(page)
        assert page.errors == []
        assert [call for call in to_koe() if "/api/" in call[1]] == [
            ("GET", f"{koe_under_prefix}/api/v1/feedback/challenge?page_url={quote(url, safe='')}"),
            ("POST", f"{koe_under_prefix}/api/v1/feedback"),
        ]
    finally:
        context.close()
    response_id = arrived(koe, page_id_of(url), WANTED)
    titles = {r.id: r.page_title for r in stored_responses(koe, page_id_of(url))}
    assert titles[response_id] == "あ" * 199 + "\N{GRINNING FACE}"


def test_a_careless_cms_and_hostile_scripts_never_break_the_widget(koe, chromium, host_site):
    """The snippet pasted twice (two widgets, widget.js twice) on a strict-CSP page that
    throws errors of its own; then a page that broke fetch and lost widget.css."""
    twice_url, broken_url = f"{HOST}/twice.html", f"{HOST}/broken.html"
    koe_origin = koe.url("feedback", "")
    script = {"Content-Type": "text/javascript"}
    host_site["/boom.js"] = ("throw new Error('the host page fails');", script)
    host_site["/twice.html"] = (
        host_page(
            '<script src="/boom.js"></script>' + embed_snippet(koe, twice_url) * 2,
            head='<script src="/boom.js"></script>',
        ),
        {
            "Content-Security-Policy": (
                f"default-src 'self'; script-src 'self' {koe_origin}; style-src {koe_origin};"
                f" connect-src {koe_origin}; form-action {koe_origin}"
            )
        },
    )
    host_site["/broken-fetch.js"] = ("window.fetch = () => { throw new TypeError('no'); };", script)
    host_site["/broken.html"] = (
        host_page(embed_snippet(koe, broken_url), head='<script src="/broken-fetch.js"></script>'),
        {},
    )

    context, page = open_page(chromium, twice_url, "careless-cms")
    try:
        page.wait_for_function("document.querySelectorAll('[data-koe-ready]').length === 2")
        second = page.locator(".koe-w").nth(1)
        second.get_by_label("ふつう").first.check()
        second.get_by_role("button", name="送信").click()
        second.locator(".koe-done").wait_for(state="visible")
        assert second.evaluate("e => e.contains(document.activeElement)")  # its own thank-you
        assert page.locator(".koe-w").first.locator("form").is_visible()
        # Only the host's own errors: nothing from koe, and no CSP violation.
        assert set(page.errors) == {"the host page fails"}
    finally:
        context.close()
    arrived(koe, page_id_of(twice_url), {"findability": "neutral"})
    assert len(stored_responses(koe, page_id_of(twice_url))) == 1  # widget.js ran twice, sent once

    context, page = open_page(chromium, "about:blank", "broken-host")
    try:
        page.route("**/widget.css", lambda route: route.abort())
        page.goto(broken_url)
        # Unstyled, the form still reads right: no honeypot, no premature messages.
        for hidden in (".koe-hp", "#koe-thanks", "#koe-error"):
            assert page.locator(hidden).is_hidden(), hidden
        page.get_by_label("見つけにくかった", exact=True).check()
        page.get_by_role("button", name="送信").click()  # widget.js gave way to the plain form
        page.wait_for_url("**koe=thanks#koe-thanks")
    finally:
        context.close()
    arrived(koe, page_id_of(broken_url), {"findability": "no"})


def test_the_page_s_modified_date_goes_with_the_answer_with_and_without_javascript(
    koe, chromium, host_site
):
    """The snippet /embed makes with the date (the CMS fills its tag in): widget.js sends
    it, the plain form posts it; a tag left unfilled costs the citizen nothing."""
    filled, unfilled = f"{HOST}/modified.html", f"{HOST}/unfilled.html"
    for url, date_tag in ((filled, "2026-11-02"), (unfilled, "PAGE_MODIFIED")):
        snippet = embed_snippet(koe, url, modified="1").replace("PAGE_MODIFIED", date_tag)
        host_site[urlsplit(url).path] = (host_page(snippet), {})

    for url, agent, options in (
        (filled, "js", {}),
        (filled, "no-js", {"java_script_enabled": False}),
        (unfilled, "js", {}),
    ):
        context, page = open_page(chromium, url, f"modified-{agent}", **options)
        try:
            if agent == "js":
                page.wait_for_selector("#koe-feedback[data-koe-ready]", state="attached")
            page.get_by_label("わかりやすかった", exact=True).check()
            page.get_by_role("button", name="送信").click()
            if agent == "js":
                thanked(page)
            else:
                page.wait_for_url("**koe=thanks#koe-thanks")
        finally:
            context.close()

    wait_until(lambda: len(stored_responses(koe, page_id_of(filled))) == 2, what="both answers")
    kept = [str(r.page_modified) for r in stored_responses(koe, page_id_of(filled))]
    assert kept == ["2026-11-02", "2026-11-02"]
    wait_until(lambda: len(stored_responses(koe, page_id_of(unfilled))) == 1, what="the answer")
    assert stored_responses(koe, page_id_of(unfilled))[0].page_modified is None
