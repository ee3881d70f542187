"""The read side at a city's real size (issue 13): every dashboard screen, both CSVs and
the stats API, timed over N pages x D days of history in PostgreSQL.

The history goes into the tables the consumer writes, made by SQL in the database
(history.py: a long tail like a real city, the same as bench_aggregator's, with its
per-language rows and one alert per ten pages). The rollups are then built from those
rows (rollups.rebuild), as the consumer would have kept them.

Each screen is asked `--repeat` times through the app (Flask's test client, signed in as
an admin); medians are printed with their ratio to one page's detail view. The pages
list is also timed the old way (rollups not at today: summed from the daily rows) in the
same run, as the baseline. CSVs: time to the first byte and to the last, and the bytes.

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
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text, update

sys.path.insert(0, str(Path(__file__).resolve().parent))
import history  # noqa: E402
from aggregator.accounts.models import Account  # noqa: E402
from aggregator.accounts.services import create_account  # noqa: E402
from aggregator.app import create_app  # noqa: E402
from aggregator.config import WebSettings, load_web_settings  # noqa: E402
from aggregator.counting import rollups  # noqa: E402
from aggregator.migrate import migrate  # noqa: E402
from aggregator.pages.models import Page  # noqa: E402
from common import REPO, kept_database, pg_database  # noqa: E402
from koe_directory import load_directory  # noqa: E402
from koe_kit.db import make_engine, session_factory, transaction  # noqa: E402

TOKEN = "bench-read-side-token-" + "t" * 16  # noqa: S105 (a bench token)
SECRET = "bench-read-side-secret-" + "s" * 16  # noqa: S105 (a bench secret)
PASSWORD = "correct horse battery"  # noqa: S105 (a bench password)
ADMIN = "admin@bench.example"


def fill(url: str, pages: int, days: int, today) -> dict[str, float]:
    engine = make_engine(url)
    started = time.perf_counter()
    counts = history.fill(engine, pages, days, today)["daily_counts"]
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
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


def peak_memory(client, path: str) -> int:
    """The most Python heap (tracemalloc) held while `path`'s body streams, in bytes: a
    separate pass from the timed ones, as tracing slows every allocation down."""
    tracemalloc.start()
    try:
        response = client.get(path, buffered=False)
        for _chunk in response.response:
            pass
        response.close()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


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


def signed_in_client(app):
    """A test client of `app` signed in as the bench's admin."""
    client = app.test_client()
    form = client.get("/sign-in").get_data(as_text=True)
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    signed = client.post(
        "/sign-in", data={"email": ADMIN, "password": PASSWORD, "csrf_token": token}
    )
    assert signed.status_code == 303
    return client


CSVS = ("CSV all pages UTF-8", "CSV all pages Shift_JIS")


def run(
    pages: int, days: int, repeat: int, keep: str | None
) -> tuple[dict[str, tuple[float, float, int]], dict[str, int]]:
    """Per screen (median seconds to the first byte, to the last, bytes); per CSV of all
    pages, the peak Python heap while it streams. In a database of its own, or with
    `keep` in the kept one for this N x D."""
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


def bench(
    url: str, pages: int, days: int, repeat: int
) -> tuple[dict[str, tuple[float, float, int]], dict[str, int]]:
    migrate(url)
    settings = bench_settings(url)
    today = datetime.now(settings.timezone).date()
    if filled_before(url):
        refresh(url, today)
        print(f"  N={pages:,}: the kept database {url.rsplit('/', 1)[1]}", flush=True)
    else:
        filled = fill(url, pages, days, today)
        print(
            f"  N={pages:,}: {filled['daily_counts']:,} daily_counts rows, "
            f"{filled['MB']:.0f} MB, filled in {filled['fill_s']:.0f} s, "
            f"rollups built in {filled['rollups_s']:.1f} s",
            flush=True,
        )
    app = create_app(settings)
    sessions = session_factory(app.extensions["koe.engine"])
    with transaction(sessions) as session:
        directory = load_directory(REPO / "divisions.yaml")
        # A kept database has its admin from the run that filled it.
        if session.scalar(select(Account.id).where(Account.email == ADMIN)) is None:
            create_account(session, directory, email=ADMIN, password=PASSWORD, admin=True)
    client = signed_in_client(app)
    one_page = history.page_id(1)
    api = {"Authorization": f"Bearer {TOKEN}"}
    # The cursor after the first page: 100 pages after it at any N (a first 100's cursor
    # is null when N <= 100, as in a smoke run with --pages 50).
    after_first = client.get("/api/v1/pages?limit=1", headers=api).get_json()["next"]
    screens = {
        "page detail": f"/pages/{one_page}",
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
        "CSV one page's days": f"/export/pages/{one_page}/daily.csv",
        "API list (first 100)": "/api/v1/pages",
        "API list (next 100)": f"/api/v1/pages?cursor={after_first}",
        "API page detail": f"/api/v1/pages/{one_page}",
    }
    results = {}
    for name, path in screens.items():
        headers = api if path.startswith("/api/") else None
        results[name] = timed(client, path, repeat, headers)
    memory = {name: peak_memory(client, screens[name]) for name in CSVS}
    # The baseline, in the same run: the pages list summed from the daily rows.
    with transaction(sessions) as session:
        session.execute(update(rollups.rollup_state).values(as_of=today - timedelta(days=1)))
    results["pages list, old way (summed)"] = timed(client, "/pages", repeat)
    app.extensions["koe.engine"].dispose()
    return results, memory


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
    measured = {n: run(n, args.days, args.repeat, args.keep) for n in args.pages}
    by_n = {n: results for n, (results, _memory) in measured.items()}
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
    # Constant memory at any size: the peak stays flat while the CSV grows with N.
    print("\nCSV of all pages, peak Python heap while streaming (tracemalloc):")
    for name in CSVS:
        peaks = "".join(
            f"{f'N={n:,}':>10} {memory[name] / 1e3:>7.0f} KB ({by_n[n][name][2] / 1e6:.1f} MB out)"
            for n, (_results, memory) in measured.items()
        )
        print(f"  {name:<26}{peaks}")


if __name__ == "__main__":
    main()
