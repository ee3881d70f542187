"""/demo: a Tsu city page (the seed page, copied into templates/demo/) with the survey at
its foot, embedded with the real snippet: the page in Japanese and English, and the
Japanese page with the survey in each language of the catalogue, as Tsu's pages are
read by residents who answer in theirs.

Served by the feedback app itself, so `make run` shows the widget on a realistic
page under a strict Content-Security-Policy; the page's origin must be one of
KOE_ALLOWED_ORIGINS (make run allows its own).
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request

from feedback.embed import public_url, snippet, with_csp
from koe_directory.catalogue import LOCALES

blueprint = Blueprint("demo", __name__)

# The seed page's division (divisions.yaml): 総務部 デジタル改革推進課.
DIVISION = "somu-dx"
PAGES = {"ja": "demo/tsu-dx.ja.html", "en": "demo/tsu-dx.en.html"}
# Each page's <title>, which the snippet carries too: answered without JavaScript, the
# page is named as widget.js would name it (a CMS prints its title tag there).
TITLES = {
    "ja": "津市の自治体DX取組状況|津市",
    "en": "Tsu City's digital transformation (DX)|Tsu City",
}


@blueprint.get("/demo")
def index():
    public_url()
    return with_csp(render_template("demo/index.html"))


@blueprint.get("/demo/tsu-dx", defaults={"lang": "ja"})
@blueprint.get("/demo/tsu-dx/<lang>")
def tsu_dx(lang: str):
    if lang not in LOCALES:
        abort(404)
    base_url = public_url()
    # The page's own address under KOE_PUBLIC_URL, as url_for would give it behind a
    # proxy, without trusting the Host header.
    page_url = base_url + request.path
    page, title = PAGES.get(lang, PAGES["ja"]), TITLES.get(lang, TITLES["ja"])
    survey = snippet(base_url, lang, page_url, DIVISION, title=title)
    return with_csp(render_template(page, page_url=page_url, survey=survey, title=title))
