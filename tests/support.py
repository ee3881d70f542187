"""Helpers for the cross-service tests: koe as real subprocesses, and waiting for it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import altcha
import requests
from flask import Flask
from flask.testing import FlaskClient
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import func, select

from aggregator.alerts.models import AlertOutbox, publishable
from feedback.challenges import page_digest
from feedback.models import OutboxEntry
from koe_devkit.local_broker import free_port
from koe_devkit.local_stack import LocalStack
from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from koe_kit import events
from koe_kit.db import make_engine

REPO = Path(__file__).parents[1]
API_TOKEN = "test-token-" + "x" * 24
SECRET_KEY = "test-session-secret-" + "y" * 24  # the dashboard's cookie key
SITE = "https://www.info.city.tsu.mie.jp"
DX_PAGE = f"{SITE}/shisei/dx/1234.html"
CLERK_PASSWORD = "a clerk's long password"  # noqa: S105 (a test password)
CHALLENGE_KEY = "test-challenge-key-" + "c" * 32
# The proof of work at the JSON API's door, made small: tests post thousands of answers.
CHALLENGE_MAX_NUMBER = "1000"
DX_TITLE = "津市の自治体DX取組状況"
ALERT_EXAMPLE = REPO / "schemas/examples/koe.alerts.v1/clarity-drop.json"
# The city's time zone (the aggregator's KOE_TIMEZONE default): the drop detector judges
# its days, so a backdated history is dated by them.
CITY = ZoneInfo("Asia/Tokyo")


def answered(**changes) -> dict:
    """The survey answered for the DX page, as widget.js sends it to the API; `changes`
    replace fields, and a field changed to ... is left out."""
    body = {
        "page_url": DX_PAGE,
        "page_title": DX_TITLE,
        "division": "somu-dx",
        "answers": {"findability": "yes", "clarity": "neutral", "usefulness": "no"},
        "locale": "ja",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def solve(challenge: dict) -> str:
    """The `altcha` field for a challenge from GET /api/v1/feedback/challenge: what
    widget.js works out in the browser, found by ALTCHA's own Python solver."""
    found = altcha.solve_challenge_v1(
        challenge["challenge"], challenge["salt"], challenge["algorithm"], challenge["maxnumber"]
    )
    assert found is not None, "a challenge koe issued has a solution"
    fields = ("algorithm", "challenge", "salt", "signature")
    solution = {key: challenge[key] for key in fields} | {"number": found.number}
    return base64.b64encode(json.dumps(solution).encode()).decode("ascii")


def signed_proof(
    page_url: str, *, number: int = 7, expires: datetime | None = None, key: str = CHALLENGE_KEY
) -> str:
    """The `altcha` for a challenge made here as koe makes them (signed with `key`, bound
    to `page_url`), its number known: for tests and loads that need many proofs fast
    and are not about the work itself."""
    made = altcha.create_challenge_v1(
        algorithm="SHA-256",
        max_number=1000,
        salt_length=12,
        hmac_key=key,
        salt="",
        number=number,
        expires=expires or datetime.now(UTC) + timedelta(hours=2),
        params={"page": page_digest(canonical_url(page_url))},
    )
    fields = ("algorithm", "challenge", "salt", "signature")
    solution = {key: getattr(made, key) for key in fields} | {"number": number}
    return base64.b64encode(json.dumps(solution).encode()).decode("ascii")


class Solving(requests.Session):
    """An HTTP client that, like widget.js, asks koe for a challenge for the page and
    solves it before each JSON answer (unless the body brings its own `altcha`)."""

    def request(self, method, url, *args, **kwargs):
        body = kwargs.get("json")
        if (
            method.upper() == "POST"
            and str(url).endswith("/api/v1/feedback")
            and isinstance(body, dict)
            and "altcha" not in body
            and isinstance(body.get("page_url"), str)
        ):
            issued = super().request(
                "GET", f"{url}/challenge", params={"page_url": body["page_url"]}, timeout=10
            )
            if issued.status_code == 200:
                kwargs["json"] = body | {"altcha": solve(issued.json())}
        return super().request(method, url, *args, **kwargs)


class SolvingClient(FlaskClient):
    """A test client that, like widget.js, fetches and solves a challenge for the page
    before each JSON answer that brings no `altcha` of its own."""

    def open(self, *args, **kwargs):
        body = kwargs.get("json")
        path = args[0] if args and isinstance(args[0], str) else ""
        if (
            kwargs.get("method") == "POST"
            and path == "/api/v1/feedback"
            and isinstance(body, dict)
            and "altcha" not in body
            and isinstance(body.get("page_url"), str)
        ):
            issued = self.get(
                "/api/v1/feedback/challenge", query_string={"page_url": body["page_url"]}
            )
            if issued.status_code == 200:
                kwargs["json"] = body | {"altcha": solve(issued.get_json())}
        return super().open(*args, **kwargs)


def solving(app: Flask) -> Flask:
    """`app`, whose test_client() solves challenges (SolvingClient)."""
    app.test_client_class = SolvingClient
    return app


def from_address(address: str) -> requests.Session:
    """An HTTP client sending from `address`, one of the loopback /8 (127.0.0.2, ...):
    another citizen, as koe's sources see people (one address, one source)."""

    class Bound(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["source_address"] = (address, 0)
            super().init_poolmanager(*args, **kwargs)

    http = Solving()
    http.mount("http://", Bound())
    return http


def submitted(
    page_url: str,
    answers: dict[str, str],
    at: datetime,
    title: str = DX_TITLE,
    source: str | None = None,
    page_modified: str | None = None,
) -> dict:
    """One response to `page_url` as the relay publishes it, dated `at`: for a history of
    weeks, which the API would date today. `source` names its sender (one address on one
    day; see source_of); without it, an event from before sources were stamped.
    `page_modified`: the page's last-modified date its snippet carried."""
    response_id = str(uuid.uuid4())
    page_id = page_id_for_url(canonical_url(page_url))
    data = {
        "response_id": response_id,
        "page_id": page_id,
        "page_url": canonical_url(page_url),
        "page_title": title,
        "division": None,
        "locale": "ja",
        "answers": answers,
    }
    if source is not None:
        data["source"] = source_of(source)
    if page_modified is not None:
        data["page_modified"] = page_modified
    return events.make_event(
        "koe.feedback.submitted.v1",
        source="koe/test-history",
        subject=page_id,
        event_id=response_id,
        time=at,
        data=data,
    )


def source_of(name: str) -> str:
    """A source as the feedback service writes it (32 hex digits), named for a test."""
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def alert(n: int) -> dict:
    """The example drop alert (the DX page, division somu-dx), with alert id number `n`."""
    event = json.loads(ALERT_EXAMPLE.read_text(encoding="utf-8"))
    alert_id = str(uuid.UUID(int=n, version=4))
    event["id"] = event["data"]["alert_id"] = alert_id
    return event


def city_noon(back: int = 0) -> datetime:
    """Noon of the city's day `back` days ago, or for today (back 0) the present moment if
    earlier (an answer is never from the future). Histories are dated by the city's days,
    which the detector judges, not by UTC's: from 15:00 to 24:00 UTC Tokyo is a day ahead,
    and a history dated by the UTC date lands one city day off, at some hours only."""
    now = datetime.now(CITY)
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=back)
    return min(noon, now)


def history(
    page_url: str, days_good: int = 100, days_bad: int = 4, *, answer_today: bool = True
) -> list[dict]:
    """Feedback events for one page: `days_good` good days (the drop detector's
    reference needs 98 days of history behind the judged day), then `days_bad` bad ones
    ending yesterday, all on the city's days (city_noon), and, with `answer_today`, one
    good answer today: it completes yesterday for the page, so the detector judges the
    bad days at once and emails the drop (never news older than KOE_ALERT_MAX_AGE_DAYS:
    keep days_bad at 4 or less). Without it the days up to the day before yesterday are
    judged: four bad days alarm on their third, three on the answer that completes
    yesterday."""
    rng = random.Random(7)
    produced = []
    for back in range(days_good + days_bad, 0, -1):
        bad = back <= days_bad
        for i in range(5):
            answer = (
                ("no" if rng.random() < 0.8 else "neutral")
                if bad
                else ("yes" if rng.random() < 0.85 else "neutral")
            )
            answers = {"findability": "yes", "clarity": answer, "usefulness": answer}
            produced.append(submitted(page_url, answers, city_noon(back) - timedelta(minutes=i)))
    if answer_today:
        produced.append(submitted(page_url, {"findability": "yes"}, city_noon()))
    return produced


def publish(
    bootstrap: str, topic: str, values: Iterable[dict | bytes | None], key: str = ""
) -> list:
    """Put events (or raw bytes, as a broken producer would) on a topic, keyed by their
    subject (else `key`); returns each one's RecordMetadata (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all")
    try:
        futures = [
            producer.send(
                topic,
                key=(value["subject"] if isinstance(value, dict) else key).encode(),
                value=events.encode(value) if isinstance(value, dict) else value,
            )
            for value in values
        ]
        producer.flush()
        return [future.get(timeout=10) for future in futures]
    finally:
        producer.close()


_ALERT_MESSAGE_ID = re.compile(r"<koe-alert-([0-9a-f-]{36})@")


def emails_per_alert(messages: Iterable[EmailMessage]) -> Counter[str]:
    """How many emails each alert id got, read from their Message-IDs (notifier.compose)."""
    return Counter(
        found.group(1)
        for m in messages
        if (found := _ALERT_MESSAGE_ID.match(m["Message-ID"] or ""))
    )


# Budgets per source (feedback/budgets.py) no test of something else meets.
LIFTED_BUDGETS = {
    name: "1000000"
    for name in (
        "KOE_BUDGET_ONE_PAGE",
        "KOE_BUDGET_ALL_PAGES",
        "KOE_FORM_BUDGET_ONE_PAGE",
        "KOE_FORM_BUDGET_ALL_PAGES",
        "KOE_BUDGET_NEW_PAGES",
    )
}


def stack_env(broker, smtp_server, new_pg_database, fast_kafka_env, **extra: str) -> dict[str, str]:
    # The machine's environment minus any koe setting a developer may have exported.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KOE_", "KAFKA_", "SMTP_", "FEEDBACK_", "AGGREGATOR_", "NOTIFIER_"))
        and k != "DATABASE_URL"
    }
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "SMTP_HOST": smtp_server.host,
        "SMTP_PORT": str(smtp_server.port),
        "KOE_API_TOKEN": API_TOKEN,
        "KOE_SECRET_KEY": SECRET_KEY,
        "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
        "KOE_CHALLENGE_MAX_NUMBER": CHALLENGE_MAX_NUMBER,
        "KOE_DASHBOARD_SECURE_COOKIES": "false",
        "KOE_ALLOWED_ORIGINS": SITE,
        "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
        "KOE_FEEDBACK_PORT": str(free_port()),
        "KOE_AGGREGATOR_PORT": str(free_port()),
        "KOE_NOTIFIER_PORT": str(free_port()),
        "FEEDBACK_DATABASE_URL": new_pg_database(),
        "AGGREGATOR_DATABASE_URL": new_pg_database(),
        "NOTIFIER_DATABASE_URL": new_pg_database(),
        "KOE_WEB_WORKERS": "2",
        # These tests post many responses from one address (this machine) to one page
        # and to many new pages: LIFTED_BUDGETS. tests/test_door.py and
        # tests/test_widget_spam.py test the budgets ...
        **LIFTED_BUDGETS,
        # ... and each one counts, on a page shown from its first answer: one address is
        # one source. The per-source cap and the crowd a page needs are tested in
        # services/aggregator/tests/test_counting.py and test_pages.py.
        "KOE_COUNT_PER_SOURCE_DAY": "1000000",
        "KOE_PAGE_MIN_SOURCES": "1",
        **fast_kafka_env,
    }
    env.update(extra)
    return env


def wait_for_partitions(koe: Koe, name: str) -> None:
    """Wait until a consumer loop has joined its group and holds partitions. Stop one
    before that and the local broker (Tansu) was seen to keep its unfinished join,
    leaving the next member of the group without partitions for over a minute."""
    log = koe.stack.var_dir / "log" / f"{name}.log"
    wait_until(
        lambda: '"partitions assigned"' in log.read_text(errors="replace"),
        what=f"{name} to hold partitions",
    )


# What each consumer group reads (schemas/topics.yaml; the services' default groups).
GROUP_TOPICS = {"aggregator": "koe.feedback.submitted.v1", "notifier": "koe.alerts.v1"}


def unread(bootstrap: str, group: str, topic: str, fetch_s: float = 1.0) -> int:
    """How many records of `topic` lie after what `group` committed (at least). The end
    offsets say so when they are ahead; when they are not, records are still fetched from
    the committed offsets for `fetch_s`: Tansu reports a topic's end as its last record
    batch's first offset + 1, which a group can pass halfway through that batch."""
    consumer = KafkaConsumer(
        bootstrap_servers=[bootstrap], group_id=group, enable_auto_commit=False
    )
    try:
        found = consumer.partitions_for_topic(topic)
        assert found, f"{topic} is not on the broker: has koe made its topics?"
        partitions = [TopicPartition(topic, p) for p in found]
        consumer.assign(partitions)  # assigned, not subscribed: joins no group
        committed = {tp: consumer.committed(tp) or 0 for tp in partitions}
        end = consumer.end_offsets(partitions)
        behind = sum(max(0, end[tp] - committed[tp]) for tp in partitions)
        if behind:
            return behind
        for tp in partitions:
            consumer.seek(tp, committed[tp])
        deadline = time.monotonic() + fetch_s
        while time.monotonic() < deadline:
            if fetched := consumer.poll(timeout_ms=200):
                return sum(len(records) for records in fetched.values())
        return 0
    finally:
        consumer.close()


def unsent(koe: Koe) -> int:
    """Rows the feedback outbox and the aggregator's alert outbox have yet to publish."""
    counts = 0
    for service, query in (
        ("feedback", select(func.count()).where(OutboxEntry.sent_at.is_(None))),
        (
            "aggregator",
            select(func.count()).where(AlertOutbox.sent_at.is_(None), publishable()),
        ),
    ):
        engine = make_engine(koe.stack.service_env(service)["DATABASE_URL"])
        try:
            with engine.connect() as connection:
                counts += connection.execute(query).scalar_one()
        finally:
            engine.dispose()
    return counts


def drained(koe: Koe, bootstrap: str, timeout_s: float = 60) -> None:
    """Wait until nothing is on its way to a count or an email: both outboxes have
    published every row, and the aggregator's and the notifier's groups have committed
    every record of their topics (the loops commit after their database transaction
    and after sending mail). A duplicate (a row published twice, a batch counted twice,
    an alert mailed twice) has arrived by then, so "exactly one" can be counted; a
    fixed sleep would pass if it came late. Held twice in a row: a batch that lands
    between the looks shows in the second."""

    def quiet() -> bool:
        return unsent(koe) == 0 and not any(
            unread(bootstrap, group, topic) for group, topic in GROUP_TOPICS.items()
        )

    wait_until(lambda: quiet() and quiet(), timeout_s=timeout_s, what="koe to drain")


class Koe:
    """A running koe and the HTTP calls a user would make to it."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.http = Solving()

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.stack.port(service)}{path}"

    def submit(self, **body) -> requests.Response:
        return self.http.post(self.url("feedback", "/api/v1/feedback"), json=body, timeout=10)

    def stats(self, path: str = "/api/v1/pages", **params) -> requests.Response:
        return self.http.get(
            self.url("aggregator", path),
            params=params,
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=10,
        )

    def page_n(self, page_id: str) -> int:
        response = self.stats(f"/api/v1/pages/{page_id}")
        if response.status_code == 404:
            return 0
        response.raise_for_status()
        return response.json()["windows"]["all"]["n"]

    def create_account(self, email: str, division: str | None) -> None:
        """A division clerk's dashboard account (an admin's without a division), made with
        the CLI operators use."""
        who = ["--division", division] if division is not None else ["--admin"]
        result = subprocess.run(
            [sys.executable, "-m", "aggregator.accounts", "create", "--email", email, *who],
            input=CLERK_PASSWORD + "\n",
            env=self.stack.service_env("aggregator"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr

    def signed_in(self, email: str) -> requests.Session:
        """A browser-like session signed in to the dashboard as `email`."""
        http = requests.Session()
        form = http.get(self.url("aggregator", "/sign-in"), timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        response = http.post(
            self.url("aggregator", "/sign-in"),
            data={"email": email, "password": CLERK_PASSWORD, "csrf_token": token},
            timeout=10,
        )
        assert response.status_code == 200 and response.url.endswith("/pages")
        return http


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


def raw_http(port: int, request: bytes) -> RawAnswer:
    """Send bytes no HTTP client would send as they are to a local web app; its answer,
    parsed just enough."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1."), received[:300]
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(int(status_line.split()[1]), headers, body)
