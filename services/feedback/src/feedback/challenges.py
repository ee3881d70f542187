"""The proof of work at the JSON API's door: ALTCHA's protocol (v1, SHA-256).

widget.js asks for a challenge when the citizen first touches the survey, finds the
number whose SHA-256 with the challenge's salt gives the challenge (half of
KOE_CHALLENGE_MAX_NUMBER hashes on average: about half a second in a phone's
browser, README "Spam and abuse"), and sends the solution with the answers as
`altcha`. A script must pay the same work for every response it wants accepted.

The salt carries the expiry and a digest of the canonical page URL; koe's HMAC over
the challenge (which hashes the salt) makes both unforgeable, so no cookie and no
server state are needed until a solution is spent. Spending inserts the signature
into used_challenges in the response's transaction: a solution buys one response.
The plain form without JavaScript cannot do this work; it has the honeypot and
tighter budgets instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast
from urllib.parse import parse_qs

import altcha
from altcha.v1 import PayloadType
from sqlalchemy import CTE, bindparam, delete
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from feedback.models import UsedChallenge
from koe_kit.db import dialect_insert, rows_affected, table_of

ALGORITHM: Final = "SHA-256"
# The solution as ALTCHA's widget protocol sends it: base64 of a small JSON object.
# Anything longer is not koe's (a salt is under 100 characters).
MAX_PAYLOAD_CHARS = 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ChallengeSettings:
    key: bytes
    max_number: int
    ttl_s: int


class BadSolution(ValueError):
    """Why a solution is refused, in words for the `altcha` field of a 4xx."""


@dataclass(frozen=True)
class Solution:
    """A verified solution: what spending it needs."""

    signature: str
    expires_at: datetime


def page_digest(page_url: str) -> str:
    """What binds a challenge to one page: the canonical URL's digest (the salt is
    signed, so a plain digest cannot be swapped; it keeps the salt short)."""
    return hashlib.sha256(page_url.encode("utf-8")).hexdigest()[:32]


def issue(settings: ChallengeSettings, page_url: str, now: datetime) -> dict[str, Any]:
    """A challenge for the canonical `page_url`, in the widget protocol's JSON shape."""
    challenge = altcha.create_challenge_v1(
        algorithm=ALGORITHM,
        max_number=settings.max_number,
        salt_length=12,
        hmac_key=settings.key,
        salt="",
        number=None,
        expires=now + timedelta(seconds=settings.ttl_s),
        params={"page": page_digest(page_url)},
    )
    return {
        "algorithm": challenge.algorithm,
        "challenge": challenge.challenge,
        "maxnumber": challenge.max_number,
        "salt": challenge.salt,
        "signature": challenge.signature,
    }


def check(settings: ChallengeSettings, payload: Any, page_url: str, now: datetime) -> Solution:
    """The solution in `payload` for the canonical `page_url`; raises BadSolution.

    The fields' types are checked here, not left to the library: it trusts them
    (a list where an object belongs raised TypeError), and a number sent as text
    would hash differently from the same number, making one proof two.
    """
    solution = _decoded(payload)
    salt = solution["salt"]
    params = parse_qs(salt.partition("?")[2])
    expires, page = params.get("expires", []), params.get("page", [])
    if len(expires) != 1 or not expires[0].isdigit() or len(page) != 1:
        raise BadSolution("is not a solution of a challenge koe issued")
    verified, _ = altcha.verify_solution_v1(solution, settings.key, check_expires=False)
    if not verified:
        raise BadSolution("is not a solution of a challenge koe issued")
    # Only now, with koe's signature checked, do the salt's words mean anything.
    expires_at = datetime.fromtimestamp(int(expires[0]), UTC)
    if expires_at <= now:
        raise BadSolution("has expired; fetch a new challenge")
    if page[0] != page_digest(page_url):
        raise BadSolution("was issued for another page")
    return Solution(solution["signature"], expires_at)


def _decoded(payload: Any) -> PayloadType:
    if not isinstance(payload, str) or not payload:
        raise BadSolution("is required: the solved challenge from GET /api/v1/feedback/challenge")
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise BadSolution("is too long to be a solution")
    try:
        solution = json.loads(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise BadSolution("must be base64 of a JSON object") from None
    if not isinstance(solution, dict):
        raise BadSolution("must be base64 of a JSON object")
    number = solution.get("number")
    well_formed = (
        solution.get("algorithm") == ALGORITHM
        and isinstance(solution.get("salt"), str)
        and isinstance(solution.get("challenge"), str)
        and isinstance(solution.get("signature"), str)
        and _HEX64.fullmatch(solution["challenge"]) is not None
        and _HEX64.fullmatch(solution["signature"]) is not None
        and type(number) is int  # not bool, not text
        and number >= 0
    )
    if not well_formed:
        raise BadSolution(
            f"must hold algorithm {ALGORITHM}, challenge, salt, signature and a whole number"
        )
    return cast(PayloadType, solution)  # the library's shape: each field checked above


def spend(session: Session, solution: Solution) -> bool:
    """Mark `solution` used, in the caller's transaction; False if it already was.

    Keyed by the signature: one per issued challenge (a salt could be sent with or
    without its trailing '&' and still verify). Concurrent spends of one solution:
    the loser waits for the winner's commit, inserts nothing and is told so.
    """
    inserted = session.execute(
        dialect_insert(session, table_of(UsedChallenge))
        .values(signature=solution.signature, expires_at=solution.expires_at)
        .on_conflict_do_nothing(index_elements=["signature"])
        .returning(UsedChallenge.signature)
    ).first()
    return inserted is not None


def spend_params(solution: Solution) -> dict[str, Any]:
    return {"c_signature": solution.signature, "c_expires_at": solution.expires_at}


def spend_cte() -> CTE:
    """spend() as a CTE for a PostgreSQL statement that does more (services.record_at_once),
    run with spend_params(): a row when the solution was unspent, none when it was spent."""
    table = table_of(UsedChallenge)
    return (
        postgresql.insert(table)
        .values(
            signature=bindparam("c_signature", type_=table.c.signature.type),
            expires_at=bindparam("c_expires_at", type_=table.c.expires_at.type),
        )
        .on_conflict_do_nothing(index_elements=["signature"])
        .returning(table.c.signature)
        .cte("spent_proof")
    )


def prune(session: Session, now: datetime) -> int:
    """Forget spent solutions that have expired: check() refuses them anyway."""
    return rows_affected(
        session.execute(delete(UsedChallenge).where(UsedChallenge.expires_at < now))
    )
