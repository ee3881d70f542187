"""The embed: the widget's static files, the /embed generator and the /demo pages."""

from __future__ import annotations

import gzip
import html
import re
from pathlib import Path

import pytest

from feedback.app import create_app
from feedback.config import load_settings
from feedback.embed import CSP
from feedback.migrate import migrate
from koe_directory import QUESTIONS, QUESTIONS_BY_KEY
from koe_directory.catalogue import LOCALES
from koe_kit.config import ConfigError

REPO = Path(__file__).resolve().parents[3]
STATIC = REPO / "services" / "feedback" / "src" / "feedback" / "static"
SITE = "https://www.info.city.tsu.mie.jp"
WIDGET_BUDGET = 10 * 1024


@pytest.fixture(scope="module")
def make_client(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('embed') / 'feedback.db'}"
    migrate(url)
    apps = []

    def make(**env: str):
        settings = {
            "DATABASE_URL": url,
            "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
            "KOE_ALLOWED_ORIGINS": f"{SITE},http://localhost",
            "KOE_CHALLENGE_KEY": "c" * 32,
        }
        apps.append(create_app(load_settings(settings | env)))
        return apps[-1].test_client()

    yield make
    for app in apps:
        app.extensions["koe.engine"].dispose()


@pytest.fixture(scope="module")
def client(make_client):
    return make_client(KOE_PUBLIC_URL="http://localhost")


def test_embed_and_demo_name_the_configured_url_whatever_the_host_header(make_client):
    # Behind a proxy that passes any Host on (or a cache keyed without it), a snippet
    # built from the Host header would load widget.js from the sender's server.
    client = make_client(KOE_PUBLIC_URL="https://koe.city.example/survey/")
    evil = {"Host": "evil.example"}
    embed = client.get("/embed", query_string={"origin": SITE}, headers=evil)
    snippet = html.unescape(embed.get_data(as_text=True))
    assert '<script src="https://koe.city.example/survey/static/widget.js" defer>' in snippet
    assert "evil.example" not in snippet
    demo = client.get("/demo/tsu-dx", headers=evil).get_data(as_text=True)
    assert 'action="https://koe.city.example/survey/feedback"' in demo
    assert 'name="page_url" value="https://koe.city.example/survey/demo/tsu-dx"' in demo
    assert "evil.example" not in demo


def test_without_a_public_url_embed_and_demo_say_what_is_missing(make_client):
    client = make_client()
    for path in ("/embed", "/demo", "/demo/tsu-dx"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert "KOE_PUBLIC_URL" in answer.get_data(as_text=True)
    assert client.get("/static/widget.js").status_code == 200  # the survey itself works


@pytest.mark.parametrize(
    "value", ["koe.city.example", "ftp://koe.city.example", "https://koe.city.example/?a=b"]
)
def test_a_public_url_that_is_no_http_base_stops_start_up(value):
    with pytest.raises(ConfigError, match="KOE_PUBLIC_URL"):
        load_settings(
            {"KOE_ALLOWED_ORIGINS": SITE, "KOE_CHALLENGE_KEY": "c" * 32, "KOE_PUBLIC_URL": value}
        )


def test_widget_js_and_css_fit_in_10_kb_gzipped():
    # Each file compressed on its own, as a server sends them.
    files = [(STATIC / name).read_bytes() for name in ("widget.js", "widget.css")]
    size = sum(len(gzip.compress(data, compresslevel=9)) for data in files)
    print(f"widget.js + widget.css: {sum(map(len, files)):,} bytes, {size:,} bytes gzipped")
    assert size <= WIDGET_BUDGET


@pytest.mark.parametrize("name", ["widget.js", "widget.css"])
def test_static_files_are_cached_revalidated_and_open_to_every_site(client, name):
    first = client.get(f"/static/{name}")
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "public, max-age=3600"
    assert first.headers["Access-Control-Allow-Origin"] == "*"
    assert "Set-Cookie" not in first.headers
    again = client.get(f"/static/{name}", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


def test_widget_js_calls_no_one_but_koe_and_keeps_no_state():
    script = (STATIC / "widget.js").read_text()
    for needle in ("document.cookie", "localStorage", "sessionStorage", "http://", "https://"):
        assert needle not in script.replace("/^https?:\\/\\//", ""), needle
    assert 'credentials: "omit"' in script


def test_embed_makes_an_escaped_snippet_for_a_site_division_and_language(client):
    page = client.get("/embed", query_string={"origin": SITE, "division": "somu-dx", "lang": "en"})

    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"] == CSP
    body = page.get_data(as_text=True)
    start = body.index('<textarea id="snippet"')
    textarea = body[start : body.index("</textarea>", start)]
    assert "<form" not in textarea  # shown as text, never as markup
    snippet = html.unescape(textarea[textarea.index(">") + 1 :])
    assert '<link rel="stylesheet" href="http://localhost/static/widget.css">' in snippet
    assert '<form class="koe-form" action="http://localhost/feedback" method="post">' in snippet
    assert '<input type="hidden" name="division" value="somu-dx">' in snippet
    assert 'lang="en"' in snippet
    assert "Was this page easy to find?" in snippet
    assert snippet.count('type="radio"') == 9
    assert snippet.rstrip().endswith(
        '<script src="http://localhost/static/widget.js" defer></script>'
    )
    assert "style=" not in snippet and "<script>" not in snippet
    assert 'id="koe-thanks"' in snippet and "koe_widget" not in snippet
    # An empty page-view token (each plain-form answer a person of its own; a CMS that
    # renders per request may fill one in), and no page id: /embed signs nothing.
    assert '<input type="hidden" name="client_token" value="">' in snippet
    assert "page_id" not in snippet and "page_sig" not in snippet


def test_embed_adds_the_page_s_modified_date_only_when_asked(client):
    asked = client.get("/embed", query_string={"origin": SITE, "modified": "1"})
    plain = client.get("/embed", query_string={"origin": SITE})

    field = '<input type="hidden" name="page_modified" value="PAGE_MODIFIED">'
    assert field in html.unescape(asked.get_data(as_text=True))
    assert "page_modified" not in html.unescape(plain.get_data(as_text=True))


def test_embed_adds_the_page_s_title_for_the_plain_form_when_asked(client):
    asked = client.get("/embed", query_string={"origin": SITE, "title": "1"})
    plain = client.get("/embed", query_string={"origin": SITE})

    field = '<input type="hidden" name="page_title" value="PAGE_TITLE">'
    assert field in html.unescape(asked.get_data(as_text=True))
    assert "page_title" not in html.unescape(plain.get_data(as_text=True))


def test_embed_gives_a_further_snippet_on_the_page_ids_of_its_own(client):
    page = client.get("/embed", query_string={"origin": SITE, "widget": "side2"})

    body = html.unescape(page.get_data(as_text=True))
    assert '<section class="koe-w" id="koe-feedback-side2" lang="ja"' in body
    assert 'aria-labelledby="koe-title-side2"' in body
    for element_id in ("koe-title-side2", "koe-thanks-side2", "koe-error-side2"):
        assert f'id="{element_id}"' in body
    assert '<input type="hidden" name="koe_widget" value="side2">' in body
    assert 'id="koe-thanks"' not in body


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"origin": "https://evil.example"}, "not in KOE_ALLOWED_ORIGINS"),
        ({"origin": SITE, "division": "nope"}, "unknown division"),
        ({"origin": SITE, "page_url": "https://evil.example/x"}, "must be a page of the site"),
        ({"origin": SITE, "widget": "Side 2"}, "lowercase letters and digits"),
    ],
)
def test_embed_refuses_what_koe_would_refuse(client, query, field):
    page = client.get("/embed", query_string=query)

    assert page.status_code == 422
    body = page.get_data(as_text=True)
    assert field in body
    assert "<textarea" not in body


def test_embed_escapes_what_it_is_given(client):
    page = client.get("/embed", query_string={"origin": '"><script>alert(1)</script>'})
    assert "<script>alert(1)" not in page.get_data(as_text=True)


# DESIGN.md, "The survey", to the letter: the city's own questions and answers.
DESIGN_SURVEY = {
    "findability": (
        "このページは見つけやすかったですか？",
        "見つけやすかった",
        "ふつう",
        "見つけにくかった",
    ),
    "clarity": (
        "このページの内容はわかりやすかったですか？",
        "わかりやすかった",
        "ふつう",
        "わかりにくかった",
    ),
    "usefulness": (
        "このページの内容は参考になりましたか？",
        "参考になった",
        "ふつう",
        "参考にならなかった",
    ),
}


def test_the_japanese_snippet_asks_designs_questions_word_for_word(client):
    body = client.get("/demo/tsu-dx").get_data(as_text=True)
    for key, (question, *labels) in DESIGN_SURVEY.items():
        start = body.index(f'<legend class="koe-l">{question}</legend>')
        fieldset = body[start : body.index("</fieldset>", start)]
        for value, label in zip(("yes", "neutral", "no"), labels, strict=True):
            assert f'name="{key}" value="{value}"> {label}</label>' in fieldset, (key, value)


def test_the_demo_is_the_seed_page_with_the_real_snippet(client):
    index = client.get("/demo").get_data(as_text=True)
    assert 'href="/demo/tsu-dx"' in index and 'href="/demo/tsu-dx/en"' in index

    for path, words in (
        (
            "/demo/tsu-dx",
            ["津市の自治体DX取組状況", "このページは見つけやすかったですか？", "送信"],
        ),
        ("/demo/tsu-dx/en", ["Was this page easy to find?", "Send"]),
    ):
        page = client.get(path)
        assert page.status_code == 200
        assert page.headers["Content-Security-Policy"] == CSP
        body = page.get_data(as_text=True)
        for word in [*words, "デジタル改革推進課", "059-229-3118"]:
            assert word in body, (path, word)
        assert f'name="page_url" value="http://localhost{path}"' in body
        # The plain form names the page as widget.js would, by its <title>.
        title = re.search(r"<title>(.*)</title>", body).group(1)
        assert f'<input type="hidden" name="page_title" value="{title}">' in body
        assert body.index('class="koe-w"') < body.index("059-229-3118")  # survey, then contact
        assert "style=" not in body and "<script>" not in body
    assert client.get("/demo/tsu-dx/fr").status_code == 404


@pytest.mark.parametrize("locale", LOCALES)
def test_the_snippet_asks_in_every_language_of_the_catalogue(client, locale):
    page = client.get("/embed", query_string={"origin": SITE, "lang": locale})
    body = html.unescape(page.get_data(as_text=True))

    assert page.status_code == 200
    assert f'lang="{locale}" dir="ltr"' in body
    for question in QUESTIONS:
        assert f'<legend class="koe-l">{question.text(locale)}</legend>' in body
    # The words widget.js fetches for a snippet that follows the page are the same.
    words = client.get(f"/i18n/{locale}.json")
    assert words.status_code == 200
    assert words.headers["Access-Control-Allow-Origin"] == "*"
    assert words.get_json()["questions"]["clarity"][0] == QUESTIONS_BY_KEY["clarity"].text(locale)


def test_the_translations_differ_from_the_japanese_except_easy_japanese_s_ふつう(client):
    ja = client.get("/i18n/ja.json").get_json()
    for locale in LOCALES[2:]:
        words = client.get(f"/i18n/{locale}.json").get_json()
        assert not set(words["questions"]["findability"]) & set(ja["questions"]["findability"])
        assert words["thanks"] != ja["thanks"]


def test_a_snippet_for_a_multilingual_cms_follows_the_page(client):
    page = client.get("/embed", query_string={"origin": SITE, "lang": "page"})
    body = html.unescape(page.get_data(as_text=True))

    assert page.status_code == 200
    assert 'data-koe-lang="page"' in body
    assert '<input type="hidden" name="locale" value="ja">' in body  # without JavaScript
    assert client.get("/i18n/fr.json").status_code == 404
