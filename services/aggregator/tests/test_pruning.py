"""Pruning processed_events on SQLite and PostgreSQL: old ids go, in chunks, and nothing
Kafka can still deliver (again, or as the response a later one replaces) is forgotten;
source_counts rows go once no alert reads their day, and the counts stay; failed
sign-ins go once the throttle no longer reads them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from aggregator.accounts.models import SignInFailure
from aggregator.config import load_settings
from aggregator.counting.ingest import handle_batch
from aggregator.counting.models import (
    DailyCount,
    DailyExcess,
    DailyResponse,
    ProcessedEvent,
    SourceCount,
)
from aggregator.counting.pruning import (
    ProcessedPruner,
    SignInFailurePruner,
    SourcePruner,
    shortest_keep_days,
)
from aggregator.pages.models import Page
from koe_contract import FEEDBACK_TOPIC
from koe_directory import load_directory
from koe_kit.config import ConfigError
from koe_kit.db import transaction

DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")

NOW = datetime.now(UTC).replace(microsecond=0)
# What Settings() would be without a KOE_PROCESSED_KEEP_DAYS: from schemas/topics.yaml.
KEEP_DAYS = load_settings({}).processed_keep_days
SOURCE_KEEP_DAYS = load_settings({}).source_keep_days
SHORTEST = shortest_keep_days(FEEDBACK_TOPIC)


def count(sessions, events, processed_at: datetime):
    with transaction(sessions) as session:
        return handle_batch(
            session,
            events,
            timezone=ZoneInfo("Asia/Tokyo"),
            directory=DIRECTORY,
            now=processed_at,
        )


def remembered(sessions) -> set[str]:
    with sessions() as session:
        return set(session.scalars(select(ProcessedEvent.event_id)))


def answers_and_responses(sessions) -> tuple[int, int]:
    with sessions() as session:
        answers = session.scalar(select(func.sum(DailyCount.yes + DailyCount.neutral)))
        responses = session.scalar(select(func.sum(DailyResponse.responses)))
    return answers, responses


def pruned_total() -> float:
    return REGISTRY.get_sample_value("koe_aggregator_processed_events_pruned_total") or 0.0


def test_the_keep_days_cover_what_the_topic_can_deliver_and_start_up_refuses_less():
    # 30 days of retention (topics.yaml) + 7 for Kafka's whole-segment deletion + 1.
    assert (SHORTEST, KEEP_DAYS) == (37, 38)
    assert load_settings({"KOE_PROCESSED_KEEP_DAYS": "37"}).processed_keep_days == 37
    for short in ("30", "36"):
        with pytest.raises(ConfigError, match=r"KOE_PROCESSED_KEEP_DAYS='3\d' is invalid"):
            load_settings({"KOE_PROCESSED_KEEP_DAYS": short})


def test_ids_past_the_keep_days_are_forgotten_in_chunks_and_the_stats_stay(sessions, make_feedback):
    old = [make_feedback(NOW - timedelta(days=45), {"clarity": "yes"}) for _ in range(25)]
    recent = [make_feedback(NOW - timedelta(days=3), {"clarity": "neutral"}) for _ in range(5)]
    count(sessions, old, NOW - timedelta(days=KEEP_DAYS, minutes=1))
    count(sessions, recent, NOW - timedelta(days=KEEP_DAYS - 1))
    before = pruned_total()

    pruner = ProcessedPruner(sessions, KEEP_DAYS, chunk=4, chunks_per_call=3)
    # A call deletes at most 3 chunks of 4 and says whether more may be left.
    assert pruner.prune(NOW) == (12, True)
    assert pruner.prune(NOW) == (12, True)
    assert pruner.prune(NOW) == (1, False)
    assert pruner.prune(NOW) == (0, False)

    assert remembered(sessions) == {e["id"] for e in recent}
    assert pruned_total() - before == 25
    # Only the ids go: every answer and response counted stays counted.
    assert answers_and_responses(sessions) == (30, 30)


def test_an_event_the_topic_can_still_deliver_counts_once_after_a_prune(sessions, make_feedback):
    # Counted 36½ days ago: past the topic's retention, but its segment may not be deleted
    # yet (Kafka deletes a segment once its newest record is past the retention), so a
    # group whose offsets expired can read it again.
    batch = [make_feedback(NOW - timedelta(days=37), {"clarity": "yes"}) for _ in range(10)]
    count(sessions, batch, NOW - timedelta(days=36, hours=12))

    ProcessedPruner(sessions, SHORTEST).prune(NOW)
    result = count(sessions, batch, NOW)

    assert (result.counted, result.skipped) == (0, 10)
    assert answers_and_responses(sessions) == (10, 10)


def test_a_response_counted_just_inside_the_keep_days_can_still_be_replaced(
    sessions, make_feedback
):
    # The latest the replacing one can be counted (pruning.py): the earlier one was
    # counted KEEP_DAYS - 1 hour ago and the replacement is read only now.
    first = make_feedback(NOW - timedelta(days=KEEP_DAYS), {"clarity": "yes"})
    count(sessions, [first], NOW - timedelta(days=KEEP_DAYS) + timedelta(hours=1))
    second = make_feedback(
        NOW - timedelta(days=KEEP_DAYS) + timedelta(minutes=20), {"clarity": "neutral"}
    )
    second["data"]["replaces"] = first["id"]

    ProcessedPruner(sessions, KEEP_DAYS).prune(NOW)
    count(sessions, [second], NOW)

    with sessions() as session:
        yes, neutral = session.execute(
            select(func.sum(DailyCount.yes), func.sum(DailyCount.neutral))
        ).one()
    assert (yes, neutral) == (0, 1)
    assert answers_and_responses(sessions) == (1, 1)


def test_sources_past_their_keep_days_are_forgotten_and_the_counts_stay(
    sessions, make_feedback, make_source
):
    tokyo = ZoneInfo("Asia/Tokyo")
    today = NOW.astimezone(tokyo).date()
    # Kept: the days the alerts read. Forgotten: the days before them.
    for age in (SOURCE_KEEP_DAYS + 30, SOURCE_KEEP_DAYS + 1, SOURCE_KEEP_DAYS, 0):
        day = datetime(*(today - timedelta(days=age)).timetuple()[:3], 12, tzinfo=tokyo)
        # Three sources; the first sends four more, of which two are beyond its cap of 3.
        batch = [
            make_feedback(day, {"clarity": "yes"}, source=make_source(f"{age} {n}"))
            for n in range(3)
        ]
        batch += [
            make_feedback(day, {"clarity": "no"}, source=make_source(f"{age} 0")) for _ in range(4)
        ]
        count(sessions, batch, NOW)
    before = REGISTRY.get_sample_value("koe_aggregator_source_counts_pruned_total") or 0.0

    pruner = SourcePruner(sessions, SOURCE_KEEP_DAYS, tokyo, chunk=4, chunks_per_call=1)
    assert pruner.prune(NOW) == (4, True)
    assert pruner.prune(NOW) == (2, False)

    with sessions() as session:
        days = set(session.scalars(select(SourceCount.day)))
        excess = session.scalar(select(func.sum(DailyExcess.responses)))
        pages_sources = session.scalar(select(Page.sources))
    assert days == {today - timedelta(days=SOURCE_KEEP_DAYS), today}
    assert (
        REGISTRY.get_sample_value("koe_aggregator_source_counts_pruned_total") or 0
    ) - before == 6
    # Counts, excess and the page's sources stay: each day 3 "yes" and 5 responses
    # counted, 2 excess, 3 sources.
    assert answers_and_responses(sessions) == (4 * 3, 4 * 5)
    assert excess == 4 * 2
    assert pages_sources == 4 * 3


def test_the_source_keep_days_cover_the_alert_windows_and_start_up_refuses_less():
    assert SOURCE_KEEP_DAYS == 100
    # The detector's chart reads 28 days (KOE_DETECTOR_SPAN_DAYS).
    assert load_settings({"KOE_SOURCE_KEEP_DAYS": "28"}).source_keep_days == 28
    with pytest.raises(ConfigError, match="KOE_SOURCE_KEEP_DAYS='27' is invalid"):
        load_settings({"KOE_SOURCE_KEEP_DAYS": "27"})
    # A longer chart needs longer memory.
    longer = {"KOE_DETECTOR_SPAN_DAYS": "60", "KOE_SOURCE_KEEP_DAYS": "59"}
    with pytest.raises(ConfigError, match="KOE_SOURCE_KEEP_DAYS"):
        load_settings(longer)


def test_failed_sign_ins_are_forgotten_once_the_throttle_window_is_over(sessions):
    # A failure is needed for the throttle's 15 minutes only, even when nobody tries
    # again (the web app deletes old ones only at the next failure).
    with transaction(sessions) as session:
        session.add_all(
            SignInFailure(key=f"client:{n}", at=NOW - timedelta(minutes=minutes))
            for n, minutes in enumerate((60 * 24 * 30, 16, 15, 14, 0))
        )
    assert SignInFailurePruner(sessions, chunk=2, chunks_per_call=1).prune(NOW) == (2, True)
    assert SignInFailurePruner(sessions).prune(NOW) == (1, False)
    with sessions() as session:
        assert set(session.scalars(select(SignInFailure.key))) == {"client:3", "client:4"}
