"""A city's history in the aggregator's database, for the benchmarks that need one
(bench_aggregator.py, bench_read_side.py, screenshot_overview.py): `pages` pages × `days`
days of daily rows in the tables the consumer writes (pages, daily_responses,
daily_counts, their per-language twins, source_counts, detector_state) and the alerts
it raised, filled by SQL in PostgreSQL (a few seconds per million rows).

A long tail like a real city site: a page's rate of answers per day is 0.005 / u² for
a uniform u, capped at 20, so most pages get a few answers a month and a few get dozens
a day. Each day of each page is drawn on its own (see FILL). The answers split over the
three questions (each answered nine times in ten) and yes / neutral / no with fixed odds.

Page n is url(n): under one of four divisions' prefixes (divisions.yaml), so division
filters and clerks' views have pages to show; bench_aggregator's events go to the same
URLs and land on pages with years behind them.

Each page's day is in one language (one in ten English), in the per-language tables the
pages list's language filter reads. One alert per ALERT_EVERY pages is seeded (spread
over the D days, three in four handled, all sent), so the alerts list and the open
alerts of the pages list read an alerts table that grows with the city.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, text

from aggregator.counting.pruning import DEFAULT_SOURCE_KEEP_DAYS
from koe_directory import page_id_for_url

PREFIXES = [
    "https://www.info.city.tsu.mie.jp/shisei/dx/",
    "https://www.info.city.tsu.mie.jp/kurashi/gomi/",
    "https://www.info.city.tsu.mie.jp/kosodate/",
    "https://www.info.city.tsu.mie.jp/kenko/",
]
TABLES = (
    "pages",
    "daily_responses",
    "daily_counts",
    "daily_locale_responses",
    "daily_locale_counts",
    "source_counts",
    "detector_state",
    "alert_outbox",
    "alert_handling",
)
# One alert per this many pages (10,000 pages: 1,000 alerts).
ALERT_EVERY = 10
ALERT_PAYLOAD = (
    Path(__file__).resolve().parents[1] / "schemas/examples/koe.alerts.v1" / "clarity-drop.json"
)

# The day's draw sits in a subquery behind OFFSET 0: in the join's WHERE, PostgreSQL
# filtered `rates` with it, one draw per page, and a page answered every day or never.
FILL = """
INSERT INTO pages (id, url, title, title_from_list, sources, visible, first_seen, last_seen)
SELECT id, url, '津市のページ ' || (n - 1) || ' 手続きのご案内', false, 10, true, :first, :now
FROM unnest(CAST(:ids AS text[]), CAST(:urls AS text[])) WITH ORDINALITY AS p(id, url, n);

CREATE TEMP TABLE rates ON COMMIT DROP AS
SELECT id AS page_id, least(20.0, 0.005 / power(greatest(random(), 0.001), 2)) AS rate
FROM unnest(CAST(:ids AS text[])) AS id;

CREATE TEMP TABLE answered ON COMMIT DROP AS
SELECT page_id, day, responses FROM (
    SELECT page_id, rate, CAST(:last_day AS date) - d AS day, random() AS draw,
           floor(rate + random() * greatest(1.0, rate))::int AS responses
    FROM rates, generate_series(0, :days - 1) AS d
    OFFSET 0
) AS drawn
WHERE draw < least(1.0, rate) AND responses > 0;

INSERT INTO daily_responses (page_id, day, responses) SELECT page_id, day, responses FROM answered;

INSERT INTO daily_counts (page_id, day, question, yes, neutral, no)
SELECT page_id, day, q,
       (responses * 0.6)::int, (responses * 0.25)::int,
       responses - (responses * 0.6)::int - (responses * 0.25)::int
FROM answered, unnest(ARRAY['findability', 'clarity', 'usefulness']) AS q
WHERE random() < 0.9;

-- Only the days retention keeps (pruning.py): a DB that ran for years holds no more.
INSERT INTO source_counts (page_id, day, source, counted, excess)
SELECT page_id, day, md5(page_id || day)::varchar(32), responses, 0 FROM answered
WHERE day > CAST(:last_day AS date) - :keep;

-- A DB that has run for years has judged every page up to the day before its last:
-- without it the aggregator's first batch would judge each page's days from its first
-- answer (alerts/judging.py), a catch-up no live consumer ever makes.
INSERT INTO detector_state (page_id, question, last_day, streak)
SELECT DISTINCT page_id, q, CAST(:last_day AS date) - 1, 0 FROM answered,
       unnest(ARRAY['findability', 'clarity', 'usefulness']) AS q;

CREATE TEMP TABLE languages ON COMMIT DROP AS
SELECT page_id, day, CASE WHEN abs(hashtext(page_id || day)) % 10 = 0 THEN 'en' ELSE 'ja' END
       AS locale
FROM answered;

INSERT INTO daily_locale_responses (page_id, day, locale, responses)
SELECT page_id, day, locale, responses FROM answered JOIN languages USING (page_id, day);

INSERT INTO daily_locale_counts (page_id, day, locale, question, yes, neutral, no)
SELECT page_id, day, locale, question, yes, neutral, no
FROM daily_counts JOIN languages USING (page_id, day);

INSERT INTO alert_outbox (alert_id, page_id, payload, created_at, sent_at, edit_report)
SELECT md5('alert' || n)::uuid::text, id, :payload,
       :now - ((n - 1) % :days) * interval '1 day', :now - ((n - 1) % :days) * interval '1 day',
       false
FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS p(id, n)
WHERE (n - 1) % :alert_every = 0;

INSERT INTO alert_handling (alert_id, handled_by, handled_at, note)
SELECT alert_id, 'somu-dx@bench.example', created_at + interval '1 day', '対応済み'
FROM alert_outbox WHERE id % 4 <> 0
"""


def url(n: int) -> str:
    return f"{PREFIXES[n % len(PREFIXES)]}{n}.html"


def page_id(n: int) -> str:
    return page_id_for_url(url(n))


def fill(engine: Engine, pages: int, days: int, last_day: date) -> dict[str, int]:
    """Fill the `days` days ending at `last_day`; the row count of each table filled."""
    urls = [url(n) for n in range(pages)]
    now = datetime.now(UTC)
    params = {
        "ids": [page_id_for_url(u) for u in urls],
        "urls": urls,
        "first": now.replace(year=now.year - 3),
        # Answered lately: no page is quiet (page_list.py), every one is in the list.
        "now": now,
        "days": days,
        "last_day": last_day,
        "keep": DEFAULT_SOURCE_KEEP_DAYS,
        "payload": ALERT_PAYLOAD.read_text(),
        "alert_every": ALERT_EVERY,
    }
    with engine.begin() as c:
        c.execute(text("SELECT setseed(0.13)"))
        for statement in FILL.split(";\n"):
            c.execute(text(statement), params)
        return {
            t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()  # noqa: S608 - names above
            for t in TABLES
        }
