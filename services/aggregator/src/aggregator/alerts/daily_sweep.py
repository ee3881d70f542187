"""The daily sweep: completed days are judged even when a page gets no new answers.

A batch judges a page's days up to the one before its latest answer (ingest.py), so a
page that goes quiet after a few bad days would never have those days judged. Once a
city day is over (plus a grace for answers still on their way through the relay), the
sweep judges, for every page with answers in the detector's chart span or with an open
drop, each day up to yesterday not judged yet. It is the same judgement as a batch's
(alerts/judging.py keeps the last judged day per page and question), so a page is
judged once per day whichever comes first, and an alert older than
KOE_ALERT_MAX_AGE_DAYS (a consumer back from a long outage) is recorded, not emailed.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, union
from sqlalchemy.orm import Session, sessionmaker

from aggregator.alerts.crowd import DEFAULT_RULE, CrowdRule
from aggregator.alerts.detector import DetectorSettings
from aggregator.alerts.models import DetectorState
from aggregator.alerts.raising import Alert, raise_alerts
from aggregator.counting.models import DailyCount
from aggregator.pages.registry import shown
from koe_directory import Directory
from koe_kit.db import transaction

log = logging.getLogger(__name__)


def sweep(
    session: Session,
    settings: DetectorSettings,
    *,
    through: date,
    max_age_days: int,
    now: datetime,
    timezone: ZoneInfo,
    directory: Directory,
    crowd: CrowdRule = DEFAULT_RULE,
) -> list[Alert]:
    """Judge every page's unjudged days up to `through` (a completed city day); the
    alerts to send."""
    since = through - timedelta(days=settings.span_days - 1)
    candidates = session.scalars(
        union(
            select(DailyCount.page_id).where(DailyCount.day >= since),
            # A drop stays open (recovery, or closing as the new normal) however quiet.
            select(DetectorState.page_id).where(DetectorState.dropped_day.is_not(None)),
        )
    ).all()
    visible = shown(session, list(candidates))
    pages = {page_id: through for page_id in candidates if page_id in visible}
    if not pages:
        return []
    return raise_alerts(
        session,
        pages,
        settings,
        max_age_days=max_age_days,
        now=now,
        timezone=timezone,
        directory=directory,
        crowd=crowd,
    )


class DailySweep:
    """For the consumer loop: sweeps once per city day, `grace` after midnight, in its
    own transaction; a restart sweeps again (judged days are skipped)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: DetectorSettings,
        *,
        max_age_days: int,
        timezone: ZoneInfo,
        directory: Directory,
        crowd: CrowdRule,
        grace: timedelta,
    ):
        self.sessions = sessions
        self.settings = settings
        self.max_age_days = max_age_days
        self.timezone = timezone
        self.directory = directory
        self.crowd = crowd
        self.grace = grace
        self.swept: date | None = None

    def __call__(self, now: datetime | None = None) -> list[Alert]:
        now = now or datetime.now(UTC)
        day = (now - self.grace).astimezone(self.timezone).date()
        if self.swept == day:
            return []
        with transaction(self.sessions) as session:
            alerts = sweep(
                session,
                self.settings,
                # Never a day still within the grace.
                through=day - timedelta(days=1),
                max_age_days=self.max_age_days,
                now=now,
                timezone=self.timezone,
                directory=self.directory,
                crowd=self.crowd,
            )
        self.swept = day
        log.info("daily sweep", extra={"day": day.isoformat(), "alerts": len(alerts)})
        return alerts
