"""One source cannot dominate a page's numbers (counting/source_ledger.py), on SQLite and
PostgreSQL:
a flood counts only the cap, replacements keep their slot, and a replay from scratch
gives the same tables whatever the batches and the duplicates."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from aggregator.counting.ingest import handle_batch
from aggregator.counting.models import (
    DailyCount,
    DailyExcess,
    DailyResponse,
    ProcessedEvent,
    SourceCount,
)
from koe_directory import load_directory
from koe_kit.db import transaction

DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")
TOKYO = ZoneInfo("Asia/Tokyo")
PAGE = "u-5f1c9a2d7e3b4c60"
DAY = date(2026, 11, 20)
CAP = 3  # the shipped KOE_COUNT_PER_SOURCE_DAY


def run(sessions, batch, **options):
    with transaction(sessions) as session:
        return handle_batch(session, batch, timezone=TOKYO, directory=DIRECTORY, **options)


def at(day: date, minute: int) -> datetime:
    """A moment of `day` in Tokyo (03:00 JST plus `minute`)."""
    return datetime(day.year, day.month, day.day, 3, tzinfo=TOKYO) + timedelta(minutes=minute)


def page_day(sessions, page_id: str = PAGE, day: date = DAY) -> tuple[int, int, int]:
    """(responses counted, answers "no" to clarity counted, excess) of a page's day."""
    with sessions() as session:
        responses = session.scalar(
            select(DailyResponse.responses).where(
                DailyResponse.page_id == page_id, DailyResponse.day == day
            )
        )
        no = session.scalar(
            select(DailyCount.no).where(
                DailyCount.page_id == page_id,
                DailyCount.day == day,
                DailyCount.question == "clarity",
            )
        )
        excess = session.scalar(
            select(DailyExcess.responses).where(
                DailyExcess.page_id == page_id, DailyExcess.day == day
            )
        )
    return responses or 0, no or 0, excess or 0


def source_row(sessions, source: str, page_id: str = PAGE, day: date = DAY):
    with sessions() as session:
        row = session.get(SourceCount, (page_id, day, source))
        return (row.counted, row.excess) if row else None


def test_a_flood_from_one_source_counts_only_the_cap(sessions, make_feedback, make_source):
    flooder, citizen = make_source("one address"), make_source("a citizen")
    flood = [make_feedback(at(DAY, i), {"clarity": "no"}, source=flooder) for i in range(40)]
    honest = make_feedback(at(DAY, 50), {"clarity": "yes"}, source=citizen)
    # Cut into batches anywhere: the cap holds across them.
    run(sessions, flood[:2])
    run(sessions, flood[2:25] + [honest])
    run(sessions, flood[25:])

    assert page_day(sessions) == (CAP + 1, CAP, 40 - CAP)
    assert source_row(sessions, flooder) == (CAP, 40 - CAP)
    assert source_row(sessions, citizen) == (1, 0)
    with sessions() as session:
        excess = set(session.scalars(select(ProcessedEvent.event_id).where(ProcessedEvent.excess)))
    assert excess == {e["id"] for e in flood[CAP:]}
    # The next day is another day (and, in life, another source): the cap again.
    tomorrow = DAY + timedelta(days=1)
    run(
        sessions,
        [make_feedback(at(tomorrow, i), {"clarity": "no"}, source=flooder) for i in range(5)],
    )
    assert page_day(sessions, day=tomorrow) == (CAP, CAP, 5 - CAP)
    # And the cap is per page: the same source on another page counts there.
    run(sessions, [make_feedback(at(DAY, 60), {"clarity": "no"}, page_id="other", source=flooder)])
    assert page_day(sessions, page_id="other") == (1, 1, 0)


def test_several_sources_and_older_events_all_count(sessions, make_feedback, make_source):
    # Three people behind one carrier NAT, and ten others: all thirteen count.
    shared = make_source("carrier NAT")
    batch = [make_feedback(at(DAY, i), {"clarity": "no"}, source=shared) for i in range(CAP)]
    batch += [
        make_feedback(at(DAY, 10 + i), {"clarity": "no"}, source=make_source(f"citizen {i}"))
        for i in range(10)
    ]
    # Events from before the feedback service stamped sources count as they did.
    batch += [make_feedback(at(DAY, 30 + i), {"clarity": "no"}) for i in range(7)]
    run(sessions, batch)
    assert page_day(sessions) == (20, 20, 0)
    assert source_row(sessions, shared) == (CAP, 0)


def test_a_replacement_takes_the_place_of_the_one_it_replaces(sessions, make_feedback, make_source):
    source = make_source("one address")
    first = [make_feedback(at(DAY, i), {"clarity": "no"}, source=source) for i in range(CAP + 1)]
    run(sessions, first)
    assert page_day(sessions) == (CAP, CAP, 1)

    # A change of mind on a counted one: un-counted, the new one counted in its slot,
    # and the source's count unchanged (no slot spent, none freed).
    changed = make_feedback(at(DAY, 20), {"clarity": "yes"}, source=source, replaces=first[0]["id"])
    # On an excess one: the new one is excess too.
    excess_changed = make_feedback(
        at(DAY, 21), {"clarity": "yes"}, source=source, replaces=first[CAP]["id"]
    )
    run(sessions, [changed, excess_changed])
    run(sessions, [changed, excess_changed])  # delivered again: counted once
    assert page_day(sessions) == (CAP, CAP - 1, 1)
    with sessions() as session:
        yes = session.scalar(select(func.sum(DailyCount.yes)))
    assert yes == 1
    assert source_row(sessions, source) == (CAP, 1)
    # A fifth answer of the source is still beyond the cap.
    run(sessions, [make_feedback(at(DAY, 30), {"clarity": "yes"}, source=source)])
    assert page_day(sessions) == (CAP, CAP - 1, 2)
    assert source_row(sessions, source) == (CAP, 2)


def test_a_replay_from_scratch_gives_the_same_tables(
    sessions, replay_sessions, mixed_history, counting_tables
):
    events = mixed_history()
    rng = random.Random(5)
    # Live: small batches of varying size, with redeliveries (a crash before the offset
    # commit sends a batch again) and duplicates inside batches.
    position = 0
    while position < len(events):
        size = rng.randrange(1, 40)
        batch = events[position : position + size]
        if rng.random() < 0.3:
            batch = batch + batch[: rng.randrange(1, len(batch) + 1)]
        run(sessions, batch)
        if rng.random() < 0.2:
            run(sessions, batch)
        position += size
    live = counting_tables(sessions)
    # Replayed into a new database in one batch and in a page-by-page order (a page's
    # events keep their order on its partition; pages interleave differently).
    by_page = sorted(events, key=lambda e: e["data"]["page_id"])
    run(replay_sessions, by_page)
    replayed = counting_tables(replay_sessions)

    assert replayed == live
    # The history did exercise every path.
    assert live["daily_excess"] and live["excess_events"]
    assert any(e["data"].get("replaces") for e in events)
    for page in live["pages"]:
        assert page[2] in ("正しい題名", "別の題名") and page[5], page
