"""`python -m aggregator.pages import FILE`: show the pages of the city's page list.

FILE is a sitemap.xml or a CSV with a `url` column and, optionally, `title`,
`page_id` and `modified` (koe_directory.page_list); a later last-modified date than koe
knew is an edit. Run it whenever the CMS publishes (README,
"Pages"): importing the same list again changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from aggregator.config import load_settings
from aggregator.pages.listing import import_pages
from koe_directory.page_list import PageListError, read_page_list
from koe_kit.config import ConfigError, exit_on_config_error
from koe_kit.db import make_engine, session_factory, transaction


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aggregator.pages", description="koe's pages: the city's page list"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser(
        "import", help="show every page a sitemap.xml or CSV names, with its URL and title"
    )
    load.add_argument(
        "file", help="sitemap.xml, or CSV with url[, title, page_id, modified] columns"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        exit_on_config_error(exc)
    try:
        listed = read_page_list(args.file)
    except (OSError, PageListError) as exc:
        print(f"koe: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(settings.database_url)
    try:
        with transaction(session_factory(engine)) as session:
            result = import_pages(session, listed, datetime.now(UTC))
    finally:
        engine.dispose()
    print(
        f"koe: {result.listed:,} pages in {args.file} are shown "
        f"({result.new:,} new to koe, {result.listed - result.new:,} known from answers or "
        f"an earlier list); {result.edits:,} edited since koe last knew their date"
    )
    return 0
