"""The city's own list of its pages: a sitemap.xml, or a CSV its CMS or a clerk exports.

A page the list names is the city's word that the page exists (DESIGN.md, "Trustworthy
numbers"): it needs no crowd of answers before divisions see it, and answering it costs
no one a new page. The services import it with their own CLIs; this module only reads.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from defusedxml import DefusedXmlException, ElementTree

from koe_directory.pages import PAGE_ID, canonical_url, page_id_for_url

_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
# Excel in a Japanese locale saves "CSV" as Shift_JIS (cp932); anything else as UTF-8,
# often with a byte-order mark.
_ENCODINGS = ("utf-8-sig", "cp932")
MAX_TITLE = 200


class PageListError(ValueError):
    """The file is not a page list koe can read; the message says where and why."""


@dataclass(frozen=True)
class ListedPage:
    url: str  # canonical
    page_id: str
    title: str | None = None
    # The page's last-modified day: a sitemap's <lastmod>, a CSV's `modified` column.
    modified: date | None = None


def read_page_list(path: str | Path) -> list[ListedPage]:
    """Every page of a sitemap.xml (by its <urlset>, with each <lastmod>) or a CSV with a
    `url` column and, optionally, `title`, `page_id` and `modified` (YYYY-MM-DD) columns;
    one entry per page id, the last wins."""
    raw = Path(path).read_bytes()
    pages = _sitemap(raw) if raw.lstrip().startswith(b"<") else _csv(_text(raw))
    return list({page.page_id: page for page in pages}.values())


def _sitemap(raw: bytes) -> list[ListedPage]:
    try:
        root = ElementTree.fromstring(raw)
    except ElementTree.ParseError as exc:
        raise PageListError(f"not a readable sitemap: {exc}") from None
    except DefusedXmlException:
        # A sitemap never needs them, and entities that expand without end are an attack.
        raise PageListError("a sitemap must not declare entities or a DTD") from None
    if root.tag == f"{_SITEMAP_NS}sitemapindex":
        raise PageListError("a sitemap index: import each sitemap it names")
    if root.tag != f"{_SITEMAP_NS}urlset":
        raise PageListError("not a sitemap: the root element must be <urlset>")
    pages = []
    for number, entry in enumerate(root.iter(f"{_SITEMAP_NS}url"), start=1):
        loc = entry.findtext(f"{_SITEMAP_NS}loc")
        where = f"<url> {number}"
        modified = _day(where, entry.findtext(f"{_SITEMAP_NS}lastmod"))
        pages.append(_page(where, loc or "", modified=modified))
    return pages


def _text(raw: bytes) -> str:
    for encoding in _ENCODINGS:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise PageListError("a CSV must be UTF-8 or Shift_JIS text")


def _csv(text: str) -> list[ListedPage]:
    rows = csv.DictReader(io.StringIO(text, newline=""))
    if "url" not in (rows.fieldnames or []):
        raise PageListError("a CSV needs a header row with a `url` column")
    pages = []
    for row in rows:
        where = f"line {rows.line_num}"
        title = " ".join((row.get("title") or "").split())[:MAX_TITLE] or None
        page_id = (row.get("page_id") or "").strip()
        modified = _day(where, row.get("modified"))
        pages.append(_page(where, row["url"] or "", title, page_id, modified))
    return pages


def _day(where: str, text: str | None) -> date | None:
    """A W3C date (sitemaps: YYYY-MM-DD, or a date and time with an offset) as the day
    it names where it was written; empty is none."""
    text = (text or "").strip()
    if not text:
        return None
    day, _, clock = text.partition("T")
    try:
        if len(day) == 10 and (not clock or clock[:2].isdigit()):
            return date.fromisoformat(day)
    except ValueError:
        pass
    raise PageListError(f"{where}: last-modified {text[:40]!r} is not a date (YYYY-MM-DD)")


def _page(
    where: str,
    url: str,
    title: str | None = None,
    page_id: str = "",
    modified: date | None = None,
) -> ListedPage:
    try:
        canonical = canonical_url(url)
    except ValueError as exc:
        raise PageListError(f"{where}: {url.strip()[:200]!r} {exc}") from None
    if page_id and not PAGE_ID.match(page_id):
        raise PageListError(f"{where}: page_id {page_id[:200]!r} is not a valid page id")
    return ListedPage(canonical, page_id or page_id_for_url(canonical), title, modified)
