"""What one person with a script and one machine can do to koe's numbers and alert emails.

Starts every koe process (PostgreSQL, the Tansu broker, the SMTP sink that keeps every
mail), then attacks it as issue 11 describes and prints what each attack achieved. It
is the README's Integrity table: run it with the virtualenv of the code to measure, e.g.
an old checkout's `.venv/bin/python bench/bench_attacks.py` for "before" and this one's
for "after". It adapts to what the running koe asks for (a proof-of-work challenge, a
signed page id) the way an attacker would, and never asserts anything.

Attacks over HTTP come from one address, 127.0.0.1, rotating everything a client
controls (User-Agent, client_token, Origin, X-Forwarded-For). Attacks on the alert
email are injected as backdated events on the feedback topic, as if one address had
answered on each of the last days (one source per day: a source is the same all day);
honest traffic comes from many sources (many addresses: 127.0.x.y over HTTP).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import random
import secrets
import signal
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from zoneinfo import ZoneInfo

from kafka import KafkaProducer

from common import REPO, free_port, pg_database, wait
from koe_devkit.local_stack import LocalStack
from koe_directory import canonical_url, page_id_for_url
from koe_kit import events

SITE = "https://www.info.city.tsu.mie.jp"
API_TOKEN = "bench-token-" + "x" * 24
CMS_KEY = "bench-cms-key-" + "z" * 32
TOPIC = "koe.feedback.submitted.v1"
CITY = ZoneInfo("Asia/Tokyo")  # the aggregator's KOE_TIMEZONE default
GOOD = {"findability": "yes", "clarity": "yes", "usefulness": "yes"}
BAD = {"findability": "no", "clarity": "no", "usefulness": "no"}


class Door:
    """The feedback API as a script sees it: JSON over HTTP from an address of its choice."""

    def __init__(self, port: int):
        self.port = port
        self.challenges: bool | None = None  # learnt on first use

    def post(self, body: dict, source_ip: str = "127.0.0.1", headers: dict | None = None):
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=10, source_address=(source_ip, 0)
        )
        try:
            connection.request(
                "POST",
                "/api/v1/feedback",
                json.dumps(body),
                {"Content-Type": "application/json", **(headers or {})},
            )
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            connection.close()

    def solved(self, page_url: str, source_ip: str = "127.0.0.1") -> str | None:
        """A solved proof-of-work challenge for the page, if this koe asks for one."""
        if self.challenges is False:
            return None
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=10, source_address=(source_ip, 0)
        )
        try:
            query = urllib.parse.urlencode({"page_url": page_url})
            connection.request("GET", f"/api/v1/feedback/challenge?{query}")
            answer = connection.getresponse()
            body = answer.read()
        finally:
            connection.close()
        self.challenges = answer.status == 200
        if not self.challenges:
            return None
        challenge = json.loads(body)
        target, salt = challenge["challenge"], challenge["salt"]
        for number in range(int(challenge["maxnumber"]) + 1):
            if hashlib.sha256(f"{salt}{number}".encode()).hexdigest() == target:
                payload = {key: challenge[key] for key in ("algorithm", "challenge", "salt")}
                payload |= {"number": number, "signature": challenge["signature"]}
                return base64.b64encode(json.dumps(payload).encode()).decode()
        raise RuntimeError("challenge without a solution")

    def answer(
        self,
        page_url: str,
        answers: dict,
        source_ip: str = "127.0.0.1",
        headers: dict | None = None,
        **fields,
    ):
        body = {"page_url": page_url, "answers": answers, "locale": "ja", **fields}
        solution = self.solved(page_url, source_ip)
        if solution is not None:
            body["altcha"] = solution
        return self.post(body, source_ip, headers)


def rotating_headers(i: int) -> dict[str, str]:
    """Everything a client controls, new on every request."""
    return {
        "User-Agent": f"Mozilla/5.0 (bench {i}; {secrets.token_hex(4)})",
        "X-Forwarded-For": f"198.51.100.{i % 250 + 1}",
        "Origin": SITE,
    }


class Koe:
    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.door = Door(stack.port("feedback"))

    def stats(self, path: str) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.stack.port("aggregator"))
        try:
            connection.request("GET", path, headers={"Authorization": f"Bearer {API_TOKEN}"})
            answer = connection.getresponse()
            body = answer.read()
        finally:
            connection.close()
        return answer.status, (json.loads(body) if answer.status == 200 else {})

    def page(self, page_id: str) -> dict:
        return self.stats(f"/api/v1/pages/{page_id}")[1]

    def n(self, page_id: str) -> int:
        page = self.page(page_id)
        return page["windows"]["all"]["n"] if page else 0

    def shown_pages(self, url_part: str) -> int:
        """Pages the stats API lists whose URL holds `url_part`."""
        status, body = self.stats("/api/v1/pages?limit=100000")
        pages = body["pages"] if status == 200 else []
        return sum(url_part in page["url"] for page in pages)

    def mails_about(self, page_url: str) -> list[str]:
        """Subjects of the mails the sink kept that name the page."""
        found = []
        for path in sorted((self.stack.var_dir / "mail").glob("*.eml")):
            mail = message_from_bytes(path.read_bytes(), policy=policy.default)
            text = "".join(
                part.get_content()
                for part in mail.walk()
                if part.get_content_type() == "text/plain"
            )
            if page_url in text:
                found.append(str(mail["Subject"]))
        return found


# -- histories, as events on the topic ----------------------------------------------------


def _source(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()[:32]


def event(page_url: str, answers: dict, at: datetime, source: str | None) -> dict:
    response_id = str(uuid.uuid4())
    url = canonical_url(page_url)
    data = {
        "response_id": response_id,
        "page_id": page_id_for_url(url),
        "page_url": url,
        "page_title": "攻撃の検証ページ",
        "division": None,
        "locale": "ja",
        "answers": answers,
    }
    made = events.make_event(
        TOPIC, source="koe/bench", subject=data["page_id"], event_id=response_id, time=at, data=data
    )
    if source is not None:
        # A koe without sources refuses the field: the history then goes without it.
        with contextlib.suppress(events.InvalidEvent):
            with_source = {**made, "data": {**data, "source": source}}
            events.validate(with_source)
            return with_source
    return made


def days_ago(days: int, hour: int = 11) -> datetime:
    """`hour` o'clock of the city's day `days` ago (Asia/Tokyo, the days the detector
    judges; by the UTC date the days were one off from 15:00 to 24:00 UTC)."""
    today = datetime.now(CITY).replace(hour=hour, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days)


def honest(page_url: str, first: int, last: int, per_day: int, p_good: float, rng) -> list[dict]:
    """Answers from many people (a source each) on days `first` … `last` days ago."""
    produced = []
    for back in range(first, last - 1, -1):
        for i in range(per_day):
            answers = GOOD if rng.random() < p_good else BAD
            at = days_ago(back) + timedelta(minutes=i)
            produced.append(event(page_url, answers, at, _source(f"{page_url}|{back}|{i}")))
    return produced


def one_address(page_url: str, first: int, last: int, per_day: int, answers: dict) -> list[dict]:
    """One address answering every day: one source a day, as koe's daily key makes it."""
    produced = []
    for back in range(first, last - 1, -1):
        for i in range(per_day):
            at = days_ago(back, hour=14) + timedelta(seconds=i)
            produced.append(event(page_url, answers, at, _source(f"attacker|{back}")))
    return produced


def publish(koe: Koe, produced: list[dict]) -> None:
    producer = KafkaProducer(bootstrap_servers=[koe.stack.env["KAFKA_BOOTSTRAP_SERVERS"]])
    try:
        for value in produced:
            producer.send(TOPIC, key=value["subject"].encode(), value=events.encode(value))
        producer.flush()
    finally:
        producer.close()


def settle(koe: Koe, page_url: str, seconds: float = 30) -> list[str]:
    """Wait for the aggregator and notifier to act on what was sent; the mails about the page."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1)
        if koe.mails_about(page_url):
            break
    return koe.mails_about(page_url)


# -- the attacks --------------------------------------------------------------------------


def stuffing(koe: Koe, seconds: float) -> str:
    page = f"{SITE}/bench/stuffing.html"
    page_id = page_id_for_url(page)
    publish(koe, honest(page, 10, 1, 3, 0.9, random.Random(1)))
    wait(lambda: koe.n(page_id) == 30, 60, "the stuffed page's history counted")
    accepted = sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        headers = rotating_headers(sent)
        status, _ = koe.door.answer(
            page, BAD, client_token=str(uuid.uuid4()), headers=headers, page_title="x"
        )
        sent += 1
        accepted += status == 202
    time.sleep(5)  # the relay and the consumer catch up
    counted = koe.n(page_id) - 30
    per_minute = 60 / seconds
    return (
        f"{sent} sent in {seconds:.0f} s, {accepted} accepted "
        f"({accepted * per_minute:,.0f}/min), {counted} counted ({counted * per_minute:,.0f}/min)"
    )


def reused_proof(koe: Koe) -> str:
    page = f"{SITE}/bench/reuse.html"
    solution = koe.door.solved(page)
    body = {"page_url": page, "answers": BAD, "locale": "ja"}
    if solution is not None:
        body["altcha"] = solution
    accepted = sum(
        koe.door.post({**body, "client_token": str(uuid.uuid4())}, headers=rotating_headers(i))[0]
        == 202
        for i in range(50)
    )
    what = "one solved challenge" if solution is not None else "no stamp or challenge"
    return f"{what}, 50 submissions: {accepted} accepted"


def page_flood(koe: Koe, seconds: float) -> str:
    created = sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status, _ = koe.door.answer(
            f"{SITE}/bench/flood/{sent}.html", GOOD, headers=rotating_headers(sent)
        )
        sent += 1
        created += status == 202
    time.sleep(5)
    shown = koe.shown_pages("/bench/flood/")
    return f"{sent} new pages tried in {seconds:.0f} s, {created} accepted, {shown} shown"


def hijack(koe: Koe) -> str:
    """A CMS page (signed id where koe checks signatures), then a POST claiming its id with a
    URL under another division."""
    page, other = f"{SITE}/shisei/dx/cms.html", f"{SITE}/kurashi/gomi/evil.html"
    page_id = "cms-4242"

    def signed(url: str) -> dict:
        digest = hmac.new(
            CMS_KEY.encode(), f"koe-page\n{page_id}\n{canonical_url(url)}".encode(), "sha256"
        )
        return {"page_id": page_id, "page_sig": digest.hexdigest()[:32]}

    for i in range(5):  # enough people for the page to be shown
        address, token = f"127.0.2.{i + 1}", str(uuid.uuid4())
        status, body = koe.door.answer(page, GOOD, address, client_token=token, **signed(page))
        if status == 422 and b"page_sig" in body:  # a koe that trusts any page id
            koe.door.answer(page, GOOD, address, client_token=token, page_id=page_id)
    wait(lambda: bool(koe.page(page_id)), 30, "the CMS page in the stats")
    before = koe.page(page_id)
    status, _ = koe.door.answer(
        other, BAD, page_id=page_id, page_title="乗っ取り", headers=rotating_headers(0)
    )
    time.sleep(5)
    after = koe.page(page_id)
    keys = ("url", "division", "title")
    moved = [k for k in keys if before.get(k) != after.get(k)]
    return f"POST answered {status}; page's {', '.join(moved) or 'URL, division and title'} " + (
        "changed" if moved else "unchanged"
    )


def strangers(koe: Koe) -> str:
    page = f"{SITE}/bench/shared-address.html"
    page_id = page_id_for_url(page)
    iphone = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)"}
    statuses = [
        koe.door.answer(page, GOOD, "127.0.3.1", client_token=str(uuid.uuid4()), headers=iphone)[0]
        for _ in range(11)
    ]
    publish(koe, honest(page, 3, 1, 2, 1.0, random.Random(3)))  # others, so the page shows
    time.sleep(5)
    counted = koe.n(page_id) - 6
    return f"11 people, one address and phone: {statuses.count(202)} accepted, {counted} counted"


# The drop detector reads 84 days of reference 14 days back, and emails no drop it
# judges more than KOE_ALERT_MAX_AGE_DAYS (3) old: injected at once, the bad days are
# the last four and today (a longer spell alarms on its early days: old news; the
# forger's three judged days are too few for the detector without its worst day).
GOOD_DAYS = range(100, 4, -1)
BAD_DAYS = range(4, -1, -1)


def forged_drop(koe: Koe) -> str:
    page = f"{SITE}/bench/forged-drop.html"
    rng = random.Random(4)
    publish(koe, honest(page, GOOD_DAYS[0], GOOD_DAYS[-1], 4, 0.9, rng))
    publish(
        koe, honest(page, BAD_DAYS[0], 0, 4, 0.9, rng) + one_address(page, BAD_DAYS[0], 0, 30, BAD)
    )
    return f"{len(settle(koe, page))} emails"


def honest_drop(koe: Koe) -> str:
    page = f"{SITE}/bench/honest-drop.html"
    rng = random.Random(5)
    publish(koe, honest(page, GOOD_DAYS[0], GOOD_DAYS[-1], 4, 0.9, rng))
    publish(koe, honest(page, BAD_DAYS[0], 0, 6, 0.2, rng))
    return f"{len(settle(koe, page, 60))} emails"


def buried_drop(koe: Koe) -> str:
    page = f"{SITE}/bench/buried-drop.html"
    rng = random.Random(6)
    good = honest(page, GOOD_DAYS[0], GOOD_DAYS[-1], 4, 0.9, rng)
    publish(koe, good + one_address(page, BAD_DAYS[0] + 7, BAD_DAYS[0] + 1, 60, GOOD))
    # Days already judged are not judged again: the flood's last days come with the drop's.
    publish(
        koe, one_address(page, BAD_DAYS[0], 0, 60, GOOD) + honest(page, BAD_DAYS[0], 0, 6, 0.2, rng)
    )
    return f"{len(settle(koe, page, 60))} emails"


def forged_recovery(koe: Koe) -> str:
    page = f"{SITE}/bench/forged-recovery.html"
    rng = random.Random(7)
    publish(koe, honest(page, GOOD_DAYS[0], GOOD_DAYS[-1] + 1, 4, 0.9, rng))
    publish(koe, honest(page, BAD_DAYS[0] + 1, 1, 6, 0.2, rng))
    drop = settle(koe, page, 60)
    publish(koe, one_address(page, 0, 0, 30, GOOD))
    time.sleep(15)
    return f"drop: {len(drop)} email(s); after 30 'yes' from one address: " + (
        f"{len(koe.mails_about(page)) - len(drop)} more"
    )


ATTACKS = {
    "stuffing": "One address stuffs one page (rotating UA, token, Origin, X-Forwarded-For)",
    "reused_proof": "One stamp/challenge reused",
    "page_flood": "One address creates pages",
    "hijack": "A POST claims a CMS page's id with a URL under another division",
    "strangers": "11 people behind one address with identical phones",
    "forged_drop": "Forged drop: 30 'no' a day for five days from one address",
    "honest_drop": "Control: a real drop from many people",
    "buried_drop": "A real drop after 60 'yes' a day for a week from one address",
    "forged_recovery": "Forged recovery: 30 'yes' from one address the day after a drop",
}


@contextlib.contextmanager
def running_koe(var: Path) -> Iterator[Koe]:
    with contextlib.ExitStack() as stack:
        urls = {
            s: stack.enter_context(pg_database()) for s in ("feedback", "aggregator", "notifier")
        }
        own = ("KOE_", "KAFKA_", "SMTP_", "GUNICORN_", "FEEDBACK_", "AGGREGATOR_", "NOTIFIER_")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(own)},
            "KOE_API_TOKEN": API_TOKEN,
            "KOE_CMS_KEY": CMS_KEY,
            "KOE_ALLOWED_ORIGINS": SITE,
            "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
            "KOE_BROKER_PORT": str(free_port()),
            "SMTP_PORT": str(free_port()),
            **{f"KOE_{s.upper()}_PORT": str(free_port()) for s in urls},
            **{f"{s.upper()}_DATABASE_URL": url for s, url in urls.items()},
            # The bench sends faster than a person; the attacks are not about that check.
            "KOE_MIN_SUBMIT_SECONDS": "0",
        }
        local = LocalStack.from_env(env, var)
        stack.callback(local.stop)
        local.start_infrastructure()
        local.start_all()
        for name in ("aggregator-consumer", "notifier-consumer"):
            log = var / "log" / f"{name}.log"
            wait(lambda log=log: "partitions assigned" in log.read_text(), 60, f"{name} to join")
        yield Koe(local)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="length of the HTTP floods")
    parser.add_argument("--only", nargs="*", choices=sorted(ATTACKS), help="attacks to run")
    args = parser.parse_args()
    # A stopped bench stops the koe it started: SystemExit unwinds running_koe's stack.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    var = Path(tempfile.mkdtemp(prefix="koe-attacks-"))
    print(f"# koe under attack ({sys.executable}); logs in {var}/log")
    with running_koe(var) as koe:
        for name, what in ATTACKS.items():
            if args.only and name not in args.only:
                continue
            attack = globals()[name]
            timed = (stuffing, page_flood)
            result = attack(koe, args.seconds) if attack in timed else attack(koe)
            print(f"| {what} | {result} |", flush=True)


if __name__ == "__main__":
    main()
