"""CSV for Excel: both encodings decode, headers are Japanese (English on request), the
numbers are the stats API's, only visible pages are in it, formulas and markup stay text."""

from __future__ import annotations

import csv
import io
import re

from aggregator.dashboard.export import neutralise
from aggregator.pages.models import Page
from koe_kit.db import transaction

TOKEN = "dashboard-api-token-" + "t" * 16  # noqa: S105 (a test token)
API = {"Authorization": f"Bearer {TOKEN}"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
WINDOW_LABELS = {"7日間": "7d", "28日間": "28d", "全期間": "all"}


def signed_in(app, city, email: str):
    client = app.test_client()
    token = CSRF.search(client.get("/sign-in").get_data(as_text=True)).group(1)
    response = client.post(
        "/sign-in", data={"email": email, "password": city.password, "csrf_token": token}
    )
    assert response.status_code == 303
    return client


def rows_of(response, encoding: str) -> list[list[str]]:
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(response.get_data().decode(encoding))))


def number(cell: str):
    return None if cell == "" else float(cell) if "." in cell else int(cell)


def test_pages_csv_is_utf8_with_bom_and_equals_the_stats_api(city_app):
    app, city = city_app
    somu = signed_in(app, city, city.somu)
    response = somu.get("/export/pages.csv")
    assert response.is_streamed  # written while the database is read, not built first
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.get_data().startswith(b"\xef\xbb\xbf")
    header, *rows = rows_of(response, "utf-8-sig")
    assert header[:10] == [
        "ページID",
        "タイトル",
        "URL",
        "部",
        "課",
        "期間",
        "開始日",
        "終了日",
        "回答者数",
        "満足度",
    ]
    assert header[10:17] == [
        "見つけやすさ 満足度",
        "見つけやすさ 回答数",
        "見つけやすさ 95%下限",
        "見つけやすさ 95%上限",
        "見つけやすさ はい",
        "見つけやすさ ふつう",
        "見つけやすさ いいえ",
    ]
    assert len(header) == 10 + 3 * 7
    api = {p["id"]: p for p in somu.get("/api/v1/pages", headers=API).get_json()["pages"]}
    # Only the division's own pages, each with its three windows.
    assert sorted({row[0] for row in rows}) == sorted([city.dx, city.xss, city.formula])
    assert len(rows) == 9
    for row in rows:
        page = api[row[0]]
        figures = page["windows"][WINDOW_LABELS[row[5]]]
        assert row[3:5] == ["総務部", "デジタル改革推進課"]
        assert (row[6], row[7]) == (figures["start"] or "", figures["end"])
        assert (number(row[8]), number(row[9])) == (figures["n"], figures["score"])
        for index, question in enumerate(("findability", "clarity", "usefulness")):
            q = figures["questions"][question]
            cells = [number(c) for c in row[10 + 7 * index : 17 + 7 * index]]
            fields = ("score", "n", "wilson_low", "wilson_high", "yes", "neutral", "no")
            assert cells == [q[f] for f in fields]
    titles = {row[0]: row[1] for row in rows}
    # Markup is plain text in a CSV; a formula gets an apostrophe so Excel shows it as text.
    assert titles[city.xss] == city.xss_title
    assert titles[city.formula] == "'" + city.formula_title


def test_shift_jis_on_request_with_unrepresentable_characters_replaced(city_app, sessions):
    app, city = city_app
    with transaction(sessions) as session:
        session.get(Page, city.dx).title = "津市のDX 🍙 𠮷野 ① 9時〜17時 — ¥500"
    somu = signed_in(app, city, city.somu)
    response = somu.get("/export/pages.csv?encoding=shift_jis")
    assert response.headers["Content-Type"] == "text/csv; charset=Shift_JIS"
    assert not response.get_data().startswith(b"\xef\xbb\xbf")
    header, *rows = rows_of(response, "cp932")
    assert header[4] == "課" and header[9] == "満足度"
    titles = {row[0]: row[1] for row in rows}
    # ① and 〜 are in cp932; — and ¥ become their cp932 look-alikes; 🍙 and 𠮷 are not there.
    assert titles[city.dx] == "津市のDX ? ?野 ① 9時～17時 ― ￥500"
    utf8 = rows_of(somu.get("/export/pages.csv"), "utf-8-sig")[1:]
    # The same figures in both encodings.
    assert [r[5:] for r in rows] == [r[5:] for r in utf8]
    assert somu.get("/export/pages.csv?encoding=latin-1").status_code == 400


def test_english_headers_with_lang_en(city_app):
    app, city = city_app
    somu = signed_in(app, city, city.somu)
    header, *rows = rows_of(somu.get("/export/pages.csv?lang=en"), "utf-8-sig")
    assert header[:10] == [
        "page id",
        "title",
        "URL",
        "department",
        "division",
        "window",
        "start",
        "end",
        "responses",
        "score",
    ]
    assert header[10] == "Findability score"
    assert {row[5] for row in rows} == {"7 days", "28 days", "All time"}


def test_daily_csv_equals_the_stats_api_series(city_app):
    app, city = city_app
    somu = signed_in(app, city, city.somu)
    header, *rows = rows_of(somu.get(f"/export/pages/{city.dx}/daily.csv"), "utf-8-sig")
    assert header[:5] == [
        "日付",
        "回答者数",
        "満足度",
        "見つけやすさ 満足度",
        "見つけやすさ 回答数",
    ]
    daily = somu.get(f"/api/v1/pages/{city.dx}?days=84", headers=API).get_json()["daily"]
    # All history: the seeded 84 days, empty days included as in the API's series.
    assert [row[0] for row in rows] == [d["day"] for d in daily]
    for row, day in zip(rows, daily, strict=True):
        assert (number(row[1]), number(row[2])) == (day["n"], day["score"])
        for index, question in enumerate(("findability", "clarity", "usefulness")):
            q = day["questions"][question]
            cells = [number(c) for c in row[3 + 5 * index : 8 + 5 * index]]
            assert cells == [q[f] for f in ("score", "n", "yes", "neutral", "no")]
    last_week = rows_of(somu.get(f"/export/pages/{city.dx}/daily.csv?days=7"), "utf-8-sig")
    assert [r[0] for r in last_week[1:]] == [d["day"] for d in daily[-7:]]
    assert somu.get(f"/export/pages/{city.dx}/daily.csv?days=0").status_code == 400


def test_cells_that_look_like_formulas_are_neutralised():
    for dangerous in ("=1+2", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert neutralise(dangerous) == "'" + dangerous
    for harmless in ("津市", "1.5", "", None, 12):
        assert neutralise(harmless) == ("" if harmless is None else str(harmless))


def test_full_width_formula_starts_and_bidi_controls_are_neutralised_too():
    # Excel (Japanese) reads ＝＋－＠ as = + - @ when it opens a CSV; a bidi control
    # in front hides a formula start from a check of the first character, and inside
    # a title it makes the cell read differently from what it holds.
    for dangerous in ("＝1+2", "＋1", "－1", "＠SUM(A1)"):
        assert neutralise(dangerous) == "'" + dangerous
    assert neutralise("\u202e=1+2") == "'=1+2"
    assert neutralise("\u2066@SUM(A1)\u2069") == "'@SUM(A1)"
    assert neutralise("ごみ\u202eの出し方") == "ごみの出し方"
    assert neutralise("ＤＸ推進課") == "ＤＸ推進課"  # other full-width text stays as written
