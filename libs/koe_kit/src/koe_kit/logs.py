"""Structured JSON logs on stderr, one object per line."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import sys
from datetime import UTC, datetime

from koe_kit import correlation

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

# json.dumps(ensure_ascii=False) escapes control characters below U+0020 but keeps
# these raw, and str.splitlines(), JavaScript and many log viewers break lines at
# them: client text holding one could forge a second log line. Escaped, they stay
# in the one JSON string they belong to (Japanese stays readable, unlike ensure_ascii).
_LINE_BREAKERS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


# Candidates for an IP address; ipaddress decides. Not after "://" (or "://["): a URL's
# host is a server's own address ("Listening at: http://0.0.0.0:8000"), not a client's.
_ADDRESS = re.compile(
    r"(?<![\w.:])(?<!://)(?<!://\[)"
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,4})"
    r"(?![\w.])"
)
# What a log line keeps of a client's address: its network, as the budgets see an IPv6
# household (a /64) but coarser, so no line leads back to one address (README, "Spam
# and abuse": the raw address is never stored or logged).
_KEPT_PREFIX = {4: 24, 6: 48}


def _network(match: re.Match[str]) -> str:
    try:
        address = ipaddress.ip_address(match.group())
    except ValueError:
        return match.group()  # a time (12:30:45) or a version, not an address
    if address.is_unspecified:
        return match.group()  # "::" or 0.0.0.0: no client's
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    network = ipaddress.ip_network(f"{address}/{_KEPT_PREFIX[address.version]}", strict=False)
    return str(network)


class AddressFilter(logging.Filter):
    """Cuts every client address in a line to its network (/24, /48).

    For gunicorn's own lines (koe_kit.gunicorn_conf): it names the client of a request
    it refused ("Invalid request from ip=…"), and koe keeps no citizen's address.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cut = _ADDRESS.sub(_network, message)
        if cut != message:
            record.msg, record.args = cut, None
        return True


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
