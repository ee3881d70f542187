"""Liveness of a loop process (consumer, relay), for container health checks.

The loop touches KOE_HEARTBEAT_FILE on every turn: each poll, each pause of a
retry backoff. `python -m koe_kit.heartbeat` (compose's healthcheck) exits 0 when
the file was touched within KOE_HEARTBEAT_MAX_AGE_S, 1 otherwise. That tests the
loop itself, not a side thread that would answer while the loop hangs; a loop that
waits out a database outage still turns, so it stays healthy (a restart would not
help it).

Docker restarts a container only when its process exits, never for being
unhealthy. So the loop also watches itself: `watch()` starts a thread that ends the
process (exit code 70) once the loop has not turned for KOE_STALL_EXIT_S, and the
restart policy starts a fresh one. The uncommitted batch is delivered again to the
new process; handlers are idempotent.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from koe_kit.config import EnvReader, load_or_exit

log = logging.getLogger(__name__)

# Touching the file at most this often keeps a busy loop from doing a syscall per poll.
MIN_INTERVAL_S = 1.0
# EX_SOFTWARE: told apart from a crash (1) and a configuration error (2) in `docker ps -a`.
STALLED_EXIT_CODE = 70


class Heartbeat:
    def __init__(self, path: str | None, stall_exit_s: float | None = None):
        self.path = Path(path) if path else None
        self.stall_exit_s = stall_exit_s
        self._touched = 0.0
        self._last_beat = time.monotonic()
        self._watching = threading.Event()

    def beat(self) -> None:
        now = time.monotonic()
        self._last_beat = now
        if self.path is not None and now - self._touched >= MIN_INTERVAL_S:
            self._touched = now
            self.path.touch()

    def watch(self) -> None:
        """End the process if the loop stops beating for stall_exit_s (None: never)."""
        if self.stall_exit_s is None or self._watching.is_set():
            return
        self._last_beat = time.monotonic()
        self._watching.set()
        threading.Thread(target=self._watch, name="koe-stall-watchdog", daemon=True).start()

    def stop_watching(self) -> None:
        """The loop is ending on purpose (its close may take a while)."""
        self._watching.clear()

    def _watch(self) -> None:
        assert self.stall_exit_s is not None
        check_every = min(5.0, self.stall_exit_s / 4)
        while self._watching.is_set():
            time.sleep(check_every)
            stalled = time.monotonic() - self._last_beat
            if self._watching.is_set() and stalled > self.stall_exit_s:
                log.critical(
                    "loop stalled, exiting so the restart policy starts a fresh process",
                    extra={"stalled_s": round(stalled), "limit_s": self.stall_exit_s},
                )
                for handler in logging.getLogger().handlers:
                    handler.flush()
                # The loop's thread is the one stuck: only leaving the whole process
                # at once (no atexit, no joins that would hang on it) gets us out.
                os._exit(STALLED_EXIT_CODE)


def age_s(path: Path) -> float:
    return time.time() - path.stat().st_mtime


@dataclass(frozen=True)
class HeartbeatCheckSettings:
    """`python -m koe_kit.heartbeat`, the container's health check."""

    path: str
    max_age_s: float


def read_heartbeat_check_settings(reader: EnvReader) -> HeartbeatCheckSettings:
    return HeartbeatCheckSettings(
        path=reader.str("KOE_HEARTBEAT_FILE", hint="the file the loop touches"),
        max_age_s=reader.float("KOE_HEARTBEAT_MAX_AGE_S", 120.0, minimum=1, hint="seconds"),
    )


def main() -> None:
    settings = load_or_exit(read_heartbeat_check_settings)
    path, max_age = settings.path, settings.max_age_s
    try:
        age = age_s(Path(path))
    except FileNotFoundError:
        sys.exit(f"koe: no heartbeat yet at {path}")
    if age > max_age:
        sys.exit(f"koe: last heartbeat {age:.0f}s ago (limit {max_age:.0f}s)")


if __name__ == "__main__":
    main()
