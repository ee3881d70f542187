"""Retention (retention.py): daily rows past the kept years fold into months and no number
a reader sees changes, replacements, excess and locales included; old periods read as
months; the fold is safe to run twice and in two replicas at once."""

from __future__ import annotations

import random
import re
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from aggregator.counting import rollups
from aggregator.counting.ingest import handle_batch
from aggregator.counting.models import DailyResponse
from aggregator.counting.retention import MonthlyFold, first_kept_day
from aggregator.dashboard.export import daily_rows
from aggregator.pages.models import Page
from aggregator.stats import figures as stats
from aggregator.stats import locale_split
from aggregator.stats.history import MONTHS_OF, table_of
from koe_directory import QUESTION_KEYS, load_directory
from koe_kit.db import transaction

from .conftest import sessions_of
from .test_rollups import signed_in

DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")
TOKYO = ZoneInfo("Asia/Tokyo")
TODAY = date(2026, 12, 6)
NOW = datetime(2026, 12, 6, 12, tzinfo=TOKYO)
FIRST_KEPT = date(2024, 12, 1)  # two years before December 2026, from the month's start
OLD_MONTH_END = date(2024, 6, 30)  # a day whose whole month and all before it fold
PAGES = [f"u-{index:016x}" for index in range(4)]


def fill(sessions, make_feedback, make_source) -> None:
    """Three years of answers, a batch every 11 days as they come: few addresses (so
    excess), changes of mind, two languages; the rollups move with the batches."""
    rng = random.Random(15)
    sent: list[dict] = []
    day = date(2023, 10, 3)
    while day <= TODAY:
        now = datetime(day.year, day.month, day.day, 12, tzinfo=TOKYO)
        batch = []
        for _ in range(30):
            back = rng.choice([0, 0, 1, 3, 8])
            moment = now - timedelta(days=back, minutes=rng.randrange(600))
            answers = {
                q: rng.choice(["yes", "neutral", "no"])
                for q in rng.sample(QUESTION_KEYS, rng.randint(1, 3))
            }
            earlier = rng.choice(sent) if sent and rng.random() < 0.15 else None
            page = earlier["data"]["page_id"] if earlier else rng.choice(PAGES)
            event = make_feedback(
                moment,
                answers,
                page_id=page,
                source=make_source(f"address {rng.randrange(3)}"),
                replaces=earlier["id"] if earlier else None,
                locale=rng.choice(["ja", "ja", "en"]),
            )
            batch.append(event)
        sent += batch
        with transaction(sessions) as session:
            handle_batch(session, batch, timezone=TOKYO, directory=DIRECTORY, now=now)
        day += timedelta(days=11)
    with transaction(sessions) as session:
        rollups.advance(session, TODAY)


def figures(sessions) -> dict:
    """Everything a reader sees of the pages' numbers."""
    with sessions() as session:
        seen: dict = {
            "today": stats.list_pages(session, as_of=TODAY, directory=DIRECTORY, page_ids=PAGES),
            # An old day: its all-time figures cover whole folded months.
            "old all": [
                page["windows"]["all"]
                for page in stats.list_pages(
                    session, as_of=OLD_MONTH_END, directory=DIRECTORY, page_ids=PAGES
                )
            ],
            "rollups": sorted(tuple(row) for row in session.execute(select(rollups.page_rollups))),
        }
        for page in PAGES:
            seen[page] = (
                stats.excess_by_window(session, page, TODAY),
                locale_split.page_locales(session, page, TODAY),
                stats.page_detail(session, page, as_of=TODAY, days=366, directory=DIRECTORY),
            )
    return seen


def rows_before(sessions, day: date) -> dict[str, int]:
    with sessions() as session:
        return {
            daily.__tablename__: session.scalar(
                select(func.count()).select_from(table_of(daily)).where(table_of(daily).c.day < day)
            )
            for daily in MONTHS_OF
        }


def monthly_rows(sessions) -> dict[str, int]:
    with sessions() as session:
        return {
            monthly.__tablename__: session.scalar(select(func.count()).select_from(monthly))
            for monthly in MONTHS_OF.values()
        }


def fold_all(fold: MonthlyFold) -> int:
    moved, more = fold.prune(NOW)
    while more:
        step, more = fold.prune(NOW)
        moved += step
    return moved


def test_folding_changes_no_number(sessions, make_feedback, make_source):
    fill(sessions, make_feedback, make_source)
    before = figures(sessions)
    old = rows_before(sessions, FIRST_KEPT)
    # Every kind of row has days to fold, and the pages have visible figures.
    assert all(old.values()), old
    assert all(page["windows"]["all"]["n"] for page in before["today"])
    assert any(sum(before[page][0].values()) for page in PAGES)  # excess
    assert any("en" in before[page][1] for page in PAGES)

    assert first_kept_day(TODAY, 2) == FIRST_KEPT
    fold = MonthlyFold(sessions, 2, TOKYO, chunk=50, chunks_per_call=2)
    assert fold_all(fold) >= max(old.values())

    assert set(rows_before(sessions, FIRST_KEPT).values()) == {0}
    assert all(monthly_rows(sessions).values())
    with sessions() as session:  # the kept days stay days
        assert session.scalar(select(func.min(DailyResponse.day))) >= FIRST_KEPT
    assert figures(sessions) == before
    # Run again: nothing left to fold, nothing changes.
    assert fold.prune(NOW) == (0, False)
    assert figures(sessions) == before
    # Rollups built afresh (a rebuild, or the first advance) read the months too.
    with transaction(sessions) as session:
        rollups.rebuild(session, TODAY)
    assert figures(sessions) == before


def test_old_periods_read_as_months(sessions, make_feedback, make_source):
    fill(sessions, make_feedback, make_source)
    page = PAGES[0]
    start, end = date(2024, 4, 10), date(2024, 7, 20)

    def totals_per_month() -> dict[str, int]:
        with sessions() as session:
            found: dict[str, int] = {}
            for day, n in session.execute(
                select(DailyResponse.day, DailyResponse.responses).where(
                    DailyResponse.page_id == page,
                    DailyResponse.day.between(date(2024, 4, 1), date(2024, 7, 31)),
                )
            ):
                found[day.strftime("%Y-%m")] = found.get(day.strftime("%Y-%m"), 0) + n
            return found

    per_month = totals_per_month()
    assert len(per_month) == 4
    fold_all(MonthlyFold(sessions, 2, TOKYO, chunk=500))

    with sessions() as session:
        days = (end - start).days + 1
        series = stats.page_detail(session, page, as_of=end, days=days, directory=DIRECTORY)[
            "daily"
        ]
        csv = list(daily_rows(session, page, start, end))
    # One point per month, on its first day, the months that overlap the range whole.
    assert [(p["day"], p.get("period"), p["n"]) for p in series] == [
        (f"{month}-01", "month", n) for month, n in sorted(per_month.items())
    ]
    assert [(row[0], row[1]) for row in csv] == sorted(per_month.items())


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_replicas_fold_at_once(sessions, migrated_url, make_feedback, make_source):
    # PostgreSQL: replicas claim disjoint rows (SQLite lets one writer in at a time).
    fill(sessions, make_feedback, make_source)
    before = figures(sessions)
    replicas = [sessions_of(migrated_url) for _ in range(2)]
    folds = [MonthlyFold(next(r), 2, TOKYO, chunk=20, chunks_per_call=5) for r in replicas]
    moved = [0, 0]
    go = threading.Barrier(2)

    def work(index: int) -> None:
        go.wait()
        moved[index] = fold_all(folds[index])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for replica in replicas:
        next(replica, None)  # dispose of its engine
    assert all(moved), moved  # both did part of the work
    assert set(rows_before(sessions, FIRST_KEPT).values()) == {0}
    assert figures(sessions) == before


def test_a_fold_never_moves_days_the_rollups_have_not_counted(sessions, make_feedback):
    # Rollups last moved on an old day (a consumer down for years) and an answer dated
    # the day after it (a clock ahead): the fold leaves that day in the daily rows, where
    # the next `advance` adds the days after its as_of from.
    now = datetime(2024, 3, 5, 12, tzinfo=TOKYO)
    events = [
        make_feedback(now - timedelta(hours=2), {"clarity": "yes"}),
        make_feedback(now + timedelta(hours=20), {"clarity": "no"}),
    ]
    with transaction(sessions) as session:
        handle_batch(session, events, timezone=TOKYO, directory=DIRECTORY, now=now)
    assert fold_all(MonthlyFold(sessions, 2, TOKYO)) == 1  # 5 March's rows only
    with transaction(sessions) as session:
        rollups.advance(session, TODAY)
    with sessions() as session:
        row = session.execute(select(rollups.page_rollups)).one()._mapping
        assert rollups.tallies(row, "all")[1] == 2


def test_a_quiet_page_leaves_the_default_list_only(city_app, sessions):
    app, city = city_app
    settings = app.extensions["aggregator.settings"]
    today = datetime.now(settings.timezone).date()
    with transaction(sessions) as session:
        page = session.get(Page, city.gomi)
        page.last_seen = datetime.now(UTC) - timedelta(days=settings.page_quiet_days + 1)
    admin = signed_in(app, city.admin, city.password)

    def listed(query: str = "") -> tuple[set[str], str]:
        body = admin.get(f"/pages?{query}").get_data(as_text=True)
        quiet = re.search(r'<p class="meta" id="quiet">(.*?)</p>', body, re.S)
        return set(re.findall(r'data-page-id="([^"]+)"', body)), quiet.group(1) if quiet else ""

    for rolled_up in (False, True):  # summed from the daily rows, then from the rollups
        if rolled_up:
            with transaction(sessions) as session:
                rollups.rebuild(session, today)
        pages, note = listed()
        assert city.dx in pages and city.gomi not in pages
        assert "1ページ" in note and "365日以上回答がない" in note
        assert city.gomi in listed("quiet=1")[0]
        assert city.gomi in listed("q=ごみ")[0]  # a search finds it
        assert listed("quiet=1")[1] == ""
    assert admin.get(f"/pages/{city.gomi}").status_code == 200
