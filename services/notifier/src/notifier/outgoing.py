"""What the alert handler and the digest step both need to send a division mail:
the notifier's database (the record of what went out), the directory of
divisions, the mail server, and what every mail says about its sender."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from koe_directory import Directory
from koe_kit.db import session_factory
from notifier.config import Settings
from notifier.mailer import SmtpMailer


@dataclass(frozen=True)
class Outgoing:
    sessions: sessionmaker[Session]
    directory: Directory
    mailer: SmtpMailer
    mail_from: str
    dashboard_url: str | None
    # The city's zone: a mail's Date header is in it (+0900), as every date in the mail.
    timezone: ZoneInfo

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine) -> Outgoing:
        return cls(
            session_factory(engine),
            settings.directory,
            SmtpMailer(settings.smtp),
            mail_from=settings.mail_from,
            dashboard_url=settings.dashboard_url,
            timezone=settings.timezone,
        )
