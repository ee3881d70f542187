"""Whole numbers from a request's query string, for the dashboard, the CSV and the API."""

from __future__ import annotations

import re

# ASCII digits only: str.isdigit() also accepts "²", which int() then refuses (a 500);
# and a bound on the length keeps int() from parsing thousands of digits (another 500).
_WHOLE = re.compile(r"[0-9]{1,9}", re.ASCII)


def whole_number(raw: str | None, low: int, high: int) -> int | None:
    """The number in `raw` when it lies in low..high, else None."""
    if raw is None or not _WHOLE.fullmatch(raw):
        return None
    value = int(raw)
    return value if low <= value <= high else None
