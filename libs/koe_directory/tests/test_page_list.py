"""The city's page list: a sitemap.xml or a CSV (UTF-8 or Excel's Shift_JIS)."""

from __future__ import annotations

import re
from datetime import date

import pytest

from koe_directory import canonical_url, page_id_for_url
from koe_directory.page_list import ListedPage, PageListError, read_page_list

SITE = "https://www.info.city.tsu.mie.jp"
DX = f"{SITE}/shisei/dx/1234.html"


def test_a_sitemap_lists_its_pages_canonically(tmp_path):
    sitemap = tmp_path / "sitemap.xml"
    sitemap.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{DX}?from=top</loc><lastmod>2026-11-01</lastmod></url>"
        "<url><loc>HTTPS://WWW.INFO.CITY.TSU.MIE.JP/kurashi/gomi/</loc></url>"
        "</urlset>",
        encoding="utf-8",
    )
    gomi = f"{SITE}/kurashi/gomi/"
    assert read_page_list(sitemap) == [
        ListedPage(DX, page_id_for_url(DX), modified=date(2026, 11, 1)),
        ListedPage(gomi, page_id_for_url(gomi)),
    ]


def test_a_list_s_last_modified_dates_are_the_days_written(tmp_path):
    sitemap = tmp_path / "sitemap.xml"
    sitemap.write_text(
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{DX}</loc><lastmod>2026-11-02T08:30:00+09:00</lastmod></url></urlset>",
        encoding="utf-8",
    )
    listing = tmp_path / "pages.csv"
    listing.write_text(f"url,modified\n{DX},2026-11-03\n", encoding="utf-8")
    assert [p.modified for p in read_page_list(sitemap)] == [date(2026, 11, 2)]
    assert [p.modified for p in read_page_list(listing)] == [date(2026, 11, 3)]


def test_a_shift_jis_csv_from_excel_gives_titles_and_cms_ids(tmp_path):
    listing = tmp_path / "pages.csv"
    listing.write_bytes(
        f"url,title,page_id\r\n{DX},津市の自治体DX取組状況,cms-1234\r\n{SITE}/a.html,,\r\n".encode(
            "cp932"
        )
    )
    assert read_page_list(listing) == [
        ListedPage(DX, "cms-1234", "津市の自治体DX取組状況"),
        ListedPage(canonical_url(f"{SITE}/a.html"), page_id_for_url(f"{SITE}/a.html"), None),
    ]


def test_a_utf8_csv_with_a_byte_order_mark_reads_its_header(tmp_path):
    listing = tmp_path / "pages.csv"
    listing.write_bytes("\ufeffurl,title\n".encode() + f"{DX},DX\n".encode())
    assert read_page_list(listing) == [ListedPage(DX, page_id_for_url(DX), "DX")]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"title\nx\n", "`url` column"),
        (f"url\n{DX}\nftp://x/y\n".encode(), "line 3: 'ftp://x/y' must be an http or https URL"),
        (f"url,page_id\n{DX},bad id\n".encode(), "line 2: page_id 'bad id'"),
        (b"<urlset><url><loc>x</loc></url></urlset>", "root element must be <urlset>"),
        (
            b'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"/>',
            "import each sitemap it names",
        ),
        (
            b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            b"<url><loc>/relative</loc></url></urlset>",
            "<url> 1: '/relative'",
        ),
        (b"<urlset", "not a readable sitemap"),
        (f"url,modified\n{DX},2026/11/03\n".encode(), "line 2: last-modified '2026/11/03'"),
        (
            b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url>'
            + f"<loc>{DX}</loc><lastmod>yesterday</lastmod></url></urlset>".encode(),
            "<url> 1: last-modified 'yesterday' is not a date",
        ),
    ],
)
def test_a_bad_list_names_where_and_why(tmp_path, content, says):
    listing = tmp_path / "list"
    listing.write_bytes(content)
    with pytest.raises(PageListError, match=re.escape(says)):
        read_page_list(listing)


def test_entities_that_expand_without_end_are_refused(tmp_path):
    # The billion-laughs file: refused before anything expands.
    listing = tmp_path / "sitemap.xml"
    listing.write_text(
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">&b;</urlset>'
    )
    with pytest.raises(PageListError, match="must not declare entities"):
        read_page_list(listing)
