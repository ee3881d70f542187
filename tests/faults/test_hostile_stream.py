"""Hostile input through the whole running koe (gunicorn, relay, broker, aggregator,
notifier, an SMTP server) while honest citizens keep answering beside it: every class of
hostile request from issue 6 is refused with a 4xx (or, for a page title, made one
harmless line), none of it reaches the feedback DB, the topic or the stats, and the
honest stream is counted exactly once, undisturbed. Then a hostile page title that is
accepted travels all the way into an alert email and the dashboard, as text.

services/feedback/tests/test_hostile_input.py checks each refusal's reason on the API
alone; this checks what the whole pipeline does with them. Raw sockets send what an
HTTP client library would refuse to send or would fix up."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.policy import default as email_policy
from html.parser import HTMLParser
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import select

from faults.stream import PAGES, Citizens, all_time, counted, tally, wait_until_ready
from feedback.models import OutboxEntry, Response
from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from koe_kit import events
from koe_kit.db import make_engine
from koe_kit.kafka import read_topic
from support import (
    API_TOKEN,
    DX_PAGE,
    SITE,
    Koe,
    RawAnswer,
    city_noon,
    drained,
    from_address,
    publish,
    raw_http,
    signed_proof,
    submitted,
    wait_for_partitions,
)

pytestmark = pytest.mark.e2e

FEEDBACK_TOPIC = "koe.feedback.submitted.v1"
# What an attacker writes into a text field: header breaks (CR LF, a lone LF, the Unicode
# line separator), an RFC 2047 encoded word that a mail parser would decode into a
# header break, markup, a NUL (PostgreSQL text cannot hold one) and a DEL.
HOSTILE_TEXT = (
    "\r\nBcc: evil@example.com\r\n\r\n",
    "\nX-Injected: 1",
    "\u2028Bcc: evil@example.com",
    " =?utf-8?q?x=0D=0ABcc:_x@evil.example?=",
    '"><script>alert(1)</script><img src=x onerror=alert(2)>',
    "\x00",
    "\x7f",
)
# Characters a neutralised title must not hold: a second line, a control, a NUL.
NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Characters a Location header built from hostile input must not hold.
NOT_IN_A_LOCATION = re.compile(r'[\x00-\x20\x7f"<>]')
TOKEN = "6f1c3c1e-7f4e-4a53-9a55-4f6a1b2c3d4e"  # noqa: S105 (a client_token)
# Valid values of every field the widget may send, to make one of them hostile at a time.
FIELDS = {
    "page_id": "shirasagi-1",
    "division": "kankyo-gomi",
    "locale": "ja",
    "client_token": TOKEN,
    "altcha": "eyJhbGdvcml0aG0iOiAiU0hBLTI1NiJ9",
    "homepage": "x",
}
TRAVERSALS = (
    "../../etc/passwd",
    "..",
    "a/../../b",
    "%2e%2e%2f%2e%2e%2fetc",
    "..\\..\\windows",
    "page\x00.html",
    "page\n",
    "a" * 129,
)
FOREIGN_ORIGINS = (
    "https://evil.example",
    "null",
    "http://www.info.city.tsu.mie.jp",
    "https://www.info.city.tsu.mie.jp.evil.example",
)


# -- raw HTTP ---------------------------------------------------------------------------


def http(
    method: str,
    path: str,
    body: bytes = b"",
    *headers: str,
    content_type: str | None = "application/json",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_post(body: dict | bytes, *headers: str) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http("POST", "/api/v1/feedback", data, *headers)


def form_post(fields: dict[str, str], *headers: str) -> bytes:
    data = urlencode(fields).encode()
    return http(
        "POST", "/feedback", data, *headers, content_type="application/x-www-form-urlencoded"
    )


# -- the hostile requests, class by class -----------------------------------------------


@dataclass(frozen=True)
class Hostile:
    request: bytes
    want: frozenset[int]  # the statuses it may get: the refusals its class earns
    form: bool = False  # the plain form: a person is sent back to the page (303)
    accepted: bool = False  # neutralised, not refused: stored once made harmless
    service: str = "feedback"


@dataclass(frozen=True)
class InputClass:
    name: str
    page: str  # the page its requests name, where a hostile one counted would show
    build: Callable[[str], list[Hostile]]  # its requests, made just before they are sent

    def requests(self) -> list[Hostile]:
        return self.build(self.page)


def good(page: str) -> dict:
    """A good answer to `page`, with a proof of work of its own (support.signed_proof)."""
    return {
        "page_url": page,
        "answers": {"clarity": "no"},
        "locale": "ja",
        "altcha": signed_proof(page),
    }


def good_form(page: str) -> dict[str, str]:
    return {"page_url": page, "clarity": "no"}


def refused_json(request: bytes, *statuses: int) -> Hostile:
    return Hostile(request, frozenset(statuses))


def refused_form(fields: dict[str, str]) -> Hostile:
    # Refused on the form path: back to the page's error message, or a 4xx when there
    # is no page of ours to go back to.
    return Hostile(form_post(fields), frozenset({303, 422}), form=True)


def deep(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


def oversized(page: str) -> list[Hostile]:
    big = "x" * 20_000
    chunked = (
        b"POST /api/v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"".join(b"1000\r\n" + b" " * 4096 + b"\r\n" for _ in range(8))
        + b"0\r\n\r\n"
    )
    never_sent = json_post(good(page)).replace(b"Content-Length: ", b"Content-Length: 1000000")
    return [
        refused_json(json_post({**good(page), "page_title": big}), 413),
        refused_json(json_post({**good(page), "page_title": "津" * 6000}), 413),
        Hostile(form_post({**good_form(page), "page_title": big}), frozenset({413}), form=True),
        refused_json(never_sent, 413),
        refused_json(chunked, 413),
    ]


def deep_json(page: str) -> list[Hostile]:
    inside = json.dumps(good(page))[:-1]
    bodies = [deep(5000), deep(2000, '{"a":', "}").replace("}", "1}", 1)]
    bodies += [inside + ', "answers": ' + deep(990, '{"a":', "}") + "}"]
    # Around Python's recursion limit, where json.loads may manage and what follows not.
    for depth in range(900, 1100, 25):
        bodies += [deep(depth), inside + ', "x": ' + deep(depth) + "}"]
    return [refused_json(json_post(body.encode()), 400, 422) for body in bodies]


def wrong_content_types(page: str) -> list[Hostile]:
    body = json.dumps(good(page)).encode()
    form = urlencode(good_form(page)).encode()
    cases = [
        ("/api/v1/feedback", "text/plain", body),
        ("/api/v1/feedback", "application/xml", b"<feedback/>"),
        ("/api/v1/feedback", "application/x-www-form-urlencoded", form),
        ("/api/v1/feedback", "application/json-patch+json", body),
        ("/api/v1/feedback", None, body),
        ("/feedback", "application/json", body),
        ("/feedback", "text/plain", form),
        ("/feedback", None, form),
    ]
    return [
        refused_json(http("POST", path, data, content_type=kind), 415) for path, kind, data in cases
    ]


def invalid_utf8(page: str) -> list[Hostile]:
    head = json.dumps(good(page))[:-1].encode()
    cases = [b"\xff\xfe", b"\xe6\xb4", b"\xc0\xaf", b"\xed\xa0\x80", b"\\udc00"]
    requests = [
        refused_json(json_post(head + b', "page_title": "' + c + b'"}'), 400) for c in cases
    ]
    requests.append(refused_json(json_post(b'{"page_url": "\xff\xfe"}'), 400))
    # Raw bytes in a form (a browser percent-encodes): refused, no page to go back to.
    raw_form = urlencode(good_form(page)).encode() + b"&page_title=\xff\xfe"
    form = http("POST", "/feedback", raw_form, content_type="application/x-www-form-urlencoded")
    requests.append(Hostile(form, frozenset({422}), form=True))
    return requests


def huge_headers(page: str) -> list[Hostile]:
    # gunicorn's limits (request line 4094, a field 8190, 100 fields) and its header
    # parser: refused before the app sees the request.
    body = good(page)
    return [
        refused_json(json_post(body, "X-Big: " + "a" * 20_000), 400, 431),
        refused_json(json_post(body, "Cookie: " + "; ".join(["c=" + "v" * 100] * 200)), 400, 431),
        refused_json(json_post(body, *(f"X-H{n}: {n}" for n in range(300))), 400, 431),
        refused_json(
            http("POST", "/api/v1/feedback?" + "q=1&" * 3000, json.dumps(body).encode()), 400, 414
        ),
        refused_json(json_post(body, "X-A: a\rBcc: b"), 400),
        refused_json(json_post(body, "X-A: a\x00b"), 400),
        refused_json(json_post(body, "Content-Length: 5"), 400),  # a second, different one
        refused_json(json_post(body).replace(b"Content-Length: ", b"Content-Length: -"), 400),
    ]


def crlf_and_markup(page: str) -> list[Hostile]:
    """Each hostile text in each text field, on both paths. In page_title it is
    accepted, made one line (the emails and dashboard escape the rest); in the form's
    way back it is accepted and the redirect made harmless; anywhere else refused."""
    requests = []
    for bad in HOSTILE_TEXT:
        json_fields = {
            **{name: value + bad for name, value in FIELDS.items()},
            "page_url": page + bad,
            "answers": {"clarity": "no" + bad},
        }
        for name, value in json_fields.items():
            field = {name: value} if name != "answers" else {"answers": value}
            # A bad proof is a 403 (views.py); a bad field of the body a 422.
            status = 403 if name == "altcha" else 422
            requests.append(refused_json(json_post({**good(page), **field}), status))
        title = json_post({**good(page), "page_title": "ごみ" + bad})
        requests.append(Hostile(title, frozenset({202}), accepted=True))
        form_fields = {
            **{name: value + bad for name, value in FIELDS.items()},
            "page_url": page + bad,
            "clarity": "no" + bad,
            "koe_widget": "a" + bad,
        }
        for name, value in form_fields.items():
            requests.append(refused_form({**good_form(page), name: value}))
        for name in ("page_title", "return_to"):
            fields = {**good_form(page), name: ("ごみ" if name == "page_title" else page) + bad}
            requests.append(Hostile(form_post(fields), frozenset({303}), form=True, accepted=True))
    return requests


def path_traversal(page: str) -> list[Hostile]:
    requests = []
    for page_id in TRAVERSALS:
        requests.append(refused_json(json_post({**good(page), "page_id": page_id}), 422))
        requests.append(refused_form({**good_form(page), "page_id": page_id}))
    # And where page ids are read back: the stats API, with a valid token.
    bearer = f"Authorization: Bearer {API_TOKEN}"
    for path in (
        "/api/v1/pages/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/pages/%2e%2e",
        "/api/v1/pages/..%5C..%5Cwindows",
        "/api/v1/pages/u-0%00",
        "/export/pages/..%2F..%2Fetc/daily.csv",
    ):
        request = http("GET", path, b"", bearer, content_type=None)
        requests.append(Hostile(request, frozenset({400, 404}), service="aggregator"))
    return requests


def foreign_origins(page: str) -> list[Hostile]:
    requests = []
    for origin in FOREIGN_ORIGINS:
        header = f"Origin: {origin}"
        requests += [
            refused_json(json_post(good(page), header), 403),
            refused_json(http("GET", challenge_path(page), b"", header, content_type=None), 403),
            refused_json(
                http(
                    "OPTIONS",
                    "/api/v1/feedback",
                    b"",
                    header,
                    "Access-Control-Request-Method: POST",
                    content_type=None,
                ),
                403,
            ),
        ]
        requests.append(Hostile(form_post(good_form(page), header), frozenset({403})))
    return requests


def challenge_path(page: str) -> str:
    return f"/api/v1/feedback/challenge?{urlencode({'page_url': page})}"


def bad_proofs(page: str) -> list[Hostile]:
    """No proof, garbage, forged, expired, another page's, and one spent twice."""
    good_one = json.loads(base64.b64decode(signed_proof(page)))
    forged = good_one | {"signature": "0" * 64}
    proofs = [
        None,
        "",
        "garbage",
        base64.b64encode(b"[1, 2, 3]").decode(),
        base64.b64encode(json.dumps(forged).encode()).decode(),
        base64.b64encode(json.dumps(good_one | {"number": "7"}).encode()).decode(),
        signed_proof(page, expires=datetime.now(UTC) - timedelta(minutes=1)),
        signed_proof(f"{page}.other.html"),
        signed_proof(page, key="not koe's key, " + "n" * 32),
        signed_proof(page) + "\u2028",
        "ｓｉｇｎａｔｕｒｅ",  # non-ASCII: no decoding may choke on it
    ]
    requests = [refused_json(json_post({**good(page), "altcha": proof}), 403) for proof in proofs]
    # Spent once, by a citizen whose answer counts, then copied into another answer.
    spent = good(page)
    requests.append(Hostile(json_post(spent), frozenset({202}), accepted=True))
    copied = {**spent, "client_token": TOKEN, "answers": {"clarity": "yes"}}
    requests.append(refused_json(json_post(copied), 403))
    # The plain form cannot do the work: a proof there is a field it does not know.
    requests.append(refused_form({**good_form(page), "altcha": signed_proof(page)}))
    return requests


def honeypot(page: str) -> list[Hostile]:
    filled = ["http://spam.example", "x", " x ", {}, 0, False, ["x"]]
    requests = [refused_json(json_post({**good(page), "homepage": v}), 422) for v in filled]
    for value in ("http://spam.example", "x"):
        requests.append(refused_form({**good_form(page), "homepage": value}))
    return requests


def input_classes(koe: Koe) -> list[InputClass]:
    """Every class of hostile input, each naming a page of its own."""

    def page(slug: str) -> str:
        return canonical_url(f"{SITE}/hostile/{slug}.html")

    builders: list[tuple[str, str, Callable[[str], list[Hostile]]]] = [
        ("oversized bodies", "oversized", oversized),
        ("deeply nested JSON", "deep", deep_json),
        ("wrong content types", "content-type", wrong_content_types),
        ("invalid UTF-8", "utf8", invalid_utf8),
        ("huge and broken headers", "headers", huge_headers),
        ("CRLF and markup in every text field", "crlf", crlf_and_markup),
        ("path traversal in page ids", "traversal", path_traversal),
        ("foreign Origin (CORS)", "cors", foreign_origins),
        ("missing, forged, expired, misplaced or spent proofs of work", "proof", bad_proofs),
        ("honeypot filled", "honeypot", honeypot),
    ]
    return [InputClass(name, page(slug), build) for name, slug, build in builders]


# -- what the pipeline holds --------------------------------------------------------------


@dataclass
class Stored:
    rows: dict[str, tuple[str, str | None, int]]  # response id -> (page url, title, answers)
    outbox: Counter[str]  # event ids in the outbox

    def per_page(self) -> tuple[Counter[str], Counter[str]]:
        """Responses and answers per page, as faults.stream.tally takes them."""
        responses, answers = Counter[str](), Counter[str]()
        for url, _, n in self.rows.values():
            responses[url] += 1
            answers[url] += n
        return responses, answers


def stored(koe: Koe) -> Stored:
    engine = make_engine(koe.stack.env["FEEDBACK_DATABASE_URL"])
    try:
        with engine.connect() as db:
            rows = db.execute(
                select(
                    Response.id,
                    Response.page_url,
                    Response.page_title,
                    Response.findability,
                    Response.clarity,
                    Response.usefulness,
                )
            ).all()
            outbox = Counter(db.execute(select(OutboxEntry.event_id)).scalars())
    finally:
        engine.dispose()
    return Stored(
        {r.id: (r.page_url, r.page_title, sum(a is not None for a in r[3:])) for r in rows},
        outbox,
    )


def published(bootstrap: str) -> list[dict]:
    return [events.decode(record.value) for record in read_topic([bootstrap], FEEDBACK_TOPIC)]


def check_answer(hostile: Hostile, answer: RawAnswer) -> None:
    """Refused with a status it may get (never a 5xx), or, if neutralised, accepted; no
    CORS grant to anyone; a redirect that leads only to the page's own message."""
    what = hostile.request[-200:]  # the hostile part is at the end of most
    assert answer.status < 500 and answer.status in hostile.want, (
        what,
        answer.status,
        answer.body[:200],
    )
    assert "access-control-allow-origin" not in answer.headers, what
    if answer.status == 303:
        location = answer.headers["location"]
        assert not NOT_IN_A_LOCATION.search(location), location
        outcome = "koe-thanks" if hostile.accepted else "koe-error"
        assert urlsplit(location).fragment == outcome, (what, location)


def test_hostile_input_is_refused_and_never_disturbs_the_honest_stream(
    koe_factory, broker, figures
):
    koe = koe_factory(KOE_BATCH_MAX_MESSAGES="50")
    wait_until_ready(koe)
    classes = input_classes(koe)
    citizens = Citizens(koe, pause_s=0.005).start()
    wait_until(lambda: counted(koe) >= 50, what="the honest stream flowing into the stats")

    beside: dict[str, int] = {}  # honest responses accepted while each class was sent
    sent: dict[str, int] = {}  # hostile requests of each class
    accepted_ids: list[str] = []  # neutralised requests the JSON API accepted
    accepted_by_form = 0  # and the form path, which answers with a redirect, not an id
    for input_class in classes:
        before = citizens.total
        requests = input_class.requests()
        sent[input_class.name] = len(requests)
        for hostile in requests:
            last = citizens.total
            answer = raw_http(koe.stack.port(hostile.service), hostile.request)
            check_answer(hostile, answer)
            if hostile.accepted and hostile.form:
                accepted_by_form += 1
            elif hostile.accepted:
                accepted_ids.append(json.loads(answer.body)["id"])
            # Interleaved: each hostile request has an honest answer accepted beside it.
            wait_until(lambda last=last: citizens.total > last, what="an honest answer beside")
        beside[input_class.name] = citizens.total - before
    citizens.stop()

    # The honest stream was not disturbed: every answer accepted, none hung or broken.
    assert set(citizens.statuses) == {202}, citizens.statuses
    assert citizens.hangs == citizens.broken == 0
    assert koe.stack.dead() == [], "a koe process died of hostile input"
    expected = len(citizens.ids) + len(accepted_ids) + accepted_by_form
    wait_until(lambda: counted(koe) >= expected, what=f"{expected} responses counted")

    # The feedback DB and the topic hold the honest responses and the neutralised ones,
    # each once, and nothing of a refused request.
    db = stored(koe)
    honest = set(citizens.ids) | set(accepted_ids)
    assert honest <= set(db.rows)
    by_form = {i: row for i, row in db.rows.items() if i not in honest}
    crlf_page = next(c.page for c in classes if c.name.startswith("CRLF"))
    assert len(by_form) == accepted_by_form
    assert {url for url, _, _ in by_form.values()} == {crlf_page}
    assert db.outbox == Counter(db.rows.keys())  # one event per row, no orphan
    on_topic = Counter(e["id"] for e in published(broker.bootstrap))
    assert on_topic == Counter(db.rows.keys())
    # What was accepted from hostile text was made one line of text.
    neutralised = [db.rows[i][1] for i in set(accepted_ids) | set(by_form)]
    assert neutralised and all(t is None or not NOT_ONE_LINE.search(t) for t in neutralised)

    # The stats count each stored response once, page by page and question by question,
    # and no page but the honest ones and the neutralised ones'.
    result = tally(koe, citizens, stored=db.per_page())
    assert result.wrong == [], result.wrong
    # The proofs' page holds the one answer that spent its proof before it was copied.
    proof_page = next(c.page for c in classes if "proofs of work" in c.name)
    assert set(all_time(koe)) == set(PAGES) | {crlf_page, proof_page}
    stored_per_page = db.per_page()[0]
    for input_class in classes:
        n = all_time(koe).get(input_class.page, {"n": 0})["n"]
        doubled = n - stored_per_page[input_class.page]
        assert doubled == 0, input_class.name
        figures(
            fault=f"{input_class.name} ({sent[input_class.name]} requests)",
            in_flight=beside[input_class.name],
            lost=result.lost,
            doubled=doubled + result.doubled,
        )


# -- a hostile title accepted, into an alert email and the dashboard ---------------------

# An RFC 2047 word that a mail parser would decode into CR LF and a Bcc header, a real
# CR LF with one, and markup; it starts with "=", as a CSV formula would.
HOSTILE_TITLE = (
    "=?utf-8?q?=E6=B4=A5=0D=0ABcc:_x@evil.example?= 津市\r\nBcc: evil@example.com\r\n\r\n"
    "<script>alert(1)</script><img src=x onerror=alert(2)>"
)
ONE_LINE_TITLE = (
    "=?utf-8?q?=E6=B4=A5=0D=0ABcc:_x@evil.example?= 津市 Bcc: evil@example.com "
    "<script>alert(1)</script><img src=x onerror=alert(2)>"
)
DX_DIVISION_MAIL = "digital-kaikaku@city-tsu.example"
GOOD, BAD = {"clarity": "yes", "usefulness": "yes"}, {"clarity": "no", "usefulness": "no"}
LIVE = 24  # citizens today, each on an address of their own (a title needs five)


def baseline(page_url: str) -> list[dict]:
    """100 good days up to three days ago (the drop detector's reference needs 98 days
    behind the judged day), five answers a day, as the relay publishes."""
    return [
        submitted(page_url, GOOD, city_noon(d) - timedelta(minutes=i))
        for d in range(3, 103)
        for i in range(5)
    ]


def bad_days(page_url: str) -> list[dict]:
    """Eight citizens a day found the page bad the day before yesterday and yesterday.
    Yesterday is completed by the first answer today; until then only the day before is
    judged, and one bad day alone never alarms (the detector judges without its most
    decisive day)."""
    return [
        submitted(page_url, BAD, city_noon(d) - timedelta(minutes=i), source=f"bad {d} {i}")
        for d in (2, 1)
        for i in range(8)
    ]


# The headers notifier.compose writes; anything else in an alert came from its input.
MAIL_HEADERS = {
    *("subject", "from", "to", "date", "message-id", "auto-submitted"),
    *("content-type", "mime-version"),
}


def header_names(raw: bytes) -> set[str]:
    """The names of a raw mail's headers, as a mail client splits them into lines."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0].decode("ascii")
    return {
        line.split(":", 1)[0].lower()
        for line in re.split(r"\r?\n", head)
        if line and line[0] not in " \t"
    }


class _Seen(HTMLParser):
    """The text a reader sees in HTML, and the tags in it."""

    def __init__(self, markup: str):
        super().__init__()
        self.text: list[str] = []
        self.tags: set[str] = set()
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)

    def handle_data(self, data):
        self.text.append(data)

    @property
    def seen(self) -> str:
        return " ".join("".join(self.text).split())


def test_a_hostile_title_reaches_the_email_and_the_dashboard_only_as_text(
    koe_factory, broker, smtp_server, tmp_path, figures
):
    # The daily sweep judges a day only a whole day after it ends: yesterday stays for
    # the batch of today's answers to complete.
    koe = koe_factory(KOE_ALERT_SWEEP_GRACE_MINUTES="1439")
    wait_until_ready(koe)
    dx_id = page_id_for_url(canonical_url(DX_PAGE))
    # Good months, then two bad days: only the first of them is complete, so no drop yet.
    history = baseline(DX_PAGE) + bad_days(DX_PAGE)
    publish(broker.bootstrap, FEEDBACK_TOPIC, history)
    wait_until(lambda: koe.page_n(dx_id) == len(history), what="the history counted")
    drained(koe, broker.bootstrap)  # an email, if the detector judged a day too early, is here
    assert smtp_server.messages == [], "one bad day must not drop"

    # Today citizens, each on an address of their own, find the page bad; its CMS sent a
    # hostile title. The aggregator reads them in one batch once all are on the topic
    # (it is stopped meanwhile): the batch that completes yesterday, and so sends the
    # drop, is the one whose five and more sources set the title.
    wait_for_partitions(koe, "aggregator-consumer")
    koe.stack.kill("aggregator-consumer", signal.SIGTERM)
    for i in range(LIVE):
        answer = from_address(f"127.0.6.{i + 1}").post(
            koe.url("feedback", "/api/v1/feedback"),
            json={"page_url": DX_PAGE, "page_title": HOSTILE_TITLE, "answers": BAD},
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
    wait_until(
        lambda: len(read_topic([broker.bootstrap], FEEDBACK_TOPIC)) == len(history) + LIVE,
        what="today's answers on the topic",
    )
    koe.stack.start("aggregator-consumer")
    wait_until(lambda: smtp_server.messages, timeout_s=60, what="the alert email")
    wait_until(lambda: koe.page_n(dx_id) == len(history) + LIVE, what="every answer counted")
    drained(koe, broker.bootstrap)  # a second email, if the detector fired twice, is here
    assert koe.stats(f"/api/v1/pages/{dx_id}").json()["title"] == ONE_LINE_TITLE

    # The email: no injected header, one recipient, a one-line subject, markup as text.
    assert len(smtp_server.messages) == 1
    assert [recipients for _, recipients in smtp_server.handler.envelopes] == [[DX_DIVISION_MAIL]]
    (raw,) = [path.read_bytes() for path in (tmp_path / "mail").glob("*.eml")]
    assert header_names(raw) <= MAIL_HEADERS, header_names(raw)
    mail = BytesParser(policy=email_policy).parsebytes(raw)
    subject = str(mail["Subject"])
    assert "\r" not in subject and "\n" not in subject and "=?" not in subject, subject
    # The title is in it (cut to fit) as text: the word's "=?" full-width, so no client
    # decodes it.
    assert subject.split(": ", 1)[1].startswith(
        "＝?utf-8?q?=E6=B4=A5=0D=0ABcc:_x@evil.example?= 津市"
    )
    assert [a.addr_spec for a in mail["To"].addresses] == [DX_DIVISION_MAIL]
    assert mail["Bcc"] is None and mail["Cc"] is None
    markup = mail.get_body(preferencelist=("html",)).get_content()
    seen = _Seen(markup)
    assert not {"script", "img"} & seen.tags
    assert "<script>alert(1)</script><img src=x onerror=alert(2)>" in seen.seen
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in markup

    # The dashboard: in the page list and on the page, the title is escaped text.
    koe.create_account("clerk@somu.example", "somu-dx")
    clerk = koe.signed_in("clerk@somu.example")
    escaped = html.escape(ONE_LINE_TITLE, quote=False)
    for path in ("/pages", f"/pages/{dx_id}"):
        body = clerk.get(koe.url("aggregator", path), timeout=10).text
        assert escaped in body, path
        assert "<script>alert(1)" not in body and "<img src=x" not in body, path
        assert not {"script", "img"} & _Seen(body).tags, path
    # The CSV: one row per window, the title one cell, its leading "=" made harmless.
    exported = clerk.get(koe.url("aggregator", "/export/pages.csv"), timeout=10)
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert {len(row) for row in rows} == {len(rows[0])}
    assert [(r[0], r[1]) for r in rows[1:]] == [(dx_id, "'" + ONE_LINE_TITLE)] * 3

    # Counted and emailed exactly once (asserted above).
    figures(
        fault="page title with CR LF, an RFC 2047 word and markup, into an alert and the dashboard",
        in_flight=len(history) + LIVE,
        lost=0,
        doubled=0,
    )
