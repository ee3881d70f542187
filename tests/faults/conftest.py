"""The fault suite (`make test-faults`): each test breaks one promise of DESIGN.md on
purpose and records what was in flight, lost and double counted. The table printed at
the end of the run is the README's "Reliability" table."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

_FIGURES: list[Figure] = []


@dataclass(frozen=True)
class Figure:
    fault: str  # what was done to koe, in a few words
    in_flight: int  # events (responses or alerts) moving while it happened
    lost: int  # accepted but never counted / alerts never emailed
    doubled: int  # counted or emailed more than once
    test: str  # the test's node id, to rerun it


@pytest.fixture
def figures(request):
    """`figures(fault="broker cut off 10 s", in_flight=600, lost=0, doubled=0)`: call it
    with the numbers the test measured (after asserting them, so a failure never
    records a clean row)."""

    def record(*, fault: str, in_flight: int, lost: int, doubled: int) -> None:
        _FIGURES.append(Figure(fault, in_flight, lost, doubled, request.node.nodeid))

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures (README table)")
    terminalreporter.write_line("| fault | in flight | lost | double counted | rerun |")
    terminalreporter.write_line("|---|---:|---:|---:|---|")
    for f in _FIGURES:
        terminalreporter.write_line(
            f"| {f.fault} | {f.in_flight:,} | {f.lost} | {f.doubled} | `pytest '{f.test}'` |"
        )
