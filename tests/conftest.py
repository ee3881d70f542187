"""Cross-service fixtures: the whole of koe as real subprocesses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from koe_devkit.local_stack import LocalStack
from support import Koe, stack_env


@pytest.fixture
def koe_factory(broker, smtp_server, new_pg_database, fast_kafka_env, tmp_path) -> Iterator:
    """Start koe with extra settings: `koe = koe_factory(KOE_BATCH_MAX_MESSAGES="20")`."""
    stacks: list[LocalStack] = []

    def start(**extra: str) -> Koe:
        stack = LocalStack.from_env(
            stack_env(broker, smtp_server, new_pg_database, fast_kafka_env, **extra),
            tmp_path / "var",
        )
        stacks.append(stack)
        stack.start_infrastructure()
        stack.start_all()
        return Koe(stack)

    yield start
    for stack in stacks:
        stack.stop()
        for log in sorted((tmp_path / "var" / "log").glob("*.log")):
            tail = log.read_text(errors="replace")[-3000:]
            print(f"--- {log.name} ---\n{tail}")
