"""JSON log lines: one event per line, whatever text a client slipped into it."""

from __future__ import annotations

import json
import logging

from koe_kit.logs import JsonFormatter

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
