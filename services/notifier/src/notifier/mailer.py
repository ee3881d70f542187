"""Sending over SMTP, with every failure sorted into "try again later" or "never".

Transient: the server unreachable, a timeout, a dropped connection, a 4xx
reply, and problems that hit every mail alike (login refused, STARTTLS not
offered): those are the operator's to fix, and dead-lettering every alert
meanwhile would lose them. Permanent: a 5xx reply to this message.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from notifier import metrics
from notifier.config import SmtpSettings


class TransientMailError(Exception):
    pass


class PermanentMailError(Exception):
    pass


class SmtpMailer:
    def __init__(self, settings: SmtpSettings):
        self.settings = settings

    def send(self, message: EmailMessage) -> str | None:
        """Send one message; returns the recipients the server refused while taking it
        for others, as text for the record (None when it took it for all)."""
        try:
            refused = self._deliver(message)
        except TransientMailError:
            metrics.EMAILS_RETRIED.inc()
            raise
        except PermanentMailError:
            metrics.EMAILS_FAILED.inc()
            raise
        metrics.EMAILS_SENT.inc()
        return "; ".join(f"{rcpt}: {code}" for rcpt, (code, _) in refused.items()) or None

    def _deliver(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        s = self.settings
        # The server's certificate is checked (name and chain) before the password or the
        # mail is sent: against the city's CA when SMTP_CAFILE names one.
        context = ssl.create_default_context(cafile=s.cafile)
        try:
            smtp = (
                smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=context)
                if s.tls
                else smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            )
            try:
                if s.starttls:
                    smtp.starttls(context=context)
                if s.username:
                    smtp.login(s.username, s.password)
                return smtp.send_message(message)
            finally:
                _quit(smtp)
        except smtplib.SMTPRecipientsRefused as exc:
            replies = list(exc.recipients.values())
            text = "; ".join(f"{rcpt}: {_reply(*reply)}" for rcpt, reply in exc.recipients.items())
            if all(400 <= code < 500 for code, _ in replies):
                raise TransientMailError(text) from exc
            raise PermanentMailError(text) from exc
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPHeloError) as exc:
            raise TransientMailError(_reply(exc.smtp_code, exc.smtp_error)) from exc
        except smtplib.SMTPConnectError as exc:
            raise TransientMailError(f"connect: {_reply(exc.smtp_code, exc.smtp_error)}") from exc
        except smtplib.SMTPResponseException as exc:
            text = _reply(exc.smtp_code, exc.smtp_error)
            if 500 <= exc.smtp_code < 600:
                raise PermanentMailError(text) from exc
            raise TransientMailError(text) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientMailError(f"{type(exc).__name__}: {exc}") from exc


def _quit(smtp: smtplib.SMTP) -> None:
    """Say goodbye, whatever the server answers. Not `with smtplib.SMTP()`: its exit
    raises on any reply to QUIT but 221, so a server that took the mail and then said
    421 (shutting down) or let QUIT time out would have it sent again and again."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}"
