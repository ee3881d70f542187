"""For the widget's cross-service tests: one koe stack for a whole test module (starting
one costs seconds), and what those tests check in it.

The databases are PostgreSQL databases made for the module, or SQLite files as
`make run` has them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from feedback.models import Response
from koe_devkit.local_broker import LocalBroker, free_port
from koe_devkit.local_stack import TANSU_TIMINGS, LocalStack
from koe_devkit.smtp_sink import SmtpSink
from koe_devkit.testing import postgres_databases, wait_until
from koe_kit import events
from koe_kit.db import make_engine
from koe_kit.kafka import read_topic
from support import LIFTED_BUDGETS, SITE, Koe, stack_env

TOPIC = "koe.feedback.submitted.v1"


@contextmanager
def module_koe(
    var_dir: Path,
    pg_admin: Any,
    *,
    sqlite: bool = False,
    also_allowed: tuple[str, ...] = (),
    **extra: str,
) -> Iterator[Koe]:
    """koe running until the block ends, set up as `koe_factory` does (support.stack_env)
    but for a module; its own origin is an allowed site (it serves /demo), and the
    spam rules have their defaults unless `extra` says otherwise."""
    broker = LocalBroker(log_path=var_dir.parent / "broker.log").start()
    sink = SmtpSink(directory=var_dir.parent / "mail").start()
    feedback_port = free_port()
    own = {
        "KOE_FEEDBACK_PORT": str(feedback_port),
        "KOE_ALLOWED_ORIGINS": ",".join([SITE, f"http://127.0.0.1:{feedback_port}", *also_allowed]),
    }
    if sqlite:  # the databases `make run` uses
        own |= {
            f"{service.upper()}_DATABASE_URL": f"sqlite:///{var_dir / service}.db"
            for service in ("feedback", "aggregator", "notifier")
        }
    timings = {**TANSU_TIMINGS, "KOE_BATCH_MAX_WAIT_MS": "100"}
    with postgres_databases(pg_admin, prefix="koe_widget") as new_database:
        env = stack_env(broker, sink, new_database, timings, **(own | extra))
        for name in LIFTED_BUDGETS.keys() - extra.keys():
            del env[name]  # the defaults, as a city runs them
        stack = LocalStack.from_env(env, var_dir)
        try:
            stack.start_infrastructure()
            stack.start_all()
            yield Koe(stack)
        finally:
            stack.stop()
            sink.stop()
            broker.stop()
            for log in sorted((var_dir / "log").glob("*.log")):
                print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-2000:]}")


def stored_responses(koe: Koe, page_id: str) -> list[Any]:
    """The page's rows in the feedback database, oldest first."""
    engine = make_engine(koe.stack.service_env("feedback")["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(
                    select(Response)
                    .where(Response.page_id == page_id)
                    .order_by(Response.received_at)
                )
            )
    finally:
        engine.dispose()


def published(koe: Koe, page_id: str) -> list[dict]:
    """The page's events on the topic, each decoded and checked against its schema."""
    records = read_topic([koe.stack.env["KAFKA_BOOTSTRAP_SERVERS"]], TOPIC)
    decoded = [events.decode(record.value) for record in records]
    return [event for event in decoded if event["subject"] == page_id]


def wait_published(koe: Koe, response_id: str) -> dict:
    """The event of one response, once the relay has put it on the topic."""

    def found() -> dict | None:
        records = read_topic([koe.stack.env["KAFKA_BOOTSTRAP_SERVERS"]], TOPIC)
        return next(
            (e for r in records if (e := events.decode(r.value))["id"] == response_id), None
        )

    return wait_until(found, what=f"response {response_id} on {TOPIC}")  # type: ignore[return-value]


def page_stats(koe: Koe, page_id: str) -> dict | None:
    """The page's all-time figures from the stats API (n and per question), or None."""
    answer = koe.stats(f"/api/v1/pages/{page_id}")
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return answer.json()["windows"]["all"]


def answers_counted(figures: dict) -> dict[str, tuple[int, int, int]]:
    return {
        q: (t["yes"], t["neutral"], t["no"])
        for q, t in figures["questions"].items()
        if t["yes"] + t["neutral"] + t["no"]
    }
