"""Who is sending, without knowing who: a keyed hash of IP address and user agent.

The hash lets koe fold a second response from the same browser into the first
and rate-limit one client, and it is all koe keeps: the raw address is never
stored or logged. The key is derived per UTC day from KOE_CLIENT_KEY, so a
hash cannot be linked to the same client's hash of another day.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date


def day_key(secret: bytes, day: date) -> bytes:
    return hmac.new(secret, b"koe-client:" + day.isoformat().encode(), hashlib.sha256).digest()


def client_hash(secret: bytes, day: date, ip: str, user_agent: str) -> str:
    """64 hex characters; the same client gives the same value all day, never across days."""
    message = f"{ip}\n{user_agent}".encode("utf-8", "replace")
    return hmac.new(day_key(secret, day), message, hashlib.sha256).hexdigest()
