"""What to do when a handler fails: pure decisions, no broker.

A transient failure (the database down, an SMTP 4xx) is retried with exponential
backoff; anything else is a bug and ends the loop. While shutting down a transient
failure is not retried: the batch is left uncommitted for the next member.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError


class Retryable(Exception):
    """A failure that may pass by itself (a server down, a timeout): retry later."""


TRANSIENT: tuple[type[Exception], ...] = (Retryable, OperationalError)


class Decision(enum.Enum):
    RETRY = "retry"
    # Leave the batch uncommitted: whoever owns its partitions next delivers it again.
    GIVE_UP = "give up"
    RAISE = "raise"


def decide(error: BaseException, *, stopping: bool) -> Decision:
    if not isinstance(error, TRANSIENT):
        return Decision.RAISE
    return Decision.GIVE_UP if stopping else Decision.RETRY


@dataclass(frozen=True)
class Backoff:
    initial_s: float
    max_s: float

    def delays(self) -> Iterator[float]:
        """The waits before each retry: initial_s, then doubling, capped at max_s."""
        delay = self.initial_s
        while True:
            yield delay
            delay = min(delay * 2, self.max_s)
