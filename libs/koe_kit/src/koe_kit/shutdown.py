"""Graceful shutdown for long-running loops (consumers, the outbox relay).

SIGTERM or SIGINT only sets a flag; the loop notices it between batches,
finishes and commits what it holds, then closes its clients.
"""

from __future__ import annotations

import signal
import threading


class GracefulStop:
    def __init__(self) -> None:
        self._stopping = threading.Event()

    def stop(self, *_: object) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        self._stopping.wait(seconds)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
