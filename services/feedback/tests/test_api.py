"""The survey API on a real database (SQLite and PostgreSQL): what is refused, what is kept."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

import koe_contract as contract
from feedback.models import OutboxEntry, Response
from feedback.pages import page_sig
from koe_contract import FEEDBACK
from koe_directory import canonical_url, page_id_for_url
from koe_directory.catalogue import LOCALES
from koe_kit import events
from support import answered

SITE = "https://www.info.city.tsu.mie.jp"
PAGE = f"{SITE}/shisei/dx/1234.html"
NOT_A_UUID = "not-a-uuid"
# Half an emoji: json.dumps writes it as the escape "\\ud83d", valid JSON but not text.
IN_TWO_DAYS = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()
LONE_SURROGATE_TITLE = json.dumps(answered(page_title="津市\ud83d"))


# (case, request kwargs for client.post, expected status, field named in the errors)
MALFORMED = [
    ("missing page_url", {"json": answered(page_url=...)}, 422, "page_url"),
    ("ftp url", {"json": answered(page_url="ftp://www.info.city.tsu.mie.jp/x")}, 422, "page_url"),
    ("3000-char url", {"json": answered(page_url=PAGE + "?" + "a" * 3000)}, 422, "page_url"),
    ("foreign origin", {"json": answered(page_url="https://evil.example/x.html")}, 422, "page_url"),
    ("answers empty", {"json": answered(answers={})}, 422, "answers"),
    ("answers missing", {"json": answered(answers=...)}, 422, "answers"),
    ("answer maybe", {"json": answered(answers={"clarity": "maybe"})}, 422, "answers.clarity"),
    ("answer extra", {"json": answered(answers={"clarity": "yes", "x": "yes"})}, 422, "answers.x"),
    ("answers not object", {"json": answered(answers="yes")}, 422, "answers"),
    ("unknown field", {"json": answered(comment="hello")}, 422, "comment"),
    ("title 201", {"json": answered(page_title="あ" * 201)}, 422, "page_title"),
    ("bad page_id", {"json": answered(page_id="-bad id")}, 422, "page_id"),
    ("unknown division", {"json": answered(division="nope")}, 422, "division"),
    ("bad locale", {"json": answered(locale="fr")}, 422, "locale"),
    ("bad client_token", {"json": answered(client_token=NOT_A_UUID)}, 422, "client_token"),
    ("modified 2026/11/02", {"json": answered(page_modified="2026/11/02")}, 422, "page_modified"),
    ("modified 20261102", {"json": answered(page_modified="20261102")}, 422, "page_modified"),
    ("modified 2026-02-30", {"json": answered(page_modified="2026-02-30")}, 422, "page_modified"),
    ("modified 1999", {"json": answered(page_modified="1999-12-31")}, 422, "page_modified"),
    ("modified in 2 days", {"json": answered(page_modified=IN_TWO_DAYS)}, 422, "page_modified"),
    ("modified a number", {"json": answered(page_modified=20261102)}, 422, "page_modified"),
    (
        "non-JSON body",
        {"data": b"{not json", "content_type": "application/json"},
        400,
        "body",
    ),
    ("JSON array", {"data": b"[1, 2]", "content_type": "application/json"}, 400, "body"),
    (
        # It once answered 500: it reached the database.
        "lone surrogate",
        {"data": LONE_SURROGATE_TITLE, "content_type": "application/json"},
        400,
        "body",
    ),
    (
        "wrong content type",
        {"data": json.dumps(answered()), "content_type": "text/plain"},
        415,
        "body",
    ),
    ("oversize", {"json": answered(page_title="x" * 20_000)}, 413, "body"),
]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "field"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_requests_are_refused_and_nothing_is_stored(
    client, counts, request_kwargs, status, field
):
    answer = client.post("/api/v1/feedback", **request_kwargs)

    assert answer.status_code == status, answer.get_json()
    assert answer.is_json
    errors = answer.get_json()["errors"]
    assert field in errors, errors
    assert all(isinstance(reason, str) and reason for reason in errors[field])
    assert counts() == (0, 0)


def test_accepted_json_writes_one_response_and_one_valid_event(client, engine, counts):
    answer = client.post(
        "/api/v1/feedback", json=answered(page_title="津市の\r\n自治体DX\x07取組状況")
    )

    assert answer.status_code == 202
    response_id = answer.get_json()["id"]
    assert uuid.UUID(response_id)
    assert counts() == (1, 1)
    with engine.connect() as connection:
        response = connection.execute(select(Response)).one()
        outbox = connection.execute(select(OutboxEntry)).one()
    page_id = page_id_for_url(canonical_url(PAGE))
    assert response.id == response_id
    assert response.page_id == page_id
    assert response.page_title == "津市の 自治体DX 取組状況"
    assert (response.findability, response.clarity, response.usefulness) == ("yes", "neutral", "no")
    assert outbox.event_id == response_id
    assert outbox.topic == "koe.feedback.submitted.v1"
    assert contract.produced_by(FEEDBACK) == {outbox.topic}  # the relay sends what it holds
    assert outbox.key == page_id
    assert outbox.sent_at is None
    event = events.decode(outbox.payload.encode("utf-8"))  # validates against the schema
    assert event["id"] == response_id
    assert event["subject"] == page_id
    assert event["data"]["answers"] == answered()["answers"]
    assert event["data"]["division"] == "somu-dx"


def test_a_page_stays_with_the_division_of_its_url_prefix_whatever_the_snippet_says(client, engine):
    # No division's prefix covers /kanko/: the fallback's, whatever the snippet names.
    uncovered = f"{SITE}/kanko/event.html"
    answer = client.post(
        "/api/v1/feedback", json=answered(page_url=uncovered, division="kankyo-gomi")
    )
    assert answer.status_code == 202, answer.get_json()
    # The DX page's prefix is somu-dx's: a snippet (or anyone) naming kankyo-gomi is
    # kept, under somu-dx, so a public POST cannot move the page and its alert emails.
    claimed = client.post("/api/v1/feedback", json=answered(division="kankyo-gomi"))
    assert claimed.status_code == 202, claimed.get_json()
    with engine.connect() as connection:
        stored = connection.execute(select(Response.page_url, Response.division)).all()
        payloads = connection.execute(select(OutboxEntry.payload)).scalars().all()
    assert sorted(stored, key=str) == sorted([(uncovered, None), (PAGE, "somu-dx")], key=str)
    divisions = sorted(str(events.decode(p.encode())["data"]["division"]) for p in payloads)
    assert divisions == ["None", "somu-dx"]


def test_a_signed_page_id_is_used_and_url_is_stored_canonical(client, engine, env):
    signature = page_sig(
        env["KOE_CMS_KEY"].encode(), "shirasagi:docs:1", f"{SITE}/kurashi/gomi/1.html"
    )
    answer = client.post(
        "/api/v1/feedback",
        json=answered(
            page_url="HTTPS://WWW.info.city.tsu.mie.jp:443/kurashi/gomi/1.html?utm=x#top",
            page_id="shirasagi:docs:1",
            page_sig=signature,
            division="kankyo-gomi",
            answers={"usefulness": "yes"},
            locale="en",
        ),
    )

    assert answer.status_code == 202
    with engine.connect() as connection:
        response = connection.execute(select(Response)).one()
        outbox = connection.execute(select(OutboxEntry)).one()
    assert response.page_id == "shirasagi:docs:1"
    assert response.page_url == f"{SITE}/kurashi/gomi/1.html"
    assert response.locale == "en"
    assert (response.findability, response.clarity) == (None, None)
    assert outbox.key == "shirasagi:docs:1"
    events.decode(outbox.payload.encode("utf-8"))


def test_locale_defaults_to_japanese(client, engine):
    assert client.post("/api/v1/feedback", json=answered(locale=...)).status_code == 202
    with engine.connect() as connection:
        assert connection.execute(select(Response.locale)).scalar_one() == "ja"


def test_same_client_token_and_answers_twice_is_one_response(client, counts):
    token = str(uuid.uuid4())

    first = client.post("/api/v1/feedback", json=answered(client_token=token))
    second = client.post("/api/v1/feedback", json=answered(client_token=token))

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.get_json()["id"] == second.get_json()["id"]
    assert counts() == (1, 1)


def form(**changes):
    fields = {
        "page_url": PAGE,
        "page_id": "",
        "page_title": "津市の自治体DX取組状況",
        "division": "somu-dx",
        "locale": "ja",
        "client_token": "",
        "findability": "yes",
        "clarity": "no",
        "return_to": f"{PAGE}?lang=ja#top",
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not ...}


def test_form_submission_is_stored_and_redirects_back_with_thanks(client, engine, counts):
    answer = client.post("/feedback", data=form())

    assert answer.status_code == 303
    target = urlsplit(answer.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == PAGE
    assert parse_qs(target.query) == {"lang": ["ja"], "koe": ["thanks"]}
    assert target.fragment == "koe-thanks"
    assert counts() == (1, 1)
    with engine.connect() as connection:
        response = connection.execute(select(Response)).one()
        payload = connection.execute(select(OutboxEntry.payload)).scalar_one()
    assert (response.findability, response.clarity, response.usefulness) == ("yes", "no", None)
    assert response.page_id == page_id_for_url(PAGE)
    events.decode(payload.encode("utf-8"))


def test_form_without_return_to_goes_back_to_the_page(client, counts):
    # The embed snippet carries only page_url (the CMS fills it in).
    answer = client.post("/feedback", data=form(return_to=...))

    assert answer.status_code == 303
    assert answer.headers["Location"] == f"{PAGE}?koe=thanks#koe-thanks"
    assert counts() == (1, 1)


def test_a_named_snippet_is_sent_back_to_its_own_messages(client, counts):
    # Without JavaScript a page's second snippet (/embed's `widget`) shows its own
    # thank-you: the first element with an id wins the :target.
    thanked = client.post("/feedback", data=form(return_to=..., koe_widget="side2"))
    refused = client.post("/feedback", data=form(return_to=..., koe_widget="side2", clarity="x"))

    assert thanked.headers["Location"] == f"{PAGE}?koe=thanks#koe-thanks-side2"
    assert refused.headers["Location"] == f"{PAGE}?koe=error#koe-error-side2"
    assert counts() == (1, 1)  # the name is not an answer's field


@pytest.mark.parametrize("widget", ["Side", "a b", "x" * 17, "a#b", "a\r\nb"])
def test_a_snippet_name_that_no_snippet_has_is_refused(client, counts, widget):
    answer = client.post("/feedback", data=form(koe_widget=widget, clarity="maybe"))

    assert answer.status_code == 422
    assert set(answer.get_json()["errors"]) == {"koe_widget", "answers.clarity"}
    assert "Location" not in answer.headers
    assert counts() == (0, 0)


def test_form_with_invalid_answers_goes_back_with_error(client, counts):
    answer = client.post("/feedback", data=form(findability=..., clarity="maybe"))

    assert answer.status_code == 303
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["koe"] == ["error"]
    assert counts() == (0, 0)


@pytest.mark.parametrize(
    ("return_to", "page_url"),
    [
        ("https://evil.example/", PAGE),
        ("javascript:alert(1)", PAGE),
        ("//evil.example/", PAGE),
        ("https://www.info.city.tsu.mie.jp@evil.example/", PAGE),
        ("https://www.info.city.tsu.mie.jp:443@evil.example/", PAGE),
        ("https://www.info.city.tsu.mie.jp\\@evil.example/", PAGE),
        ("https:\\\\evil.example/", PAGE),
        (..., "https://evil.example/x.html"),
        (..., ...),
    ],
)
def test_form_never_redirects_off_our_sites(client, counts, return_to, page_url):
    answer = client.post("/feedback", data=form(return_to=return_to, page_url=page_url))

    assert answer.status_code == 422
    assert "return_to" in answer.get_json()["errors"]
    assert "Location" not in answer.headers
    assert counts() == (0, 0)


@pytest.mark.parametrize(
    "return_to",
    [
        "https://evil.example@www.info.city.tsu.mie.jp/shisei/dx/1234.html",
        # Python reads the host after the `@`; a browser ends it at the backslash.
        "https://evil.example\\@www.info.city.tsu.mie.jp/shisei/dx/1234.html",
        "https://evil.example%2F@WWW.INFO.CITY.TSU.MIE.JP:443/shisei/dx/1234.html",
    ],
)
def test_form_redirects_to_the_checked_host_and_nothing_written_before_it(client, return_to):
    answer = client.post("/feedback", data=form(return_to=return_to))

    assert answer.status_code == 303
    assert answer.headers["Location"] == f"{PAGE}?koe=thanks#koe-thanks"


def test_form_client_token_and_unknown_field(client, counts):
    token = str(uuid.uuid4())
    assert client.post("/feedback", data=form(client_token=token)).status_code == 303
    assert client.post("/feedback", data=form(client_token=token)).status_code == 303
    assert counts() == (1, 1)

    refused = client.post("/feedback", data=form(return_to="https://evil.example/", comment="hi"))
    assert refused.status_code == 422
    assert set(refused.get_json()["errors"]) == {"comment", "return_to"}
    assert counts() == (1, 1)


def test_form_needs_a_form_content_type(client, counts):
    answer = client.post("/feedback", json=answered())
    assert answer.status_code == 415
    assert counts() == (0, 0)


def test_health(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_a_form_sent_without_an_answer_is_asked_to_answer_not_to_wait(client, counts):
    # The plain form's person sees the snippet's #koe-empty ("少なくとも1つの質問に…"),
    # not #koe-error's "時間をおいて…": waiting would not help them.
    empty = client.post("/feedback", data=form(findability=..., clarity=..., return_to=...))

    assert empty.headers["Location"] == f"{PAGE}?koe=empty#koe-empty"
    assert counts() == (0, 0)


@pytest.mark.parametrize("locale", LOCALES)
def test_an_answer_records_the_language_it_was_given_in(client, engine, locale):
    assert client.post("/feedback", data=form(locale=locale)).status_code == 303

    with engine.connect() as connection:
        payload = connection.execute(select(OutboxEntry.payload)).scalar_one()
    assert events.decode(payload.encode("utf-8"))["data"]["locale"] == locale


def test_a_language_koe_has_no_catalogue_for_is_refused_by_name(client, counts):
    answer = client.post("/api/v1/feedback", json=answered(locale="fr"))

    assert answer.status_code == 422
    assert list(answer.get_json()["errors"]) == ["locale"]
    assert counts() == (0, 0)


def test_the_page_s_modified_date_is_kept_and_travels_in_the_event(client, engine):
    """Both paths: the JSON API (widget.js) and the plain form's hidden field."""
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    assert (
        client.post("/api/v1/feedback", json=answered(page_modified="2026-11-02")).status_code
        == 202
    )
    assert client.post("/feedback", data=form(page_modified=tomorrow)).status_code == 303
    assert client.post("/feedback", data=form(page_modified="")).status_code == 303

    with engine.connect() as connection:
        kept = connection.execute(select(Response.page_modified)).scalars().all()
        payloads = connection.execute(select(OutboxEntry.payload)).scalars().all()
    assert sorted(str(day) for day in kept) == sorted(["2026-11-02", "None", tomorrow])
    carried = [events.decode(p.encode("utf-8"))["data"].get("page_modified") for p in payloads]
    assert sorted(map(str, carried)) == sorted(["2026-11-02", "None", tomorrow])


def test_a_form_with_a_bad_modified_date_goes_back_with_the_error(client, counts):
    answer = client.post("/feedback", data=form(page_modified="更新日"))

    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("#koe-error")
    assert counts() == (0, 0)
