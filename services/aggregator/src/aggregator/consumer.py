"""`python -m aggregator.consumer`: count feedback events and publish drop alerts.

Consumer group `aggregator` (KOE_CONSUMER_GROUP) on koe.feedback.submitted.v1;
poison goes to koe.feedback.submitted.dlq.v1. One DB transaction per batch; the
loop commits offsets only after it, then the outbox publisher sends new alerts; once a
city day the daily sweep judges the completed days of pages that got no answers since
(daily_sweep.py), when idle it reports edits whose four weeks are over (edits/), and now
and then the pruners forget events Kafka can no longer deliver again and sources no alert
reads any more, and daily rows past KOE_DAILY_KEEP_YEARS fold into months (retention.py).
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from aggregator.alerts.daily_sweep import DailySweep
from aggregator.alerts.outbox import OutboxPublisher
from aggregator.config import ConsumerSettings, Settings, load_consumer_settings, read_divisions
from aggregator.counting import rollups
from aggregator.counting.ingest import handle_batch
from aggregator.counting.pruning import ProcessedPruner, SignInFailurePruner, SourcePruner
from aggregator.counting.retention import MonthlyFold
from aggregator.edits.reports import EditReports
from koe_contract import FEEDBACK_TOPIC
from koe_directory import Directory
from koe_kit.config import ConfigError, exit_on_config_error
from koe_kit.db import make_engine, session_factory, transaction
from koe_kit.kafka import ConsumerLoop, Message, Retryable, make_producer, wait_for_kafka
from koe_kit.logs import setup_logging

log = logging.getLogger(__name__)


class BatchHandler:
    """The ConsumerLoop handler: one transaction per batch, idempotent by event id."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        directory: Directory,
        publisher: OutboxPublisher | None = None,
    ):
        self.sessions = sessions
        self.settings = settings
        self.directory = directory
        self.publisher = publisher

    def __call__(self, messages: list[Message]) -> None:
        try:
            with transaction(self.sessions) as session:
                result = handle_batch(
                    session,
                    [m.event for m in messages],
                    timezone=self.settings.timezone,
                    directory=self.directory,
                    per_source_day=self.settings.count_per_source_day,
                    page_min_sources=self.settings.page_min_sources,
                    crowd=self.settings.crowd_rule,
                    detector=self.settings.detector,
                    max_age_days=self.settings.alert_max_age_days,
                )
        except IntegrityError as exc:
            # Another member (mid-rebalance) counted some of these events first;
            # the retry's SELECT sees them and skips them.
            raise Retryable(f"concurrent insert: {exc.orig}") from exc
        if result.alerts and self.publisher is not None:
            self.publisher.note_pending()
        log.debug("batch counted", extra={"counted": result.counted, "skipped": result.skipped})


def build_loop(
    settings: ConsumerSettings, publisher: OutboxPublisher | None = None
) -> tuple[ConsumerLoop, OutboxPublisher]:
    """The loop and its publisher; the caller calls `publisher.close()` after run().
    Raise ConfigError when divisions.yaml cannot be read."""
    directory = read_divisions(settings)
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    if publisher is None:
        # Do not hold the loop for minutes when the broker is away: the outbox keeps
        # the alert. A send that fails must also leave the producer's buffer (delivery
        # timeout below the publisher's wait), or it would linger until close().
        producer = make_producer(
            settings.kafka,
            max_block_ms=10_000,
            request_timeout_ms=10_000,
            delivery_timeout_ms=20_000,
        )
        publisher = OutboxPublisher(sessions, producer)
    pruners = [
        ProcessedPruner(sessions, settings.processed_keep_days),
        SourcePruner(sessions, settings.source_keep_days, settings.timezone),
        SignInFailurePruner(sessions),
        MonthlyFold(sessions, settings.daily_keep_years, settings.timezone),
    ]

    daily_sweep = DailySweep(
        sessions,
        settings.detector,
        max_age_days=settings.alert_max_age_days,
        timezone=settings.timezone,
        directory=directory,
        crowd=settings.crowd_rule,
        grace=settings.sweep_grace,
    )

    def sweep() -> None:
        if daily_sweep():
            publisher.note_pending()

    edit_reports = EditReports(
        sessions,
        timezone=settings.timezone,
        max_age_days=settings.alert_max_age_days,
        directory=directory,
    )

    rolled_up: list[date] = []  # the day the rollups were last advanced to, once known

    def advance_rollups() -> None:
        # After midnight with no answers coming the 7d and 28d windows still move
        # (rollups.py); readers sum the daily rows until they have.
        today = datetime.now(settings.timezone).date()
        if rolled_up[-1:] != [today]:
            try:
                with transaction(sessions) as session:
                    rollups.advance(session, today)
            except OperationalError as exc:
                log.warning("rollups not advanced, will retry", extra={"error": str(exc)[:300]})
                return
            rolled_up[:] = [today]

    def after_commit() -> None:
        # Outside the batch's transaction: neither holds the batch's locks any longer.
        sweep()
        publisher()
        for prune in pruners:
            prune()

    def on_idle() -> None:
        sweep()
        if edit_reports():
            publisher.note_pending()
        publisher.recheck()
        advance_rollups()
        # A quiet consumer folds too; each pruner works at most once per its interval.
        for prune in pruners:
            prune()

    loop = ConsumerLoop(
        settings.kafka,
        group_id=settings.consumer_group,
        topic=FEEDBACK_TOPIC,
        handler=BatchHandler(sessions, settings, directory, publisher),
        after_commit=after_commit,
        on_idle=on_idle,
    )
    return loop, publisher


def main() -> None:
    try:
        settings = load_consumer_settings()
    except ConfigError as exc:
        exit_on_config_error(exc)
    setup_logging("aggregator")
    # Before build_loop: its alert producer would otherwise wait 30 s for a broker
    # still starting, then die with a traceback.
    wait_for_kafka(settings.kafka)
    try:
        loop, publisher = build_loop(settings)
    except ConfigError as exc:
        exit_on_config_error(exc)
    loop.install_signal_handlers()
    try:
        loop.run()
    finally:
        publisher.close()


if __name__ == "__main__":
    main()
