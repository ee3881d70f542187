"""Liveness of a loop process (consumer, relay), for container health checks.

The loop touches KOE_HEARTBEAT_FILE on every turn: each poll, each pause of a
retry backoff. `python -m koe_kit.heartbeat` (compose's healthcheck) exits 0 when
the file was touched within KOE_HEARTBEAT_MAX_AGE_S, 1 otherwise. That tests the
loop itself, not a side thread that would answer while the loop hangs; a loop that
waits out a database outage still turns, so it stays healthy (a restart would not
help it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from koe_kit.config import ConfigError, EnvReader, exit_on_config_error

# Touching the file at most this often keeps a busy loop from doing a syscall per poll.
MIN_INTERVAL_S = 1.0


class Heartbeat:
    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        self._last = 0.0

    def beat(self) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if now - self._last >= MIN_INTERVAL_S:
            self._last = now
            self.path.touch()


def age_s(path: Path) -> float:
    return time.time() - path.stat().st_mtime


def main() -> None:
    reader = EnvReader()
    path = reader.str("KOE_HEARTBEAT_FILE", hint="the file the loop touches")
    max_age = reader.float("KOE_HEARTBEAT_MAX_AGE_S", 120.0, minimum=1, hint="seconds")
    try:
        reader.check()
    except ConfigError as exc:
        exit_on_config_error(exc)
    try:
        age = age_s(Path(path))
    except FileNotFoundError:
        sys.exit(f"koe: no heartbeat yet at {path}")
    if age > max_age:
        sys.exit(f"koe: last heartbeat {age:.0f}s ago (limit {max_age:.0f}s)")


if __name__ == "__main__":
    main()
