"""Render stamps: koe's signed word for when a citizen began the survey.

widget.js asks koe for a stamp when the citizen first touches the survey (not
when the page is shown: koe must not hear of every page view) and sends it
back with the answers; a submission whose stamp is younger than
KOE_MIN_SUBMIT_SECONDS came faster than a person reads three questions and is
refused. The HMAC means a bot cannot write itself an old stamp. The plain
form without JavaScript carries no stamp (its HTML is pasted into a CMS
template, so nothing can stamp it at render time); the honeypot, the rate
limit and the replacement window guard that path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

# A stamp older than this was fetched for another visit (or collected by a
# bot): asking for a fresh one is cheap, and this bounds how long one can be reused.
MAX_AGE_S = 24 * 3600


class BadStamp(ValueError):
    """Not a stamp koe issued, or one too old to trust."""


def _signature(secret: bytes, issued_ms: int) -> str:
    digest = hmac.new(secret, f"koe-stamp:{issued_ms}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode("ascii")


def issue(secret: bytes, now_s: float) -> str:
    issued_ms = int(now_s * 1000)
    return f"{issued_ms}.{_signature(secret, issued_ms)}"


def age_s(secret: bytes, stamp: str, now_s: float) -> float:
    """Seconds since koe issued `stamp`; raises BadStamp for a forged, malformed or stale one."""
    issued, _, signature = stamp.partition(".")
    # isdigit() alone admits digits int() refuses, such as '²'.
    if not (issued.isascii() and issued.isdigit()) or len(issued) > 15:
        raise BadStamp("not a stamp koe issued")
    # compare_digest raises TypeError for a str with non-ASCII characters (it answered
    # 500); koe's signatures are base64, so such a one is simply not koe's.
    expected = _signature(secret, int(issued))
    if not (signature.isascii() and hmac.compare_digest(signature, expected)):
        raise BadStamp("not a stamp koe issued")
    age = now_s - int(issued) / 1000
    if age > MAX_AGE_S:
        raise BadStamp("too old; reload the page")
    return age
