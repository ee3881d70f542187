"""Each accepted response is counted exactly once, even when the aggregator is
killed with SIGKILL in the middle of a stream and restarted."""

from __future__ import annotations

import signal
import threading

import pytest

from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from support import SITE

pytestmark = pytest.mark.e2e

PAGES = [f"{SITE}/kurashi/gomi/{n}.html" for n in range(5)]
ANSWERS = ["yes", "neutral", "no"]
TOTAL = 600


def test_kill_9_of_the_aggregator_mid_stream_loses_and_doubles_nothing(koe_factory):
    # Small batches, so a kill lands between batches and inside one.
    koe = koe_factory(KOE_BATCH_MAX_MESSAGES="25")
    accepted: dict[str, int] = {canonical_url(p): 0 for p in PAGES}  # responses (202)
    answered: dict[str, int] = {canonical_url(p): 0 for p in PAGES}  # answers in them

    def citizens() -> None:
        for i in range(TOTAL):
            page = PAGES[i % len(PAGES)]
            answers = {"clarity": ANSWERS[i % 3]}
            if i % 2:
                answers["usefulness"] = ANSWERS[(i + 1) % 3]
            response = koe.submit(page_url=page, answers=answers)
            if response.status_code == 202:
                accepted[canonical_url(page)] += 1
                answered[canonical_url(page)] += len(answers)

    sender = threading.Thread(target=citizens)
    sender.start()

    def counted() -> int:
        return sum(koe.page_n(page_id_for_url(url)) for url in accepted)

    for round_ in range(2):
        # Let the aggregator get going, then kill it without warning, twice.
        floor = (round_ + 1) * 150
        wait_until(lambda floor=floor: counted() >= floor, what=f"{floor} responses counted")
        koe.stack.kill("aggregator-consumer", signal.SIGKILL)
        assert counted() < TOTAL, "the kill must land mid-stream to prove anything"
        koe.stack.start("aggregator-consumer")

    sender.join()
    assert sum(accepted.values()) == TOTAL, "the API refused responses it should accept"
    # every response answers clarity, odd ones usefulness too
    assert sum(answered.values()) == TOTAL + TOTAL // 2
    wait_until(lambda: counted() == TOTAL, timeout_s=120, what="every response counted")

    for url, n in accepted.items():
        page = koe.stats(f"/api/v1/pages/{page_id_for_url(url)}").json()
        assert page["windows"]["all"]["n"] == n
        questions = page["windows"]["all"]["questions"]
        assert questions["clarity"]["n"] == n
        assert sum(q["n"] for q in questions.values()) == answered[url]
