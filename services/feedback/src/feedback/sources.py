"""Who sent an answer, without knowing who: a source is a keyed hash of the sender's network.

The network is the client's address as IPv4 /32 or IPv6 /64 (one household or phone
gets a whole /64, and rotates addresses inside it at will); an IPv4-mapped IPv6
address is its IPv4 address. The address is `request.remote_addr`, which honours
KOE_TRUSTED_PROXIES (koe_kit.web.trust_proxies), so nothing the client writes decides it.

The key is random, one per city-local day (KOE_TIMEZONE), kept in `source_keys` so that
every worker and replica gives an address the same source all day; a new day's source
cannot be linked to the day before. Keys are pruned after KOE_SOURCE_KEY_KEEP_DAYS:
from then on nobody, koe included, can tell which address a source was. The raw
address is never stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from feedback.models import SourceKey
from koe_kit.db import dialect_insert, table_of

SOURCE_HEX = 32


def network(address: str) -> str:
    """The network an address speaks for: '203.0.113.7/32', '2001:db8:1:2::/64'.

    Anything that is not an address (a WSGI server may give none) is its own network.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"not-an-address:{address}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        else:
            return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return f"{ip}/32"


def source_of(key: bytes, address: str) -> str:
    return hmac.new(key, network(address).encode(), hashlib.sha256).hexdigest()[:SOURCE_HEX]


_KEY_OF_DAY = select(SourceKey.key).where(SourceKey.day == bindparam("day"))


class Sources:
    """Today's key, read (or made) once per process and day; hashes addresses with it."""

    def __init__(self, sessions: sessionmaker[Session], timezone: ZoneInfo):
        self.sessions = sessions
        self.timezone = timezone
        self._day: date | None = None
        self._key = b""

    def today(self, now: datetime) -> date:
        return now.astimezone(self.timezone).date()

    def source(self, address: str, now: datetime) -> str:
        day = self.today(now)
        if day != self._day:
            # A transaction of its own: a request rolled back (over budget) must not take
            # back a key this worker goes on using while the others make another one.
            with self.sessions() as session, session.begin():
                self._key = day_key(session, day, now)
            self._day = day
        return source_of(self._key, address)


def day_key(session: Session, day: date, now: datetime | None = None) -> bytes:
    """The key of `day`, made on first use. Race-safe: workers that start the day together
    each try to insert their own random key, one wins, and all read the winner's."""
    connection = session.connection()
    insert = dialect_insert(session, table_of(SourceKey)).on_conflict_do_nothing(
        index_elements=["day"]
    )
    connection.execute(
        insert,
        {"day": day, "key": secrets.token_hex(32), "created_at": now or datetime.now(UTC)},
    )
    return bytes.fromhex(connection.execute(_KEY_OF_DAY, {"day": day}).scalar_one())
