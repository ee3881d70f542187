"""The digest step: send each division's due daily digest, exactly once.

It runs in a thread of the notifier consumer's process (`DigestThread`), every
KOE_DIGEST_CHECK_S seconds, so no extra process is needed; several notifier
processes may run it at once, the claim in `digests` lets one of them send.
A digest is sent once: its row is claimed before the send and marked after it,
so only a crash between the SMTP server taking the mail and that mark can send
it again (with the same Message-ID), as for single alerts. SMTP "later"
(unreachable, 4xx) is retried with exponential backoff; a 5xx marks the digest
`failed` with the server's reply, and is logged as an error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from koe_directory import Division
from koe_kit.db import transaction
from koe_kit.shutdown import GracefulStop
from notifier import digest_queue
from notifier.compose import compose_digest_email
from notifier.digest_queue import Claimed
from notifier.mailer import PermanentMailError, TransientMailError
from notifier.models import FAILED, RETRYING, SENT
from notifier.outgoing import Outgoing

log = logging.getLogger(__name__)

# A claim older than this belongs to a step that died mid-send: take it over.
# Far longer than any SMTP conversation (KOE_SMTP_TIMEOUT_S per connection).
LEASE = timedelta(minutes=10)


@dataclass(frozen=True)
class Outcome:
    division_code: str
    day: date
    status: str


class DigestStep:
    def __init__(
        self,
        outgoing: Outgoing,
        *,
        timezone: ZoneInfo,
        backoff_initial_s: float = 60.0,
        backoff_max_s: float = 3600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.out = outgoing
        self.timezone = timezone
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock

    def __call__(self, now: datetime | None = None) -> list[Outcome]:
        """Send what is due at `now`; return what happened to each digest tried."""
        now = now or self.clock()
        with transaction(self.out.sessions) as session:
            claimed = digest_queue.claim_retries(session, now, LEASE)
            waiting = digest_queue.waiting_divisions(session)
        for code in waiting:
            division = self._division(code)
            day = digest_queue.due_day(now, division.digest_hour, self.timezone)
            moment = digest_queue.digest_moment(day, division.digest_hour, self.timezone)
            with transaction(self.out.sessions) as session:
                if digest_queue.claim_new(session, division, day, before=moment, now=now):
                    claimed.append(Claimed(code, day))
        return [self._send(claim, now) for claim in claimed]

    def _division(self, code: str) -> Division:
        # A division removed from divisions.yaml since: its waiting alerts still go out.
        return self.out.directory.divisions.get(code, self.out.directory.fallback)

    def _send(self, claim: Claimed, now: datetime) -> Outcome:
        division = self._division(claim.division_code)
        with transaction(self.out.sessions) as session:
            entries = digest_queue.entries_of(session, claim.division_code, claim.day)
            tried = digest_queue.attempts(session, claim.division_code, claim.day)
        mail = compose_digest_email(
            entries,
            division,
            day=claim.day,
            mail_from=self.out.mail_from,
            sent_at=now.astimezone(self.out.timezone),
            dashboard_url=self.out.dashboard_url,
        )
        status, error, retry_at = SENT, None, None
        try:
            error = self.out.mailer.send(mail)  # sent; any recipients it refused
        except TransientMailError as exc:
            status, error = RETRYING, str(exc)
            wait = min(self.backoff_initial_s * 2**tried, self.backoff_max_s)
            retry_at = now + timedelta(seconds=wait)
        except PermanentMailError as exc:
            status, error = FAILED, str(exc)
        with transaction(self.out.sessions) as session:
            digest_queue.record(
                session,
                claim.division_code,
                claim.day,
                status=status,
                at=now,
                error=error,
                retry_at=retry_at,
            )
        extra = {
            "division": claim.division_code,
            "digest_date": claim.day.isoformat(),
            "entries": len(entries),
            "error": error,
        }
        if status == FAILED:
            log.error("digest email refused for good", extra=extra)
        elif status == RETRYING:
            log.warning("digest email not sent, will retry", extra={**extra, "retry_at": retry_at})
        else:
            log.info("digest emailed", extra=extra)
        return Outcome(claim.division_code, claim.day, status)


class DigestThread(GracefulStop):
    """Runs the digest step every `interval_s` seconds until stopped."""

    def __init__(self, step: DigestStep, interval_s: float):
        super().__init__()
        self.step = step
        self.interval_s = interval_s
        self.thread = threading.Thread(target=self.run, name="koe-digest", daemon=True)

    def start(self) -> DigestThread:
        self.thread.start()
        return self

    def run(self) -> None:
        while not self.stopping:
            try:
                self.step()
            except Exception:  # a database outage must not end the digests for good
                log.exception("digest step failed; trying again next time")
            self.pause(self.interval_s)

    def close(self, timeout_s: float = 30) -> None:
        self.stop()
        self.thread.join(timeout_s)
