"""The whole pipeline on real parts: every koe process as a subprocess, the
broker, PostgreSQL and an SMTP server. What a citizen sends shows up in the
stats; a page that gets worse makes exactly one email to its division."""

from __future__ import annotations

import pytest

from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from koe_kit import events
from koe_kit.kafka import read_topic
from support import DX_PAGE, SITE, drained, history, publish

pytestmark = pytest.mark.e2e


def decoded(bootstrap: str, topic: str) -> list[dict]:
    """Every event on a topic, each decoded and validated against its schema."""
    return [events.decode(record.value) for record in read_topic([bootstrap], topic)]


def test_responses_reach_the_stats_and_a_drop_emails_its_division_once(
    koe_factory, broker, smtp_server
):
    koe = koe_factory()

    # 1. Citizens answer a page's survey over HTTP; the stats API shows each once.
    page_url = f"{SITE}/kurashi/gomi/5678.html"
    page_id = page_id_for_url(canonical_url(page_url))
    sent = [
        {"findability": "yes", "clarity": "neutral", "usefulness": "no"},
        {"clarity": "yes"},
        {"usefulness": "yes", "findability": "no"},
    ]
    for answers in sent:
        response = koe.submit(page_url=page_url, page_title="ごみの出し方", answers=answers)
        assert response.status_code == 202, response.text
    wait_until(lambda: koe.page_n(page_id) == 3, what="3 responses in the stats")
    page = koe.stats(f"/api/v1/pages/{page_id}").json()
    clarity = page["windows"]["all"]["questions"]["clarity"]
    assert (clarity["yes"], clarity["neutral"], clarity["no"], clarity["n"]) == (1, 1, 0, 2)
    assert clarity["score"] == 75.0
    assert page["url"] == canonical_url(page_url)
    assert page["division"] == "kankyo-gomi"

    # 2. A page with a hundred good days and then four bad ones: one email, to its division.
    publish(broker.bootstrap, "koe.feedback.submitted.v1", history(DX_PAGE))
    wait_until(lambda: smtp_server.messages, timeout_s=90, what="the alert email")
    drained(koe, broker.bootstrap)  # a second email, if the detector fired twice, is here
    assert len(smtp_server.messages) == 1
    mail = smtp_server.messages[0]
    assert mail["To"] == "digital-kaikaku@city-tsu.example"
    assert "津市の自治体DX取組状況" in mail["Subject"]
    assert any("\u3040" <= ch <= "\u30ff" for ch in mail["Subject"]), "subject is not Japanese"
    body = mail.get_body(preferencelist=("plain",)).get_content()
    assert "デジタル改革推進課" in body
    assert canonical_url(DX_PAGE) in body

    # 3. Everything the services put on the topics follows its schema.
    submitted = decoded(broker.bootstrap, "koe.feedback.submitted.v1")
    assert sum(e["source"] == "koe/feedback" for e in submitted) == 3
    alerts = decoded(broker.bootstrap, "koe.alerts.v1")
    assert len(alerts) == 1
    assert alerts[0]["data"]["page"]["url"] == canonical_url(DX_PAGE)
