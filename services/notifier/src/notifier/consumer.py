"""`python -m notifier.consumer`: email the owning division of every alert on koe.alerts.v1.

The same process sends the daily digests, from a thread (notifier.digest), so a
division with `delivery: daily` needs nothing more to run.
"""

from __future__ import annotations

import sys

from sqlalchemy import Engine, inspect

from koe_contract import ALERTS_TOPIC
from koe_kit.config import ConfigError, exit_on_config_error
from koe_kit.db import make_engine
from koe_kit.kafka import ConsumerLoop, DeadLetterPolicy
from koe_kit.logs import setup_logging
from notifier.config import ConsumerSettings, load_consumer_settings
from notifier.digest import DigestStep, DigestThread
from notifier.handler import AlertHandler
from notifier.outgoing import Outgoing


def build_consumer(settings: ConsumerSettings, engine: Engine) -> ConsumerLoop:
    # One policy for both: the loop dead-letters what does not decode, the handler an
    # alert whose email is refused for good.
    dead_letters = DeadLetterPolicy.to_kafka(
        settings.kafka, group_id=settings.consumer_group, topic=ALERTS_TOPIC
    )
    return ConsumerLoop(
        settings.kafka,
        group_id=settings.consumer_group,
        topic=ALERTS_TOPIC,
        handler=AlertHandler(Outgoing.from_settings(settings, engine), dead_letters=dead_letters),
        dead_letters=dead_letters,
    )


def build_digest(settings: ConsumerSettings, engine: Engine) -> DigestThread:
    step = DigestStep(
        Outgoing.from_settings(settings, engine),
        timezone=settings.timezone,
        # The consumers' retry backoff, from seconds to minutes: also right for a digest.
        backoff_initial_s=settings.kafka.retry_backoff_initial_s,
        backoff_max_s=settings.kafka.retry_backoff_max_s,
    )
    return DigestThread(step, settings.digest_check_s)


def main() -> None:
    try:
        settings = load_consumer_settings()
    except ConfigError as exc:
        exit_on_config_error(exc)
    setup_logging("notifier")
    engine = make_engine(settings.database_url)
    if not inspect(engine).has_table("digest_entries"):
        # Without the table every alert would fail; say so once instead of retrying forever.
        print(
            "koe: cannot start, the notifier database is not migrated (no digest_entries table): "
            "run `python -m notifier.migrate` first",
            file=sys.stderr,
        )
        raise SystemExit(2)
    loop = build_consumer(settings, engine)
    loop.install_signal_handlers()
    digest = build_digest(settings, engine).start()
    try:
        loop.run()
    finally:
        digest.close()
        engine.dispose()


if __name__ == "__main__":
    main()
