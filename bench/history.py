"""A city's history in the aggregator's database, for benchmarks that need one: `pages`
pages × `days` days of daily rows in the tables the consumer writes (pages,
daily_responses, daily_counts, source_counts, detector_state), with a long tail like a
real city site: a page's chance of an answer on a day falls with its rank (1/√rank), so
a few pages get answers most days and most get a few a month.

Page n is https://www.info.city.tsu.mie.jp/bench/{n}.html, as bench_aggregator.py
names its pages: the events it sends land on pages with years behind them.
Filled in SQL (generate_series), a few seconds per million rows.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, text

from aggregator.pruning import DEFAULT_SOURCE_KEEP_DAYS
from koe_directory import page_id_for_url

URL = "https://www.info.city.tsu.mie.jp/bench/{n}.html"
# Rank 1 answers on 90% of days; rank 10,000 about once a month and a half (4.5/√rank).
REACH = 4.5


def fill(engine: Engine, pages: int, days: int) -> dict[str, int]:
    """Fill the history ending yesterday (UTC); the row count of each table filled."""
    urls = [URL.format(n=n) for n in range(pages)]
    ids = [page_id_for_url(url) for url in urls]
    now = datetime.now(UTC)
    with engine.begin() as c:
        c.execute(text("SELECT setseed(0.13)"))
        c.execute(
            text(
                "INSERT INTO pages (id, url, title, title_from_list, sources, visible,"
                " first_seen, last_seen)"
                " SELECT id, url, 'ページ ' || rank, false, 10, true, :first, :now"
                " FROM unnest(CAST(:ids AS text[]), CAST(:urls AS text[]))"
                " WITH ORDINALITY AS p(id, url, rank)"
            ),
            {"ids": ids, "urls": urls, "first": now.replace(year=now.year - 3), "now": now},
        )
        c.execute(
            text(
                # One draw per page and day: in the WHERE of the join, PostgreSQL pushed
                # `random() < f(rank)` down to the pages, drew once per page, and ~900
                # pages got an answer every day while the other 9,100 got none.
                # OFFSET 0 keeps the draws in the subquery, one per row.
                "CREATE TEMP TABLE history ON COMMIT DROP AS"
                " SELECT page_id, day, n FROM ("
                " SELECT p.id AS page_id, d::date AS day, p.rank, random() AS draw,"
                " 1 + floor(random() * 3)::int AS n"
                " FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS p(id, rank),"
                " generate_series(CAST(:today AS date) - :days, CAST(:today AS date) - 1,"
                " interval '1 day') AS d OFFSET 0) AS drawn"
                " WHERE draw < least(0.9, :reach / sqrt(rank))"
            ),
            {"ids": ids, "today": now.date(), "days": days, "reach": REACH},
        )
        c.execute(
            text(
                "INSERT INTO daily_responses (page_id, day, responses)"
                " SELECT page_id, day, n FROM history"
            )
        )
        # Each day's answers split over yes/neutral/no, the same for each question.
        c.execute(
            text(
                "INSERT INTO daily_counts (page_id, day, question, yes, neutral, no)"
                " SELECT page_id, day, q, n - n / 2 - n / 3, n / 3, n / 2 FROM history,"
                " unnest(ARRAY['findability', 'clarity', 'usefulness']) AS q"
            )
        )
        # Only the days retention keeps (pruning.py): a DB that ran for years holds no more.
        c.execute(
            text(
                "INSERT INTO source_counts (page_id, day, source, counted, excess)"
                " SELECT page_id, day, md5(page_id || day)::varchar(32), n, 0 FROM history"
                " WHERE day >= CAST(:today AS date) - :keep"
            ),
            {"today": now.date(), "keep": DEFAULT_SOURCE_KEEP_DAYS},
        )
        # A DB that has run for years has judged every page up to the day before
        # yesterday: without it the first batch would judge each page's 730 days from its
        # first answer (detector_alerts.py), a catch-up no live consumer ever makes.
        c.execute(
            text(
                "INSERT INTO detector_state (page_id, question, last_day, streak)"
                " SELECT DISTINCT page_id, q, CAST(:today AS date) - 2, 0 FROM history,"
                " unnest(ARRAY['findability', 'clarity', 'usefulness']) AS q"
            ),
            {"today": now.date()},
        )
        tables = ("pages", "daily_responses", "daily_counts", "source_counts", "detector_state")
        return {
            t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()  # noqa: S608 - names above
            for t in tables
        }
