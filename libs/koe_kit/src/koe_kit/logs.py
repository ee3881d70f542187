"""Structured JSON logs on stderr, one object per line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from koe_kit import correlation

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

# json.dumps(ensure_ascii=False) escapes control characters below U+0020 but keeps
# these raw, and str.splitlines(), JavaScript and many log viewers break lines at
# them: client text holding one could forge a second log line. Escaped, they stay
# in the one JSON string they belong to (Japanese stays readable, unlike ensure_ascii).
_LINE_BREAKERS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Anything passed with extra={...} (event_id, page_id, ...) travels along.
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        # The request (or, in a consumer, the event's request) this line belongs to.
        request_id = correlation.current()
        if request_id:
            entry.setdefault("request_id", request_id)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str).translate(_LINE_BREAKERS)


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # kafka-python logs every reconnect attempt at INFO/WARNING; keep ours readable.
    logging.getLogger("kafka").setLevel(logging.ERROR)
