"""A second aggregator joins the consumer group mid-stream and leaves again (SIGTERM in
one round, SIGKILL in the next), so the partitions move twice each time while responses
keep arriving: every response is still counted exactly once."""

from __future__ import annotations

import json
import signal

import pytest

from faults.stream import (
    Citizens,
    counted,
    counted_once,
    wait_until_ready,
)
from koe_devkit.testing import wait_until
from koe_kit import events

pytestmark = pytest.mark.e2e

AGGREGATOR = "aggregator-consumer"
PARTITIONS = events.topics()["koe.feedback.submitted.v1"]["partitions"]


def logged(koe, process: str, message: str) -> list[dict]:
    """The JSON log lines of `process` with this message."""
    path = koe.stack.var_dir / "log" / f"{process}.log"
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a traceback, or a line cut short by SIGKILL
        if entry.get("message") == message:
            lines.append(entry)
    return lines


def holds(koe, process: str) -> set[str]:
    """The partitions the process was given at its latest rebalance."""
    assigned = logged(koe, process, "partitions assigned")
    return set(assigned[-1]["partitions"]) if assigned else set()


def handled(koe, process: str) -> int:
    return sum(entry["events"] for entry in logged(koe, process, "batch handled"))


@pytest.mark.parametrize("leave", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_member_joining_and_leaving_mid_stream_changes_no_count(koe_factory, figures, leave):
    koe = koe_factory(KOE_BATCH_MAX_MESSAGES="25")
    assert PARTITIONS >= 2, "one partition cannot be shared"
    wait_until_ready(koe)
    citizens = Citizens(koe, pause_s=0.005).start()
    wait_until(lambda: counted(koe) >= 100, what="the stream flowing into the stats")

    second = f"{AGGREGATOR}-2"
    koe.stack.start_copy(AGGREGATOR, second)
    # Both members hold partitions, and the newcomer counts from them.
    wait_until(
        lambda: holds(koe, second) and len(holds(koe, AGGREGATOR)) < PARTITIONS,
        what="the group to split the partitions between the two",
    )
    assert not holds(koe, second) & holds(koe, AGGREGATOR)
    wait_until(lambda: handled(koe, second) > 0, what=f"{second} to count responses")
    joined_at = citizens.total

    # Leave mid-stream: responses arrived while both worked, and keep arriving.
    wait_until(lambda: citizens.total > joined_at + 50, what="responses while both count")
    koe.stack.kill(second, leave)
    left_at = citizens.total
    if leave == signal.SIGTERM:  # a clean leave: it finished its batch and closed
        assert koe.stack.processes[second].popen.returncode == 0
    assert koe.stack.dead() == [second]
    wait_until(
        lambda: len(holds(koe, AGGREGATOR)) == PARTITIONS,
        what="the first aggregator to take every partition back",
    )
    wait_until(lambda: citizens.total > left_at + 50, what="responses after the leave")
    citizens.stop()

    result = counted_once(koe, citizens)
    figures(
        fault=f"a second aggregator joins mid-stream, then leaves ({leave.name})",
        in_flight=citizens.total,
        lost=result.lost,
        doubled=result.doubled,
    )
