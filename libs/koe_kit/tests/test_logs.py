"""JSON log lines: one event per line, whatever text a client slipped into it."""

from __future__ import annotations

import json
import logging

from koe_kit.logs import AddressFilter, JsonFormatter

# Characters that some readers take for line ends (JavaScript, Python's
# str.splitlines(), many log viewers): a client-sent title holding one could start
# what looks like a second, forged log line.
LINE_BREAKERS = "\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e"


def test_a_line_breaker_in_user_text_stays_escaped_in_one_line():
    record = logging.makeLogRecord(
        {
            "msg": "rejected %s",
            "args": ("title",),
            "levelname": "WARNING",
            "title": f"お知らせ{LINE_BREAKERS}" + '{"level": "critical", "message": "forged"}',
        }
    )
    line = JsonFormatter("test").format(record)
    assert line.splitlines() == [line]
    assert not any(char in line for char in LINE_BREAKERS)
    assert "お知らせ" in line  # Japanese stays readable, not \\u-escaped
    assert json.loads(line)["title"].startswith(f"お知らせ{LINE_BREAKERS}")


def test_client_addresses_in_a_line_keep_only_their_network():
    record = logging.makeLogRecord(
        {
            "msg": "Invalid request from ip=%s: bad line from %s, %s (v1.2.3)",
            "args": ("203.0.113.77", "2001:db8:85a3:1:2:3:4:5", "::ffff:198.51.100.9"),
            "levelname": "WARNING",
        }
    )
    assert AddressFilter().filter(record)
    line = json.loads(JsonFormatter("test").format(record))["message"]
    assert line == (
        "Invalid request from ip=203.0.113.0/24: bad line from 2001:db8:85a3::/48,"
        " 198.51.100.0/24 (v1.2.3)"
    )
