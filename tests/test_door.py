"""The door on a running koe (gunicorn with two workers, PostgreSQL, the broker, the
aggregator): what one address can and cannot do to a page's numbers, sending from many
loopback addresses (127.0.0.0/8 is all this machine) as many citizens would. The two
web workers must agree on a source and its budgets: the stuffing test gets exactly one
budget from them together.

One stack for the module, with the city's defaults except a small page budget (so the
test need not send 60 answers) and a few new pages a day; the aggregator counts at most
KOE_COUNT_PER_SOURCE_DAY (3) answers per page, day and source, and shows a page from
its first answer (the crowd a page needs is the aggregator's tests' business)."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid

import pytest

from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from support import SITE, from_address
from widget_support import module_koe, page_stats

pytestmark = pytest.mark.e2e

ONE_PAGE = 8
NEW_PAGES = 3
CAP = 3
CMS_KEY = "door-test-cms-key-" + "c" * 32
ADMIN = "admin@city.example"
GOOD = {"findability": "yes", "clarity": "yes", "usefulness": "yes"}
BAD = {"findability": "no", "clarity": "no", "usefulness": "no"}


@pytest.fixture(scope="module")
def koe(tmp_path_factory, pg_admin):
    with module_koe(
        tmp_path_factory.mktemp("door") / "var",
        pg_admin,
        KOE_BUDGET_ONE_PAGE=str(ONE_PAGE),
        KOE_BUDGET_NEW_PAGES=str(NEW_PAGES),
        KOE_COUNT_PER_SOURCE_DAY=str(CAP),
        KOE_CMS_KEY=CMS_KEY,
    ) as running:
        running.create_account(ADMIN, None)
        yield running


def send(koe, address: str, page_url: str, answers: dict, headers=None, **fields):
    """One answer as a script sends it, from `address`."""
    body = {"page_url": page_url, "answers": answers, "page_title": "ドアのテスト", **fields}
    return from_address(address).post(
        koe.url("feedback", "/api/v1/feedback"), json=body, headers=headers or {}, timeout=10
    )


def page_id(url: str) -> str:
    return page_id_for_url(canonical_url(url))


def counted(koe, url_or_id: str, n: int) -> dict:
    """The page's all-time figures once n answers count, on every question (every answer
    here answers all three). Waiting for the questions too: the stats API reads n and the
    questions in two statements, so a batch committed between them can show n ahead."""
    pid = url_or_id if "://" not in url_or_id else page_id(url_or_id)

    def complete(figures: dict | None) -> bool:
        return figures is not None and all(
            figures["n"] == n == q["yes"] + q["neutral"] + q["no"]
            for q in figures["questions"].values()
        )

    return wait_until(lambda: complete(f := page_stats(koe, pid)) and f, what=f"n = {n} for {pid}")


def excess_seen_by_admin(koe, pid: str) -> int:
    page = koe.signed_in(ADMIN).get(koe.url("aggregator", f"/pages/{pid}"), timeout=10).text
    section = re.search(r'<section id="excess".*?</section>', page, re.S)
    if section is None:
        return 0
    cell = re.search(
        r'<tr data-window="all"><th scope="row">[^<]*</th><td>([\d,]+)</td>', section.group(0)
    )
    return int(cell.group(1).replace(",", "")) if cell else 0


def test_one_address_rotating_everything_gets_the_budget_and_only_the_cap_counted(koe):
    page = f"{SITE}/door/stuffed.html"
    statuses = []
    for i in range(3 * ONE_PAGE):
        headers = {
            "User-Agent": f"Mozilla/5.0 (stuffer {i})",
            "X-Forwarded-For": f"198.51.100.{i + 1}",
            **({"Origin": SITE} if i % 2 else {}),
        }
        answer = send(koe, "127.0.0.1", page, BAD, headers, client_token=str(uuid.uuid4()))
        statuses.append(answer.status_code)
    assert statuses == [202] * ONE_PAGE + [429] * (2 * ONE_PAGE)
    assert "one_page" in answer.json()["errors"]["budget"][0]
    assert int(answer.headers["Retry-After"]) > 0

    # Of the accepted, the aggregator counts the cap; the rest are excess, for admins.
    pid = page_id(page)
    wait_until(lambda: excess_seen_by_admin(koe, pid) == ONE_PAGE - CAP, what="the excess")
    assert counted(koe, page, CAP)["n"] == CAP


def test_twenty_citizens_on_twenty_addresses_all_count(koe):
    page = f"{SITE}/door/citizens.html"
    for i in range(20):
        answer = send(koe, f"127.0.1.{i + 1}", page, GOOD, client_token=str(uuid.uuid4()))
        assert answer.status_code == 202, answer.text
    assert counted(koe, page, 20)["questions"]["clarity"]["yes"] == 20


def test_two_people_behind_one_address_both_count(koe):
    page = f"{SITE}/door/shared.html"
    phone = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)"}
    first = send(koe, "127.0.2.1", page, GOOD, phone, client_token=str(uuid.uuid4()))
    second = send(koe, "127.0.2.1", page, BAD, phone, client_token=str(uuid.uuid4()))
    assert (first.status_code, second.status_code) == (202, 202)
    clarity = counted(koe, page, 2)["questions"]["clarity"]
    assert (clarity["yes"], clarity["no"]) == (1, 1)


def signed(pid: str, url: str) -> dict:
    message = f"koe-page\n{pid}\n{canonical_url(url)}".encode()
    return {
        "page_id": pid,
        "page_sig": hmac.new(CMS_KEY.encode(), message, hashlib.sha256).hexdigest()[:32],
    }


def test_a_hijack_post_changes_nothing(koe):
    page, other = f"{SITE}/shisei/dx/door-cms.html", f"{SITE}/kurashi/gomi/door-evil.html"
    cms = "cms-door-1"
    answer = send(koe, "127.0.3.1", page, GOOD, client_token=str(uuid.uuid4()), **signed(cms, page))
    assert answer.status_code == 202, answer.text
    counted(koe, cms, 1)
    before = koe.stats(f"/api/v1/pages/{cms}").json()
    assert (before["url"], before["division"]) == (canonical_url(page), "somu-dx")

    attacker = {"User-Agent": "hijacker", "X-Forwarded-For": "203.0.113.1"}
    # No signature: the id is ignored, and the answer is the other URL's page's.
    unsigned = send(koe, "127.0.3.2", other, BAD, attacker, page_id=cms, page_title="乗っ取り")
    # A forged signature, and a genuine one for another URL (a CMS mistake): refused.
    forged = send(koe, "127.0.3.2", other, BAD, attacker, page_id=cms, page_sig="0" * 32)
    moved = send(koe, "127.0.3.2", other, BAD, attacker, **signed(cms, other))
    assert unsigned.status_code == 202
    assert (forged.status_code, list(forged.json()["errors"])) == (422, ["page_sig"])
    assert (moved.status_code, list(moved.json()["errors"])) == (422, ["page_url"])

    counted(koe, other, 1)  # the unsigned answer has been counted, on its own page
    after = koe.stats(f"/api/v1/pages/{cms}").json()
    assert after == before
    assert (after["url"], after["division"], after["windows"]["all"]["n"]) == (
        canonical_url(page),
        "somu-dx",
        1,
    )


def test_one_address_creates_only_a_few_pages_a_day(koe):
    statuses = [
        send(koe, "127.0.4.1", f"{SITE}/door/flood/{i}.html", GOOD).status_code
        for i in range(NEW_PAGES + 4)
    ]
    assert statuses == [202] * NEW_PAGES + [429] * 4
    refused = send(koe, "127.0.4.1", f"{SITE}/door/flood/more.html", GOOD)
    assert refused.json()["errors"]["budget"][0].startswith(f"new_pages: {NEW_PAGES} new pages")
    # The pages it made are answered as before; another address makes its own.
    assert send(koe, "127.0.4.1", f"{SITE}/door/flood/0.html", GOOD).status_code == 202
    assert send(koe, "127.0.4.2", f"{SITE}/door/flood/more.html", GOOD).status_code == 202

    listed = wait_until(
        lambda: (
            (
                pages := [
                    p
                    for p in koe.stats("/api/v1/pages").json()["pages"]
                    if "/door/flood/" in p["url"]
                ]
            )
            and len(pages) == NEW_PAGES + 1
            and pages
        ),
        what="the flood's pages in the stats",
    )
    assert sorted(p["url"].rsplit("/", 1)[1] for p in listed) == [
        "0.html",
        "1.html",
        "2.html",
        "more.html",
    ]


def test_an_address_is_never_stored(koe):
    """Everything the feedback database holds, after all of the above: no address."""
    from sqlalchemy import text

    from koe_kit.db import make_engine

    engine = make_engine(koe.stack.service_env("feedback")["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            tables = (
                "responses",
                "outbox",
                "answer_tokens",
                "budgets",
                "known_pages",
                "source_keys",
            )
            rows = [str(r) for t in tables for r in connection.execute(text(f"SELECT * FROM {t}"))]  # noqa: S608
    finally:
        engine.dispose()
    assert rows
    assert not any(re.search(r"127\.0\.\d+\.\d+|198\.51\.100\.", row) for row in rows)
