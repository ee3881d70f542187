"""The listing's rollups (rollups.py) hold exactly what summing the daily rows gives,
as batches come (excess and replacements too) and as the days pass."""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from aggregator.accounts.models import Account
from aggregator.counting import rollups
from aggregator.counting.ingest import handle_batch
from aggregator.counting.models import (
    DailyCount,
    DailyLocaleCount,
    DailyLocaleResponse,
    DailyResponse,
)
from aggregator.dashboard import funnel_plots, page_list
from aggregator.dashboard.funnel_plots import MAX_OUTLIERS
from aggregator.pages.models import Page
from aggregator.stats import figures as stats
from aggregator.stats.scoring import WINDOWS, Tally
from koe_directory import QUESTION_KEYS, load_directory
from koe_kit.db import transaction

DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")
TOKYO = ZoneInfo("Asia/Tokyo")
START = date(2026, 9, 1)
PAGES = [f"u-{index:016x}" for index in range(6)]


def run(sessions, batch, now: datetime):
    with transaction(sessions) as session:
        handle_batch(session, batch, timezone=TOKYO, directory=DIRECTORY, now=now)


LOCALES = ("ja", "en", "pt")


def from_daily_rows(
    session, as_of: date, locale: str | None = None
) -> dict[str, dict[str, tuple[dict[str, Tally], int]]]:
    """page -> window -> (tallies, responses), as stats/figures.py sums them from the daily rows
    (of one language's answers, with a `locale`)."""
    tallies = stats._window_tallies(session, as_of, page_ids=PAGES, locale=locale)
    responses = stats._window_responses(session, as_of, page_ids=PAGES, locale=locale)
    return {
        page: {
            w: (
                {q: tallies.get(page, {}).get(w, {}).get(q, Tally()) for q in QUESTION_KEYS},
                responses.get(page, {}).get(w, 0),
            )
            for w in WINDOWS
        }
        for page in PAGES
    }


def from_rollups(
    session, locale: str | None = None
) -> dict[str, dict[str, tuple[dict[str, Tally], int]]]:
    query = select(rollups.table_for(locale))
    if locale is not None:
        query = query.where(rollups.page_locale_rollups.c.locale == locale)
    rows = {row.page_id: rollups.zero_if_missing(row._mapping) for row in session.execute(query)}
    empty = dict.fromkeys(rollups.COLUMNS, 0)
    return {page: {w: rollups.tallies(rows.get(page, empty), w) for w in WINDOWS} for page in PAGES}


def assert_rollups_match(sessions, as_of: date) -> None:
    with sessions() as session:
        assert rollups.current_day(session) == as_of
        expected = from_daily_rows(session, as_of)
        assert from_rollups(session) == expected
        for locale in LOCALES:
            in_locale = from_daily_rows(session, as_of, locale)
            assert from_rollups(session, locale) == in_locale
            # Not a comparison of zeros with zeros.
            assert any(in_locale[page]["all"][1] for page in PAGES)
    assert any(expected[page]["all"][1] for page in PAGES)


def test_rollups_equal_the_daily_rows_sums(sessions, make_feedback, make_source):
    rng = random.Random(13)
    sent: list[dict] = []
    for offset in range(0, 70, 3):
        today = START + timedelta(days=offset)
        now = datetime(today.year, today.month, today.day, 12, tzinfo=TOKYO).astimezone(UTC)
        batch = []
        for _ in range(25):
            # Mostly recent days, some old ones (late deliveries) and some of tomorrow
            # (a clock ahead: in no window until its day comes).
            day = today - timedelta(days=rng.choice([0, 0, 1, 2, 5, 9, 20, 40, -1]))
            moment = datetime(day.year, day.month, day.day, 10, rng.randrange(60), tzinfo=TOKYO)
            answers = {
                q: rng.choice(["yes", "neutral", "no"])
                for q in rng.sample(QUESTION_KEYS, rng.randint(1, 3))
            }
            # Few sources, so some pass the cap (excess); some change their mind.
            source = make_source(f"address {rng.randrange(4)}")
            replaces = rng.choice(sent)["id"] if sent and rng.random() < 0.2 else None
            page = rng.choice(PAGES)
            if replaces is not None:
                page = next(e for e in sent if e["id"] == replaces)["data"]["page_id"]
            event = make_feedback(
                moment,
                answers,
                page_id=page,
                source=source,
                replaces=replaces,
                locale=rng.choice(LOCALES),
            )
            batch.append(event)
        sent += batch
        run(sessions, batch + batch[:3], now)  # a few delivered twice
        assert_rollups_match(sessions, today)
        with sessions() as session:
            assert any(from_rollups(session)[page]["7d"][1] for page in PAGES)

    # Days pass without answers: the idle tick moves the windows.
    for later in (1, 6, 7, 27, 28, 400):
        today = START + timedelta(days=69 + later)
        with transaction(sessions) as session:
            rollups.advance(session, today)
        assert_rollups_match(sessions, today)
    with sessions() as session:
        assert from_rollups(session)[PAGES[0]]["7d"][1] == 0


def test_rebuild_from_daily_rows_alone(sessions, make_feedback, make_source):
    today = START + timedelta(days=30)
    now = datetime(today.year, today.month, today.day, 12, tzinfo=TOKYO)
    events = [
        make_feedback(
            datetime(d.year, d.month, d.day, 9, tzinfo=TOKYO),
            {"clarity": "yes", "usefulness": "no"},
            page_id=PAGES[i % 3],
            source=make_source(f"s{i}"),
            locale=LOCALES[i % 4 % 3],
        )
        for i, d in enumerate(today - timedelta(days=k) for k in range(0, 60, 2))
    ]
    run(sessions, events, now)
    with transaction(sessions) as session:
        rollups.rebuild(session, today)
    assert_rollups_match(sessions, today)


def signed_in(app, email: str, password: str):
    client = app.test_client()
    form = client.get("/sign-in").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    data = {"email": email, "password": password, "csrf_token": token}
    assert client.post("/sign-in", data=data).status_code == 303
    return client


def _table_of(client, query: str) -> str:
    """The pages list's table and result-page count, as a clerk or admin reads it."""
    body = client.get(f"/pages?{query}").get_data(as_text=True)
    table = re.search(r'<table class="pages">.*?</table>', body, re.S)
    count = re.search(r'<p class="meta">.*?</p>', body, re.S)
    return (table.group(0) if table else "") + count.group(0)


def _other_screens(client) -> tuple[str, ...]:
    """The overview's plots and tables, and the CSV of all pages in both encodings."""
    overview = client.get("/overview?window=7d").get_data(as_text=True)
    return (
        re.search(r"<main.*</main>", overview, re.S).group(0),
        client.get("/export/pages.csv").get_data(as_text=True),
        client.get("/export/pages.csv?encoding=shift_jis").get_data().decode("cp932"),
    )


def split_by_language(sessions) -> None:
    """The seeded city's daily rows in the per-language tables: one day in three English."""
    with transaction(sessions) as session:

        def locale(row) -> str:
            return "en" if (row.day.toordinal() + len(row.page_id)) % 3 == 0 else "ja"

        for row in session.scalars(select(DailyCount)).all():
            session.add(
                DailyLocaleCount(
                    page_id=row.page_id,
                    day=row.day,
                    locale=locale(row),
                    question=row.question,
                    yes=row.yes,
                    neutral=row.neutral,
                    no=row.no,
                )
            )
        for row in session.scalars(select(DailyResponse)).all():
            session.add(
                DailyLocaleResponse(
                    page_id=row.page_id, day=row.day, locale=locale(row), responses=row.responses
                )
            )


def test_the_pages_list_reads_the_same_from_rollups(city_app, sessions):
    app, city = city_app
    queries = [
        f"sort={sort}&order={order}&window={window}"
        for sort in ("score", "n", "title")
        for order in ("asc", "desc")
        for window in WINDOWS
    ] + ["division=somu-dx", "department=環境部", "q=DX", "q=gomi&sort=n", "p=2", "p=99"]
    # The language filter: English on some days of some pages, no page in Portuguese.
    queries += [
        "locale=en",
        "locale=ja&sort=n&order=desc",
        "locale=en&sort=score&order=desc&window=7d",
        "locale=ja&sort=title&division=somu-dx",
        "locale=pt",
    ]
    split_by_language(sessions)
    clients = [signed_in(app, email, city.password) for email in (city.admin, city.somu)]
    today = datetime.now(app.extensions["aggregator.settings"].timezone).date()
    with sessions() as session:
        assert rollups.current_day(session) is None  # seeded straight into the daily rows
    summed = {(i, q): _table_of(c, q) for i, c in enumerate(clients) for q in queries}
    summed |= {(i, "other"): _other_screens(c) for i, c in enumerate(clients)}
    with transaction(sessions) as session:
        rollups.rebuild(session, today)
    with sessions() as session:
        assert page_list.current(session, today)  # the list now reads the rollups
    rolled = {(i, q): _table_of(c, q) for i, c in enumerate(clients) for q in queries}
    rolled |= {(i, "other"): _other_screens(c) for i, c in enumerate(clients)}
    assert rolled == summed
    assert "data-page-id" in summed[0, queries[0]]
    assert "data-page-id" in summed[0, "locale=en"]
    assert "data-page-id" not in summed[0, "locale=pt"]
    assert city.dx in summed[0, "other"][1]


def test_a_big_citys_overview_draws_outliers_and_a_density(city_app, sessions):
    app, city = city_app
    today = datetime.now(app.extensions["aggregator.settings"].timezone).date()
    seen = datetime(2026, 1, 1, tzinfo=UTC)
    many = 400
    with transaction(sessions) as session:
        for index in range(many):
            page_id = f"u-b{index:015x}"
            url = f"https://www.info.city.tsu.mie.jp/kurashi/gomi/big{index}.html"
            session.add(Page(id=page_id, url=url, visible=True, first_seen=seen, last_seen=seen))
            # Mostly around 60 %, every 25th page far below: the outliers.
            n = 10 + index % 30
            yes = n // 10 if index % 25 == 0 else round(0.6 * n)
            for question in QUESTION_KEYS:
                session.add(
                    DailyCount(
                        page_id=page_id,
                        day=today,
                        question=question,
                        yes=yes,
                        neutral=0,
                        no=n - yes,
                    )
                )
            session.add(DailyResponse(page_id=page_id, day=today, responses=n))
        rollups.rebuild(session, today)
    client = signed_in(app, city.admin, city.password)
    overview = client.get("/overview?window=7d").get_data(as_text=True)
    dots = re.findall(r'<circle [^>]*data-page-id="([^"]+)"', overview)
    assert 3 * (many // 25) <= len(dots) <= 3 * MAX_OUTLIERS
    assert {f"u-b{i:015x}" for i in range(0, many, 25)} <= set(dots)
    assert 'class="density"' in overview
    assert "全ページの表" in overview and "table=all" in overview
    assert len(overview.encode()) < 300_000
    # The full table lists every answered page once per question.
    full = client.get("/overview?window=7d&table=all").get_data(as_text=True)
    listed = re.findall(r'<tr data-page-id="([^"]+)" data-status', full)
    assert len([p for p in listed if p.startswith("u-b")]) == 3 * many


def _drawn(plots: dict) -> dict:
    """What a funnel plot shows, with each page by its id (the two sources carry pages
    as different dicts)."""

    def entry(e: dict) -> tuple:
        return e["page"]["id"], e["n"], e["score"], e["status"]

    shown = {}
    for question, plot in plots.items():
        if plot is None:
            shown[question] = None
            continue
        chart = plot["chart"]
        shown[question] = {
            "ref": plot["ref"],
            "chart": dataclasses.replace(chart, dots=[]),
            "dots": [(d.x, d.y, entry(d.item)) for d in chart.dots],
            "entries": [entry(e) for e in plot["entries"]],
            "dense": plot["dense"],
        }
    return shown


def test_the_funnel_plots_binned_from_grouped_rollups_equal_those_from_every_page(sessions):
    """The overview groups the tallies in SQL (funnel_plots.RolledUp) where it summed
    each page's figures in Python (funnel_plots.Summed): the same limits, dots, rows and
    density cells, for an admin and a clerk, in every window, with the full table too."""
    today = date(2026, 11, 30)
    seen = datetime(2026, 1, 1, tzinfo=UTC)
    prefixes = [
        "https://www.info.city.tsu.mie.jp/shisei/dx/",
        "https://www.info.city.tsu.mie.jp/kurashi/gomi/",
        "https://www.info.city.tsu.mie.jp/kosodate/",
    ]
    draw = random.Random(13)
    many = 700  # beyond funnel_plots.MAX_DOTS: outliers and a density
    with transaction(sessions) as session:
        for index in range(many):
            page_id = f"u-f{index:015x}"
            url = f"{prefixes[index % 3]}p{index}.html"
            session.add(Page(id=page_id, url=url, visible=True, first_seen=seen, last_seen=seen))
            # A long tail, a few pages far from the rest, small tallies tied on purpose.
            scale = 1 + int(draw.paretovariate(1.2))
            odds = 0.05 if index % 3 == 0 else 0.6
            for back in draw.sample(range(60), k=draw.randint(1, 4)):
                day = today - timedelta(days=back)
                n = draw.randint(1, 3) * scale
                session.add(DailyResponse(page_id=page_id, day=day, responses=n))
                for question in QUESTION_KEYS:
                    yes = sum(draw.random() < odds for _ in range(n))
                    neutral = draw.randint(0, n - yes)
                    session.add(
                        DailyCount(
                            page_id=page_id,
                            day=day,
                            question=question,
                            yes=yes,
                            neutral=neutral,
                            no=n - yes - neutral,
                        )
                    )
    admin = Account(email="a@example.jp", is_admin=True)
    clerk = Account(email="c@example.jp", division="kankyo-gomi")

    def plots_of(session, window: str, full_table: bool) -> tuple[str, dict]:
        figures = funnel_plots.figures_for(session, DIRECTORY, account, today, window)
        drawn = funnel_plots.plots(figures, QUESTION_KEYS, full_table=full_table)
        return type(figures).__name__, _drawn(drawn)

    cases = [(a, w, t) for a in (admin, clerk) for w in WINDOWS for t in (False, True)]
    summed, rolled = {}, {}
    with sessions() as session:
        for account, window, full_table in cases:
            kind, summed[account.email, window, full_table] = plots_of(session, window, full_table)
            assert kind == "Summed"
    with transaction(sessions) as session:
        rollups.rebuild(session, today)
    with sessions() as session:
        for account, window, full_table in cases:
            kind, rolled[account.email, window, full_table] = plots_of(session, window, full_table)
            assert kind == "RolledUp"
    assert rolled == summed
    big = summed["a@example.jp", "all", False]["clarity"]
    assert len(big["dots"]) == funnel_plots.MAX_OUTLIERS and big["chart"].cells  # cut
    assert big["dense"] + len(big["dots"]) == many
    assert sum(cell[4] for cell in big["chart"].cells) == big["dense"]
    clerks = summed["c@example.jp", "all", True]["clarity"]["entries"]
    assert len(clerks) == len(range(1, many, 3))  # the clerk's division's pages only
