"""The read side at a city's real size (issue 13): every dashboard screen, both CSVs and
the stats API, timed over N pages x D days of history in PostgreSQL.

The history goes into the tables the consumer writes (pages, daily_counts,
daily_responses), made by SQL in the database: a long tail like a real city (a page's
rate of answers per day is 0.005 / u^2 for uniform u, capped at 20, so most pages get a
few answers a month and a few get dozens a day). The rollups are then built from those
rows (rollups.rebuild), as the consumer would have kept them.

Each screen is asked `--repeat` times through the app (Flask's test client, signed in as
an admin); medians are printed with their ratio to one page's detail view. The pages
list is also timed the old way (rollups not at today: summed from the daily rows) in the
same run, as the baseline. CSVs: time to the first byte and to the last, and the bytes.

Each page's day is in one language (one in ten English), in the per-language tables the
list's language filter reads. One alert per ALERT_EVERY pages is seeded too (spread over
the D days, three in four handled), so the alerts list is timed over an alerts table
that grows with the city.

Usage: python bench/bench_read_side.py [--pages 1000 10000] [--days 730] [--repeat 5]
       python bench/bench_read_side.py --pages 1000 10000 100000   (the 100,000 case
       fills ~20 M rows: allow the better part of an hour)
       --keep [PREFIX]: fill each N x D once into a database kept for the next run
       (PREFIX_N_D, koe_bench_keep_N_D by default; drop it by hand), so the 100,000
       case's hour is paid once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text, update

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aggregator import rollups  # noqa: E402
from aggregator.accounts import create_account  # noqa: E402
from aggregator.app import create_app  # noqa: E402
from aggregator.config import WebSettings, load_web_settings  # noqa: E402
from aggregator.migrate import migrate  # noqa: E402
from aggregator.models import Account, Page  # noqa: E402
from common import REPO, kept_database, pg_database  # noqa: E402
from koe_directory import load_directory  # noqa: E402
from koe_kit.db import make_engine, session_factory, transaction  # noqa: E402

TOKEN = "bench-read-side-token-" + "t" * 16  # noqa: S105 (a bench token)
SECRET = "bench-read-side-secret-" + "s" * 16  # noqa: S105 (a bench secret)
PASSWORD = "correct horse battery"  # noqa: S105 (a bench password)
ADMIN = "admin@bench.example"
PREFIXES = [
    "https://www.info.city.tsu.mie.jp/shisei/dx/",
    "https://www.info.city.tsu.mie.jp/kurashi/gomi/",
    "https://www.info.city.tsu.mie.jp/kosodate/",
    "https://www.info.city.tsu.mie.jp/kenko/",
]

# Pages, then per page and day a Poisson-ish count from the page's rate; the answers
# split over the three questions and yes / neutral / no with fixed odds. The day's draw
# sits in a subquery behind OFFSET 0: in the join's WHERE, PostgreSQL filtered `rates`
# with it, one draw per page, and a page answered every day or never.
FILL = """
INSERT INTO pages (id, url, title, title_from_list, sources, visible, first_seen, last_seen)
SELECT 'u-' || lpad(to_hex(i), 16, '0'),
       (ARRAY[{prefixes}])[1 + i % {n_prefixes}] || i || '.html',
       '津市のページ ' || i || ' 手続きのご案内', false, 10, true, :seen, :answered
FROM generate_series(1, :pages) AS i;

CREATE TEMP TABLE rates AS
SELECT 'u-' || lpad(to_hex(i), 16, '0') AS page_id,
       least(20.0, 0.005 / power(greatest(random(), 0.001), 2)) AS rate
FROM generate_series(1, :pages) AS i;

CREATE TEMP TABLE answered AS
SELECT page_id, day, responses FROM (
    SELECT page_id, rate, :today - d AS day, random() AS draw,
           floor(rate + random() * greatest(1.0, rate))::int AS responses
    FROM rates, generate_series(0, :days - 1) AS d
    OFFSET 0
) AS drawn
WHERE draw < least(1.0, rate);

DELETE FROM answered WHERE responses <= 0;

INSERT INTO daily_responses (page_id, day, responses) SELECT page_id, day, responses FROM answered;

INSERT INTO daily_counts (page_id, day, question, yes, neutral, no)
SELECT page_id, day, q,
       (responses * 0.6)::int, (responses * 0.25)::int,
       responses - (responses * 0.6)::int - (responses * 0.25)::int
FROM answered, unnest(ARRAY['findability', 'clarity', 'usefulness']) AS q
WHERE random() < 0.9;

CREATE TEMP TABLE languages AS
SELECT page_id, day, CASE WHEN abs(hashtext(page_id || day)) % 10 = 0 THEN 'en' ELSE 'ja' END
       AS locale
FROM answered;

INSERT INTO daily_locale_responses (page_id, day, locale, responses)
SELECT page_id, day, locale, responses FROM answered JOIN languages USING (page_id, day);

INSERT INTO daily_locale_counts (page_id, day, locale, question, yes, neutral, no)
SELECT page_id, day, locale, question, yes, neutral, no
FROM daily_counts JOIN languages USING (page_id, day);

INSERT INTO alert_outbox (alert_id, page_id, payload, created_at, sent_at, edit_report)
SELECT md5('alert' || i)::uuid::text, 'u-' || lpad(to_hex(i), 16, '0'), :payload,
       :now - (i % :days) * interval '1 day', :now - (i % :days) * interval '1 day', false
FROM generate_series(1, :pages, {alert_every}) AS i;

INSERT INTO alert_handling (alert_id, handled_by, handled_at, note)
SELECT alert_id, 'somu-dx@bench.example', created_at + interval '1 day', '対応済み'
FROM alert_outbox WHERE id % 4 <> 0;
"""
# One alert per this many pages (10,000 pages: 1,000 alerts).
ALERT_EVERY = 10


def fill(url: str, pages: int, days: int, today) -> dict[str, float]:
    engine = make_engine(url)
    started = time.perf_counter()
    prefixes = ", ".join(f"'{p}'" for p in PREFIXES)
    params = {
        "pages": pages,
        "days": days,
        "today": today,
        "seen": datetime(2024, 1, 1, tzinfo=UTC),
        # Answered lately: no page is quiet (page_list.py), every one is in the list.
        "answered": datetime.now(UTC),
        "now": datetime.now(UTC),
        "payload": (REPO / "schemas/examples/koe.alerts.v1/clarity-drop.json").read_text(),
    }
    with engine.begin() as connection:
        for statement in FILL.format(
            prefixes=prefixes, n_prefixes=len(PREFIXES), alert_every=ALERT_EVERY
        ).split(";\n"):
            if statement.strip():
                connection.execute(text(statement), params)
        connection.execute(text("ANALYZE"))
        counts = connection.execute(text("SELECT count(*) FROM daily_counts")).scalar_one()
        size = connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    filled = time.perf_counter() - started
    sessions = session_factory(engine)
    started = time.perf_counter()
    with transaction(sessions) as session:
        rollups.rebuild(session, today)
    rebuilt = time.perf_counter() - started
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    engine.dispose()
    return {"daily_counts": counts, "MB": size / 1e6, "fill_s": filled, "rollups_s": rebuilt}


def timed(client, path: str, repeat: int, headers=None) -> tuple[float, float, int]:
    """Median seconds to the first body byte and to the last, and the body's bytes."""
    firsts, totals, size = [], [], 0
    client.get(path, headers=headers).close()  # warm: caches, prepared statements
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path, headers=headers, buffered=False)
        assert response.status_code == 200, (path, response.status_code)
        chunks = iter(response.response)
        first = next(chunks, b"")
        firsts.append(time.perf_counter() - started)
        size = len(first) + sum(len(chunk) for chunk in chunks)
        totals.append(time.perf_counter() - started)
        response.close()
    return statistics.median(firsts), statistics.median(totals), size


def bench_settings(url: str) -> WebSettings:
    """The aggregator's settings on the bench's database (plain-HTTP cookies: no TLS here)."""
    return load_web_settings(
        {
            "DATABASE_URL": url,
            "KOE_API_TOKEN": TOKEN,
            "KOE_SECRET_KEY": SECRET,
            "KOE_DASHBOARD_SECURE_COOKIES": "false",
            "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
        }
    )


def run(
    pages: int, days: int, repeat: int, keep: str | None
) -> dict[str, tuple[float, float, int]]:
    if keep is None:
        with pg_database() as url:
            return bench(url, pages, days, repeat)
    return bench(kept_database(f"{keep}_{pages}_{days}"), pages, days, repeat)


def filled_before(url: str) -> bool:
    """Whether the database holds a fill (a kept one from an earlier run; a fill is one
    transaction, so a fill cut short leaves none)."""
    engine = make_engine(url)
    with engine.connect() as connection:
        found = connection.execute(text("SELECT 1 FROM pages LIMIT 1")).first() is not None
    engine.dispose()
    return found


def refresh(url: str, today) -> None:
    """A kept database as a fresh one would be: the rollups at today (the baseline below
    moved them back; a later day moves them on), quiet pages none."""
    engine = make_engine(url)
    with transaction(session_factory(engine)) as session:
        rollups.rebuild(session, today)
        session.execute(update(Page).values(last_seen=datetime.now(UTC)))
    engine.dispose()


def bench(url: str, pages: int, days: int, repeat: int) -> dict[str, tuple[float, float, int]]:
    migrate(url)
    settings = bench_settings(url)
    today = datetime.now(settings.timezone).date()
    if not filled_before(url):
        filled = fill(url, pages, days, today)
        print(
            f"  N={pages:,}: {filled['daily_counts']:,} daily_counts rows, "
            f"{filled['MB']:.0f} MB, filled in {filled['fill_s']:.0f} s, "
            f"rollups built in {filled['rollups_s']:.1f} s",
            flush=True,
        )
    else:
        refresh(url, today)
        print(f"  N={pages:,}: the kept database {url.rsplit('/', 1)[1]}", flush=True)
    app = create_app(settings)
    sessions = session_factory(app.extensions["koe.engine"])
    with transaction(sessions) as session:
        directory = load_directory(REPO / "divisions.yaml")
        if session.scalar(select(Account.id).where(Account.email == ADMIN)) is None:
            create_account(session, directory, email=ADMIN, password=PASSWORD, admin=True)
    client = app.test_client()
    form = client.get("/sign-in").get_data(as_text=True)
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    signed = client.post(
        "/sign-in", data={"email": ADMIN, "password": PASSWORD, "csrf_token": token}
    )
    assert signed.status_code == 303
    busiest = f"u-{1:016x}"
    api = {"Authorization": f"Bearer {TOKEN}"}
    first_page = client.get("/api/v1/pages", headers=api).get_json()
    screens = {
        "page detail": f"/pages/{busiest}",
        "pages list (score, 28d)": "/pages",
        "pages list (title, page 40)": "/pages?sort=title&p=40",
        "pages list (n desc, 7d, division)": (
            "/pages?sort=n&order=desc&window=7d&division=somu-dx"
        ),
        "pages list (search)": "/pages?q=1234",
        "pages list (language en)": "/pages?locale=en",
        "overview": "/overview",
        "alerts": "/alerts",
        "CSV all pages UTF-8": "/export/pages.csv",
        "CSV all pages Shift_JIS": "/export/pages.csv?encoding=shift_jis",
        "CSV one page's days": f"/export/pages/{busiest}/daily.csv",
        "API list (first 100)": "/api/v1/pages",
        "API list (next 100)": f"/api/v1/pages?cursor={first_page['next']}",
        "API page detail": f"/api/v1/pages/{busiest}",
    }
    results = {}
    for name, path in screens.items():
        headers = api if path.startswith("/api/") else None
        results[name] = timed(client, path, repeat, headers)
    # The baseline, in the same run: the pages list summed from the daily rows.
    with transaction(sessions) as session:
        session.execute(update(rollups.rollup_state).values(as_of=today - timedelta(days=1)))
    results["pages list, old way (summed)"] = timed(client, "/pages", repeat)
    app.extensions["koe.engine"].dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--keep",
        nargs="?",
        const="koe_bench_keep",
        metavar="PREFIX",
        help="fill each N x D once, into a database PREFIX_N_D kept for the next run",
    )
    args = parser.parse_args()
    print(f"bench_read_side: D={args.days} days, median of {args.repeat}, PostgreSQL")
    by_n = {n: run(n, args.days, args.repeat, args.keep) for n in args.pages}
    names = list(next(iter(by_n.values())))
    head = f"{'screen':<36}" + "".join(
        f"{f'N={n:,} ms':>14}{'first ms':>10}{'KB':>9}{'/detail':>8}" for n in by_n
    )
    print(head)
    for name in names:
        line = f"{name:<36}"
        for results in by_n.values():
            first, total, size = results[name]
            detail = results["page detail"][1]
            line += (
                f"{total * 1e3:>14.1f}{first * 1e3:>10.1f}{size / 1e3:>9.0f}{total / detail:>8.1f}"
            )
        print(line)
    ns = sorted(by_n)
    for small, large in zip(ns, ns[1:], strict=False):
        print(f"\nratio N={large:,} / N={small:,} (time to the last byte):")
        for name in names:
            ratio = by_n[large][name][1] / by_n[small][name][1]
            print(f"  {name:<36}{ratio:>7.2f}x")


if __name__ == "__main__":
    main()
