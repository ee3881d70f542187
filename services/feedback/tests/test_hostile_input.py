"""Hostile input against the survey API, on a real database (SQLite and PostgreSQL), and
through real gunicorn for what gunicorn itself guards (request line and header limits,
chunked bodies): every attempt is refused with a 4xx that names the field and the
reason, or neutralised, never a 5xx, and nothing refused is stored (no response row, no
outbox row)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import select

from feedback.migrate import MIGRATIONS
from feedback.models import OutboxEntry, Response
from koe_devkit.local_broker import free_port, wait_for_port
from koe_kit import events
from koe_kit.db import make_engine, upgrade
from support import CHALLENGE_KEY, CHALLENGE_MAX_NUMBER, LIFTED_BUDGETS, answered, raw_http, solve

REPO = Path(__file__).resolve().parents[3]
SITE = "https://www.info.city.tsu.mie.jp"
PAGE = f"{SITE}/shisei/dx/1234.html"
TOKEN = "6f1c3c1e-7f4e-4a53-9a55-4f6a1b2c3d4e"  # noqa: S105 (a client_token)
# What an attacker puts into a text field: a header break, markup, a NUL (PostgreSQL
# text cannot hold one), a Unicode line separator.
CRLF = "\r\nBcc: evil@example.com\r\n\r\n"
MARKUP = '"><script>alert(1)</script>'
NUL = "\x00"


def refused(answer, status: int, field: str) -> dict[str, list[str]]:
    """The answer is `status` with errors naming `field`, each with a reason."""
    assert answer.status_code == status, (answer.status_code, answer.get_data(as_text=True))
    assert answer.is_json
    errors = answer.get_json()["errors"]
    assert field in errors, errors
    assert all(isinstance(reason, str) and reason for reason in errors[field]), errors
    return errors


# -- the JSON API ---------------------------------------------------------------------

# Every text field the schema reads, and the two the spam checks read, as a hostile
# value would be written into it: a line break, markup, a NUL, a DEL.
HOSTILE_FIELDS = {
    "page_url": lambda bad: f"{PAGE}{bad}",
    "page_id": lambda bad: f"shirasagi:1{bad}",
    "division": lambda bad: f"somu-dx{bad}",
    "locale": lambda bad: f"ja{bad}",
    "client_token": lambda bad: f"{TOKEN}{bad}",
    "altcha": lambda bad: f"eyJhIjogMX0={bad}",
    "homepage": lambda bad: f"x{bad}",
    "answers.clarity": lambda bad: f"yes{bad}",
}
HOSTILE_VALUES = (CRLF, "\n", MARKUP, NUL, "\x7f")


@pytest.mark.parametrize("field", HOSTILE_FIELDS)
def test_a_hostile_text_field_is_refused_by_name_and_nothing_is_stored(client, counts, field):
    for bad in HOSTILE_VALUES:
        value = HOSTILE_FIELDS[field](bad)
        if field == "answers.clarity":
            body = answered(answers={"clarity": value})
        else:
            body = answered(**{field: value})

        # The proof of work is a 403 (views.py); every field of the body a 422.
        status = 403 if field == "altcha" else 422
        refused(client.post("/api/v1/feedback", json=body), status, field)
    assert counts() == (0, 0)


TRAVERSALS = [
    "../../etc/passwd",
    "..",  # not starting with a letter or digit
    "a/../../b",
    "%2e%2e/%2e%2e/etc",
    "%2e%2e%2fetc",
    "a\\..\\b",
    "..\\..\\windows",
    "page\x00.html",
    "a" * 129,  # longer than any CMS id: 128 at most
    "ページ",  # non-ASCII
    "ｐage",  # a full-width letter that NFKC would turn into "p"
    "page\n",  # Python's $ matched before the line break
    " page",
]


def test_path_traversal_in_a_page_id_is_refused(client, counts):
    for page_id in TRAVERSALS:
        answer = client.post("/api/v1/feedback", json=answered(page_id=page_id))
        errors = refused(answer, 422, "page_id")
        # By the schema's own check, not by the event schema after it.
        assert errors["page_id"] == ["String does not match expected pattern."], page_id
    assert counts() == (0, 0)


def test_a_title_with_line_breaks_and_markup_is_one_line_of_text_when_stored_and_published(
    client, engine
):
    title = f"津市<b>の</b>{CRLF}DX\u2028取組\x85状況{NUL}<script>alert(1)</script>"

    answer = client.post("/api/v1/feedback", json=answered(page_title=title))

    assert answer.status_code == 202, answer.get_json()
    with engine.connect() as connection:
        stored = connection.execute(select(Response.page_title)).scalar_one()
        payload = connection.execute(select(OutboxEntry.payload)).scalar_one()
    published = events.decode(payload.encode("utf-8"))["data"]["page_title"]
    expected = "津市<b>の</b> Bcc: evil@example.com DX 取組 状況 <script>alert(1)</script>"
    # Kept as the text it is (the dashboard and the emails escape it); only the breaks go,
    # so it can never become a second line of an email header or of a CSV row.
    assert stored == published == expected


def test_a_refused_field_or_honeypot_stores_nothing_on_the_form_path_either(client, counts):
    for field, value in (("altcha", f"1.x{CRLF}"), ("homepage", MARKUP), ("page_id", "../x")):
        answer = client.post("/feedback", data={"page_url": PAGE, "clarity": "yes", field: value})
        assert answer.status_code == 303, field
        assert urlsplit(answer.headers["Location"]).fragment == "koe-error", field
    assert counts() == (0, 0)


@pytest.mark.parametrize("where", ["page_url", "return_to"])
def test_a_nul_in_a_form_url_is_refused_or_encoded_never_a_server_error(client, counts, where):
    bad = f"{SITE}/a{NUL}b.html"
    fields = {"page_url": PAGE, "clarity": "yes", where: bad}
    answer = client.post("/feedback", data=fields)

    assert answer.status_code == 303
    location = answer.headers["Location"]
    assert NUL not in location and "\r" not in location and "\n" not in location
    if where == "page_url":
        # Refused: it would be a page nobody can have.
        assert urlsplit(location).fragment == "koe-error"
        assert counts() == (0, 0)
    else:
        # Only the way back: sent back to it, the NUL percent-encoded.
        assert urlsplit(location).path == "/a%00b.html"
        assert counts() == (1, 1)


def test_a_form_return_to_cannot_write_a_header(client):
    answer = client.post(
        "/feedback",
        data={"page_url": PAGE, "clarity": "yes", "return_to": f"{PAGE}?a=1{CRLF}Set-Cookie: x=1"},
    )

    assert answer.status_code == 303
    assert "Set-Cookie" not in answer.headers and "Bcc" not in answer.headers
    location = answer.headers["Location"]
    assert "\r" not in location and "\n" not in location and " " not in location


def deep(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


def test_deeply_nested_json_is_refused_not_a_server_error(client, counts):
    at_once = [
        deep(5000),
        deep(2000, '{"a":', "}").replace("}", "1}", 1),
        json.dumps(answered(answers=...))[:-1] + ', "answers": ' + deep(990, '{"a":', "}") + "}",
    ]
    # The recursion limit depends on how deep the stack already is when the view runs,
    # so every depth around Python's default limit of 1000 is tried, at the top and
    # inside the object (where json.loads may manage and what follows may not).
    around_the_limit = [
        body
        for depth in range(900, 1100, 3)
        for body in (deep(depth), json.dumps(answered())[:-1] + ', "x": ' + deep(depth) + "}")
    ]
    for body in at_once + around_the_limit:
        assert len(body.encode()) < 16 * 1024, "must stay under the body limit, or it is a 413"
        answer = client.post("/api/v1/feedback", data=body, content_type="application/json")
        assert 400 <= answer.status_code < 500, (body[:40], answer.get_data(as_text=True))
        assert answer.get_json()["errors"]
    assert counts() == (0, 0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"page_url": "\xff\xfe"}', "UTF-8"),
        (b'{"page_title": "\xe6\xb4"}', "UTF-8"),  # a character cut in half
        (b'{"page_title": "\xc0\xaf"}', "UTF-8"),  # an overlong "/"
        (b'{"page_title": "\xed\xa0\x80"}', "Unicode"),  # a surrogate, encoded
        (json.dumps(answered(page_title="\udc00")).encode(), "Unicode"),  # escaped
    ],
    ids=["ff fe", "cut", "overlong slash", "encoded surrogate", "escaped surrogate"],
)
def test_a_body_that_is_not_utf8_text_is_a_400_that_says_so(client, counts, body, reason):
    answer = client.post("/api/v1/feedback", data=body, content_type="application/json")

    errors = refused(answer, 400, "body")
    assert reason in errors["body"][0], errors
    assert counts() == (0, 0)


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/api/v1/feedback", "text/plain", json.dumps(answered())),
        ("/api/v1/feedback", "application/xml", "<feedback/>"),
        ("/api/v1/feedback", "application/x-www-form-urlencoded", "page_url=x"),
        ("/api/v1/feedback", "application/json-patch+json", json.dumps(answered())),
        ("/api/v1/feedback", None, json.dumps(answered())),
        ("/feedback", "application/json", json.dumps(answered())),
        ("/feedback", "text/plain", "page_url=x&clarity=yes"),
        ("/feedback", None, "page_url=x&clarity=yes"),
    ],
)
def test_a_wrong_content_type_is_a_415_naming_the_right_one(
    client, counts, path, content_type, body
):
    headers = {"Content-Type": content_type} if content_type else {}
    answer = client.post(path, data=body.encode(), headers=headers)

    errors = refused(answer, 415, "body")
    assert "Content-Type must be" in errors["body"][0]
    assert counts() == (0, 0)


@pytest.mark.parametrize("path", ["/api/v1/feedback", "/feedback"])
def test_an_oversized_body_is_a_413_on_both_paths(client, counts, path):
    title = "x" * 20_000
    if path == "/feedback":
        answer = client.post(path, data={"page_url": PAGE, "clarity": "yes", "page_title": title})
    else:
        answer = client.post(path, json=answered(page_title=title))

    errors = refused(answer, 413, "body")
    assert "16384 bytes" in errors["body"][0]
    assert counts() == (0, 0)


# -- through gunicorn: what the server in front of Flask guards ------------------------


@pytest.fixture(scope="module")
def gunicorn_feedback(tmp_path_factory) -> Iterator[tuple[int, object]]:
    """The feedback API under gunicorn, as compose runs it, on a SQLite database; yields
    (port, engine)."""
    folder = tmp_path_factory.mktemp("gunicorn")
    database_url = f"sqlite:///{folder / 'feedback.db'}"
    upgrade(database_url, MIGRATIONS)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KOE_", "DATABASE_"))},
        "DATABASE_URL": database_url,
        "KOE_DIVISIONS_FILE": str(REPO / "divisions.yaml"),
        "KOE_ALLOWED_ORIGINS": SITE,
        "KOE_CHALLENGE_KEY": CHALLENGE_KEY,
        "KOE_CHALLENGE_MAX_NUMBER": CHALLENGE_MAX_NUMBER,
        # One test client sends many good answers to one page: no budgets here.
        **LIFTED_BUDGETS,
    }
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "-c", "python:koe_kit.gunicorn_conf"),
            *("feedback.wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", "1"),
        ],
        env=env,
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    engine = make_engine(database_url)
    try:
        wait_for_port("127.0.0.1", port, timeout_s=30)
        yield port, engine
    finally:
        engine.dispose()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


def stored_rows(engine) -> tuple[int, int]:
    with engine.connect() as connection:
        responses = len(connection.execute(select(Response.id)).all())
        outbox = len(connection.execute(select(OutboxEntry.id)).all())
    return responses, outbox


def solved(port: int, body: bytes) -> bytes:
    """`body` (a JSON answer) with a solution of a fresh challenge for its page."""
    answer = json.loads(body)
    query = urlencode({"page_url": answer["page_url"]})
    request = f"GET /api/v1/feedback/challenge?{query} HTTP/1.1\r\nHost: x\r\nConnection: close"
    issued = raw_http(port, f"{request}\r\n\r\n".encode())
    return json.dumps(answer | {"altcha": solve(json.loads(issued.body))}).encode()


def post(path: str, body: bytes, *headers: str, content_type: str = "application/json") -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *headers,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


GOOD = json.dumps(answered()).encode()


@pytest.mark.parametrize(
    ("case", "request_bytes", "statuses"),
    [
        # gunicorn's limits (--limit-request-field_size 8190, --limit-request-line 4094,
        # --limit-request-fields 100): it answers 4xx itself, Flask never sees them.
        ("huge header", post("/api/v1/feedback", GOOD, "X-Big: " + "a" * 20_000), {400, 431}),
        (
            "huge cookie",
            post("/api/v1/feedback", GOOD, "Cookie: " + "; ".join(["c=" + "v" * 100] * 200)),
            {400, 431},
        ),
        (
            "too many headers",
            post("/api/v1/feedback", GOOD, *(f"X-H{n}: {n}" for n in range(300))),
            {400, 431},
        ),
        ("huge request line", post("/api/v1/feedback?" + "q=1&" * 3000, GOOD), {400, 414}),
        ("CRLF in a header value", post("/api/v1/feedback", GOOD, "X-A: a\rBcc: b"), {400}),
        ("NUL in a header", post("/api/v1/feedback", GOOD, "X-A: a\x00b"), {400}),
        ("bad method", b"P\x00ST /api/v1/feedback HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
        (
            "huge Content-Length, body never sent",
            post("/api/v1/feedback", b"{}").replace(
                b"Content-Length: 2", b"Content-Length: 10000000"
            ),
            {413},
        ),
        (
            "oversized chunked body",
            (
                b"POST /api/v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                + b"".join(b"1000\r\n" + b" " * 4096 + b"\r\n" for _ in range(8))
                + b"0\r\n\r\n"
            ),
            {413},
        ),
        (
            "both Content-Length and chunked (request smuggling)",
            (
                b"POST /api/v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                b"0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
            {400},
        ),
        (
            "invalid UTF-8 through gunicorn",
            post("/api/v1/feedback", b'{"page_title": "\xff"}'),
            {400},
        ),
    ],
)
@pytest.mark.integration
def test_gunicorn_refuses_hostile_requests_with_a_4xx_and_keeps_serving(
    gunicorn_feedback, case, request_bytes, statuses
):
    port, engine = gunicorn_feedback
    before = stored_rows(engine)

    answer = raw_http(port, request_bytes)

    assert answer.status in statuses, (case, answer.body[:300])
    assert stored_rows(engine) == before, "nothing refused may be stored"
    # No crash: the same worker answers the next request.
    healthy = raw_http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert healthy.status == 200
    accepted = raw_http(port, post("/api/v1/feedback", solved(port, GOOD)))
    assert accepted.status == 202, accepted.body[:300]
