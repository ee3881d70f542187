"""Alerts need a crowd, through the real batch handler on SQLite and PostgreSQL: forged
drops and recoveries are held (recorded, not published), real ones are not, a pre-flood
buries nothing, a held drop gets no recovery until released, replays hold the same; the
outbox publisher sends a held alert only after its release, once.

Each day's answers are one batch judged that day, as the live consumer would, and the
daily sweep judges each day once it is over, under the shipped detector and per-source
cap.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy
from sqlalchemy import select

from aggregator.alerts import held as held_alerts
from aggregator.alerts import outbox as outbox_module
from aggregator.alerts.crowd import BURST, FEW_SOURCES, ONE_SOURCE, ONE_SOURCE_DECIDES
from aggregator.alerts.daily_sweep import sweep
from aggregator.alerts.detector import DetectorSettings
from aggregator.alerts.models import AlertOutbox, DetectorState
from aggregator.alerts.outbox import OutboxPublisher
from aggregator.counting.ingest import handle_batch
from koe_directory import load_directory
from koe_kit.db import make_engine, session_factory, transaction
from koe_kit.kafka import KafkaSettings, make_producer, read_topic
from koe_kit.topics import ensure_topics

DIRECTORY = load_directory(Path(__file__).resolve().parents[3] / "divisions.yaml")
TOKYO = ZoneInfo("Asia/Tokyo")
START = date(2026, 7, 1)  # 100 good days (the detector's reference needs 98), then a week
DROP_DAY = START + timedelta(days=106)  # the bad week's last day


class City:
    """One page's answers per day, judged a day at a time."""

    def __init__(self, feedback, source_of, per_source_day: int = 3):
        self.feedback, self.source_of = feedback, source_of
        self.per_source_day = per_source_day
        self.days: dict[date, list[dict]] = {}

    def add(self, day: date, source: str | None, answer: str, times: int = 1) -> None:
        batch = self.days.setdefault(day, [])
        for _ in range(times):
            moment = datetime(day.year, day.month, day.day, 9, tzinfo=TOKYO) + timedelta(
                seconds=len(batch)
            )
            batch.append(
                self.feedback(
                    moment,
                    {"clarity": answer, "findability": "yes"},
                    source=self.source_of(source) if source else None,
                )
            )

    def citizens(self, day: date, answer: str, count: int) -> None:
        """`count` people on their own addresses (a source is one address on one day)."""
        for i in range(count):
            self.add(day, f"{day} citizen {i}", answer)

    def good_weeks(self, per_day: int = 3) -> None:
        for offset in range(100):
            self.citizens(START + timedelta(days=offset), "yes", per_day)

    def judge(self, sessions, days: list[date] | None = None) -> None:
        """Each day's answers as one batch, judged at noon that day."""
        for day in days or sorted(self.days):
            self._batch(sessions, self.days.get(day, []), day)

    def inject(self, sessions, days: list[date]) -> None:
        """The days' answers as one batch judged on the last day: backdated events put
        straight into the topic, or a consumer catching up."""
        self._batch(sessions, [e for day in days for e in self.days.get(day, [])], days[-1])

    def _batch(self, sessions, batch: list[dict], day: date) -> None:
        """The batch at noon, then that night's daily sweep (01:00 the next day)."""
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=TOKYO)
        with transaction(sessions) as session:
            handle_batch(
                session,
                batch,
                timezone=TOKYO,
                directory=DIRECTORY,
                per_source_day=self.per_source_day,
                page_min_sources=1,
                now=noon,
            )
        with transaction(sessions) as session:
            sweep(
                session,
                DetectorSettings(),
                through=day,
                max_age_days=3,
                now=noon + timedelta(hours=13),
                timezone=TOKYO,
                directory=DIRECTORY,
            )

    def good_then(self, sessions, per_day: int = 3) -> None:
        """100 good days from many citizens, each day judged."""
        self.good_weeks(per_day)
        self.judge(sessions)


def outbox(sessions) -> list[tuple[str, str | None, dict | None]]:
    """(event type, held reason, evidence) of every alert, oldest first."""
    with sessions() as session:
        rows = session.scalars(select(AlertOutbox).order_by(AlertOutbox.id))
        return [
            (
                json.loads(r.payload)["type"],
                r.held_reason,
                json.loads(r.held_evidence) if r.held_evidence else None,
            )
            for r in rows
        ]


def recent_days() -> list[date]:
    return [DROP_DAY - timedelta(days=back) for back in range(6, -1, -1)]


def test_a_drop_from_one_source_over_a_week_is_held_with_its_evidence(
    sessions, make_feedback, make_source
):
    """Injected events: one source string on seven days, three "no" a day (the cap),
    among one citizen's "yes" a day."""
    city = City(make_feedback, make_source)
    city.good_then(sessions)
    for day in recent_days():
        city.add(day, "forger", "no", times=10)
        city.citizens(day, "yes", 1)
    city.judge(sessions, recent_days())

    [(kind, reason, evidence)] = outbox(sessions)
    assert (kind, reason) == ("koe.alerts.v1", ONE_SOURCE)
    # The evidence is the chart's last four days (one half-life), where the forger's
    # three a day outweigh the citizens.
    end = date.fromisoformat(evidence["window"]["end"])
    assert evidence["window"]["start"] == (end - timedelta(days=3)).isoformat()
    assert evidence["largest_source_share"] > 0.34
    days = {d["day"]: d["n"] for d in evidence["days"]}
    assert all(n in (3, 4) for n in days.values())  # a good day's three, or 3 + 1
    assert make_source("forger") not in json.dumps(evidence)
    # Judged as for a sent alert: the cooldown holds the next days quiet.
    more = City(make_feedback, make_source)
    for back in (1, 2):
        more.add(DROP_DAY + timedelta(days=back), "forger", "no", times=3)
    more.judge(sessions)
    assert len(outbox(sessions)) == 1
    with sessions() as session:
        dropped = session.scalars(
            select(DetectorState.question).where(DetectorState.dropped_day.is_not(None))
        ).all()
        assert dropped == ["clarity"]


def test_the_same_drop_from_many_sources_is_not_held(sessions, make_feedback, make_source):
    city = City(make_feedback, make_source)
    city.good_weeks()
    for day in recent_days():
        city.citizens(day, "no", 4)
    city.judge(sessions)
    [(kind, reason, evidence)] = outbox(sessions)
    assert (kind, reason, evidence) == ("koe.alerts.v1", None, None)


def test_a_burst_on_one_day_is_held(sessions, make_feedback, make_source):
    city = City(make_feedback, make_source)
    city.good_weeks()
    city.citizens(recent_days()[0], "no", 2)
    city.citizens(DROP_DAY, "no", 25)  # 25 of 27 on one day
    city.judge(sessions)
    [(_kind, reason, evidence)] = outbox(sessions)
    assert reason == BURST
    # All of the chart's last four days' answers came on one day.
    assert evidence["busiest_day"] == DROP_DAY.isoformat()
    assert evidence["busiest_day_share"] == 1.0


def test_one_source_holding_most_of_a_drop_is_held_when_the_cap_is_lifted(
    sessions, make_feedback, make_source
):
    """A city that raises KOE_COUNT_PER_SOURCE_DAY (everyone behind one proxy) still has
    the share test: one address's 30 "no" over two days among eight citizens' answers
    (no single day alarms: the detector judges without its most decisive day)."""
    city = City(make_feedback, make_source, per_source_day=1000)
    city.good_weeks()
    for day in recent_days():
        city.citizens(day, "yes", 2)
    for day in recent_days()[-2:]:
        city.add(day, "forger", "no", times=15)
    city.judge(sessions)
    [(_kind, reason, evidence)] = outbox(sessions)
    assert reason == ONE_SOURCE
    assert (evidence["sources"], evidence["n"]) == (9, 38)


def test_a_pre_flood_cannot_bury_a_real_drop(sessions, make_feedback, make_source):
    """300 "yes" from one source in the baseline and 300 at the start of the recent week:
    three of each count, and a drop many citizens report is emailed."""
    city = City(make_feedback, make_source)
    city.good_weeks()
    city.add(START + timedelta(days=27), "flooder", "yes", times=300)
    city.add(recent_days()[0], "flooder", "yes", times=300)
    for day in recent_days():
        city.citizens(day, "no", 4)
    city.judge(sessions)
    [(kind, reason, _evidence)] = outbox(sessions)
    assert (kind, reason) == ("koe.alerts.v1", None)


# A small page's last four days: a few citizens found it worse, too few for a drop.
DIP = {3: ["no"], 2: ["no"], 1: ["yes"], 0: ["yes", "no", "no"]}


def small_page(city: City, dip: dict[int, list[str]]) -> None:
    """100 good days (three citizens a day), three more, then `dip` (days before DROP_DAY:
    its citizens' answers)."""
    city.good_weeks()
    for back in (6, 5, 4):
        city.citizens(DROP_DAY - timedelta(days=back), "yes", 3)
    for back, values in dip.items():
        for i, value in enumerate(values):
            city.add(DROP_DAY - timedelta(days=back), f"{back} citizen {i}", value)


def test_a_small_page_s_dip_alone_raises_nothing(sessions, make_feedback, make_source):
    city = City(make_feedback, make_source)
    small_page(city, DIP)
    city.judge(sessions)
    assert outbox(sessions) == []


@pytest.mark.parametrize("more", [0, 1], ids=["33%", "30%"])
def test_a_source_under_the_share_limit_that_decides_a_small_page_s_drop_is_held(
    sessions, make_feedback, make_source, more
):
    """One address's three "no" (the cap) in the dip, a third (3 of 9) or 30 % (3 of
    10, one more citizen) of the evidence: under the 34 % limit, five and more sources,
    no burst. It turns the dip into a drop; without its answers there is none: held."""
    city = City(make_feedback, make_source)
    small_page(city, DIP | {1: ["yes"] * (1 + more)})
    city.add(DROP_DAY - timedelta(days=2), "forger", "no", times=3)
    city.judge(sessions)
    [(kind, reason, evidence)] = outbox(sessions)
    assert (kind, reason) == ("koe.alerts.v1", ONE_SOURCE_DECIDES)
    assert evidence["largest_source_share"] == round(3 / (9 + more), 4) <= 0.34
    assert evidence["sources"] >= 5 and evidence["busiest_day_share"] <= 0.6


def test_a_real_small_drop_with_a_shared_address_at_a_third_is_emailed(
    sessions, make_feedback, make_source
):
    """The same page where citizens report the drop on every day, and one shared
    address (a city hall PC) sent a third of the evidence: the drop stands without it."""
    city = City(make_feedback, make_source)
    small_page(city, {3: ["no"], 2: ["no", "no"], 1: ["no", "no"], 0: ["no"]})
    city.add(DROP_DAY - timedelta(days=1), "city hall", "no", times=3)
    city.judge(sessions)
    [(kind, reason, _evidence)] = outbox(sessions)
    assert (kind, reason) == ("koe.alerts.v1", None)


def real_drop(city: City, sessions) -> None:
    """100 good days, then a bad week from many citizens, each day judged."""
    city.good_then(sessions)
    for day in recent_days():
        city.citizens(day, "no", 4)
    city.judge(sessions, recent_days())


# Four weeks after: the chart must be back for seven days in a row.
AFTER = [DROP_DAY + timedelta(days=back) for back in range(1, 29)]


def test_a_recovery_from_one_source_is_held(sessions, make_feedback, make_source):
    city = City(make_feedback, make_source, per_source_day=1000)
    real_drop(city, sessions)
    for day in AFTER:
        city.add(day, "forger", "yes", times=25)
    city.judge(sessions, AFTER)
    [drop, recovery] = outbox(sessions)
    assert drop[:2] == ("koe.alerts.v1", None)
    # Its last days hold the forger alone; the evidence reaches back (within the chart
    # since the drop) to the citizens' bad days for five sources, where it holds most.
    assert recovery[:2] == ("koe.alerts.recovered.v1", ONE_SOURCE)
    assert recovery[2]["sources"] >= 5 and recovery[2]["largest_source_share"] > 0.34


def test_a_real_recovery_is_not_held(sessions, make_feedback, make_source):
    city = City(make_feedback, make_source)
    real_drop(city, sessions)
    for day in AFTER:
        city.citizens(day, "yes", 8)
    city.judge(sessions, AFTER)
    assert [row[:2] for row in outbox(sessions)] == [
        ("koe.alerts.v1", None),
        ("koe.alerts.recovered.v1", None),
    ]


def test_a_released_drop_gets_its_recovery(sessions, make_feedback, make_source):
    city = City(make_feedback, make_source, per_source_day=1000)
    city.good_then(sessions)
    for day in recent_days():
        city.add(day, "forger", "no", times=10)
    city.judge(sessions, recent_days())
    [(kind, reason, _)] = outbox(sessions)
    assert kind == "koe.alerts.v1" and reason in (FEW_SOURCES, ONE_SOURCE)

    with transaction(sessions) as session:
        [held] = held_alerts.list_held(session)
        now = datetime(2026, 10, 16, tzinfo=UTC)
        assert held_alerts.release(session, held.alert.alert_id, by="admin@city", now=now)
        # Decided once: neither a second release nor a dismissal changes it.
        assert not held_alerts.release(session, held.alert.alert_id, by="other", now=now)
        assert not held_alerts.dismiss(session, held.alert.alert_id, by="other", now=now)
    for day in AFTER:
        city.citizens(day, "yes", 8)
    city.judge(sessions, AFTER)
    assert [row[:2] for row in outbox(sessions)] == [
        ("koe.alerts.v1", reason),
        ("koe.alerts.recovered.v1", None),
    ]
    with sessions() as session:
        released = held_alerts.get_held(session, held.alert.alert_id)
        assert released is not None and released.state == "released"
        assert released.released_by == "admin@city" and released.dismissed_by is None


def test_a_replay_holds_the_same_alerts_and_a_late_one_raises_none(
    sessions, make_feedback, make_source, replay_sessions
):
    city = City(make_feedback, make_source)
    city.good_weeks()
    for day in recent_days():
        city.add(day, "forger", "no", times=10)
        city.citizens(day, "yes", 1)
    for into in (sessions, replay_sessions):
        city.judge(into, sorted(city.days)[:100])
        city.inject(into, recent_days())
    first, again = outbox(sessions), outbox(replay_sessions)
    assert first == again and [r[1] for r in first] == [ONE_SOURCE]
    with sessions() as a, replay_sessions() as b:
        assert a.scalars(select(AlertOutbox.alert_id)).all() == (
            b.scalars(select(AlertOutbox.alert_id)).all()
        )
    # Everything in one batch a month later: too old to judge, nothing raised or held.
    with transaction(replay_sessions) as session:
        session.execute(AlertOutbox.__table__.delete())
    late = [event for day in sorted(city.days) for event in city.days[day]]
    with transaction(replay_sessions) as session:
        result = handle_batch(
            session,
            late,
            timezone=TOKYO,
            directory=DIRECTORY,
            now=datetime(2026, 12, 20, tzinfo=UTC),
        )
    assert result.alerts == [] and outbox(replay_sessions) == []


def test_the_publisher_sends_a_held_alert_only_once_released(
    broker, new_pg_database, make_feedback, make_source, monkeypatch
):
    from aggregator.migrate import migrate

    url = new_pg_database()
    migrate(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    ensure_topics([broker.bootstrap], ["koe.alerts.v1"])
    settings = KafkaSettings(bootstrap_servers=[broker.bootstrap], client_id="held-test")
    publisher = OutboxPublisher(sessions, make_producer(settings))
    try:
        # A forged drop (held), then a real drop of another page (sent at once).
        forged = City(make_feedback, make_source)
        forged.good_then(sessions)
        for day in recent_days():
            forged.add(day, "forger", "no", times=3)
        forged.judge(sessions, recent_days())
        real = City(lambda *a, **k: make_feedback(*a, **k, page_id="u-real"), make_source)
        real_drop(real, sessions)
        assert publisher() == 1
        with sessions() as session:
            [held] = held_alerts.list_held(session)
        with transaction(sessions) as session:
            assert held_alerts.release(session, held.alert.alert_id, by="a", now=datetime.now(UTC))
        assert publisher() == 0  # nothing told it to look: the idle recheck does
        monkeypatch.setattr(outbox_module, "RECHECK_S", 0.0)
        assert publisher.recheck() == 1
        assert publisher.recheck() == 0
        ids = [json.loads(r.value)["id"] for r in read_topic([broker.bootstrap], "koe.alerts.v1")]
        assert sorted(ids) == sorted([held.alert.alert_id, *_ids(sessions, "u-real")])
        assert ids.count(held.alert.alert_id) == 1
    finally:
        publisher.close()
        engine.dispose()


def _ids(sessions, page_id: str) -> list[str]:
    with sessions() as session:
        return session.scalars(
            select(AlertOutbox.alert_id).where(AlertOutbox.page_id == page_id)
        ).all()


def test_migration_0008_goes_down_to_0007_and_up_again_keeping_the_alerts(migrated_url):
    from alembic import command
    from alembic.config import Config

    from aggregator.migrate import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = make_engine(migrated_url)
    config.attributes["engine"] = engine
    try:
        with transaction(session_factory(engine)) as session:
            session.add(
                AlertOutbox(
                    alert_id="held",
                    page_id="p",
                    payload="{}",
                    created_at=datetime.now(UTC),
                    held_reason=FEW_SOURCES,
                    held_evidence="{}",
                )
            )
        command.downgrade(config, "0007")
        with engine.connect() as connection:
            columns = {
                c["name"] for c in sqlalchemy.inspect(connection).get_columns("alert_outbox")
            }
            assert "held_reason" not in columns and "released_at" not in columns
        command.upgrade(config, "head")
        with session_factory(engine)() as session:
            row = session.scalars(select(AlertOutbox)).one()
            assert (row.alert_id, row.held_reason, row.released_at) == ("held", None, None)
    finally:
        engine.dispose()
