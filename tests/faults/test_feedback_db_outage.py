"""The feedback database cut off from the API and the relay, as by a network partition,
while citizens keep answering: the API says 503 with Retry-After (never a 500, never a
long hang), stores nothing partial, and both recover by themselves when it heals."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from faults.stream import Citizens, counted, tally, wait_until_counted, wait_until_ready
from faults.tcp_proxy import TcpProxy
from koe_devkit.testing import wait_until
from koe_kit.db import make_engine

pytestmark = pytest.mark.e2e

CUT_S = 12
RETRYING = "broker or database unreachable, will retry"  # the relay's log line


@pytest.fixture
def feedback_db(new_pg_database) -> Iterator[tuple[str, TcpProxy]]:
    """The feedback database's own URL, and a proxy in front of it."""
    url = new_pg_database()
    parsed = make_url(url)
    proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432).start()
    yield url, proxy
    proxy.stop()


def through(proxy: TcpProxy, url: str) -> str:
    return make_url(url).set(port=proxy.port).render_as_string(hide_password=False)


def stored(url: str) -> tuple[set[str], list[str], Counter[str], Counter[str]]:
    """What the feedback DB holds: response ids, outbox event ids, and per page the
    responses and the answers in them."""
    engine = make_engine(url)
    try:
        with engine.connect() as db:
            rows = db.execute(
                text("SELECT id, page_url, findability, clarity, usefulness FROM responses")
            ).all()
            outbox = list(db.execute(text("SELECT event_id FROM outbox")).scalars())
    finally:
        engine.dispose()
    responses, answers = Counter[str](), Counter[str]()
    for row in rows:
        responses[row.page_url] += 1
        answers[row.page_url] += sum(a is not None for a in row[2:])
    return {row.id for row in rows}, outbox, responses, answers


def relay_retries(koe) -> int:
    log = koe.stack.var_dir / "log" / "feedback-relay.log"
    return log.read_text(errors="replace").count(RETRYING)


def test_a_feedback_db_cut_is_a_503_with_retry_after_and_heals_by_itself(
    koe_factory, feedback_db, figures
):
    url, proxy = feedback_db
    # Migrations run through the proxy too, before anything is cut.
    koe = koe_factory(FEEDBACK_DATABASE_URL=through(proxy, url))
    wait_until_ready(koe)
    citizens = Citizens(koe, pause_s=0.005).start()
    wait_until(lambda: counted(koe) >= 100, what="the stream flowing into the stats")

    before = citizens.statuses_now()
    relay_retried = relay_retries(koe)
    # Accepted, not yet counted: in the outbox, on the topic or in a batch as the cut falls.
    in_pipeline = citizens.total - counted(koe)
    proxy.cut()
    cut_at = citizens.total
    # The relay is alive through the outage: it notices and keeps retrying.
    wait_until(
        lambda: relay_retries(koe) > relay_retried,
        timeout_s=CUT_S,
        what="the relay to notice the database is gone",
    )
    time.sleep(max(0.0, CUT_S - 1))
    during = citizens.statuses_now() - before
    accepted_during = citizens.total - cut_at
    proxy.heal()

    assert during[503] > 0, f"the cut must land mid-stream: {during}"
    assert citizens.hangs == 0, "a citizen waited too long for an answer"
    assert citizens.broken == 0, "a citizen's connection broke (a worker killed?)"
    assert set(during) <= {202, 503}, f"the API answered {during}"
    for refusal in citizens.answers:
        assert refusal.status_code == 503
        assert int(refusal.headers["Retry-After"]) > 0
        assert refusal.json()["error"] == "Service Unavailable"
    # After a failure each worker rests the database (koe_kit.web.init_db) instead of
    # making every citizen in its queue wait out another connect timeout: most refusals
    # come at once, only a worker's next try waits.
    at_once = sum(r.elapsed.total_seconds() < 1 for r in citizens.answers)
    assert at_once > len(citizens.answers) / 2, f"{at_once} of {len(citizens.answers)} at once"
    # It recovers by itself: 202s again, nothing restarted.
    wait_until(
        lambda: citizens.statuses_now()[202] > before[202] + accepted_during + 20,
        what="the API to accept again after the heal",
    )
    citizens.stop()
    assert koe.stack.dead() == [], "a koe process died of the outage"

    wait_until_counted(koe, citizens)
    ids, outbox, responses, answers = stored(url)
    # Nothing partial: each response has exactly its one event, and no event is an orphan.
    assert len(outbox) == len(set(outbox))
    assert set(outbox) == ids
    # Nothing accepted is missing (a response whose commit succeeded just as the
    # connection broke may be stored though its citizen got a 503: the API could not
    # know; it is counted like any other).
    assert set(citizens.ids) <= ids
    wait_until(lambda: counted(koe) >= len(ids), what="every stored response counted")
    result = tally(koe, citizens, stored=(responses, answers))
    assert result.wrong == []
    figures(
        fault=f"feedback database cut off (network partition) for {CUT_S} s",
        # Not the refusals (503s are not accepted, nothing of them can be lost).
        in_flight=in_pipeline,
        lost=result.lost,
        doubled=result.doubled,
    )
