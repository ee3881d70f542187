"""Poison on each consumed topic, between valid events, with the real consumer processes
running: every poison message lands on the topic's dead-letter topic with the reason,
the consumer carries on with the valid events after it, and nothing of the poison
reaches the stats or a mailbox."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from koe_devkit.testing import wait_until
from koe_directory import canonical_url, page_id_for_url
from koe_kit import events
from koe_kit.kafka import read_topic
from support import SITE, alert, drained, emails_per_alert, publish, submitted

pytestmark = pytest.mark.e2e

FEEDBACK, FEEDBACK_DLQ = "koe.feedback.submitted.v1", "koe.feedback.submitted.dlq.v1"
ALERTS, ALERTS_DLQ = "koe.alerts.v1", "koe.alerts.dlq.v1"


@dataclass(frozen=True)
class Poison:
    kind: str
    value: bytes | None
    reason: str  # how the dead letter's koe-dlq-reason starts


def changed(event: dict, change) -> bytes:
    broken = copy.deepcopy(event)
    change(broken)
    return events.encode(broken)


def poison(event: dict, wrong_schema, stranger: dict) -> list[Poison]:
    """Every kind of poison, made from a valid `event` of the topic: `wrong_schema`
    breaks its data, `stranger` is a valid event of another topic."""
    version = event["type"].rsplit(".", 1)[0] + ".v9"

    def as_v9(e: dict) -> None:
        e.update(type=version, dataschema=events.SCHEMA_URI_PREFIX + version)

    def as_cloudevents_03(e: dict) -> None:
        e["specversion"] = "0.3"

    return [
        Poison("invalid JSON", events.encode(event)[:40], "not JSON"),
        Poison("JSON, not an object", b'["koe"]', "event is not a JSON object"),
        Poison("not UTF-8 (Shift_JIS)", '{"title": "津市"}'.encode("shift_jis"), "not UTF-8"),
        Poison("wrong schema", changed(event, wrong_schema), "data."),
        Poison("unknown version", changed(event, as_v9), f"type: unknown event type {version!r}"),
        Poison("wrong specversion", changed(event, as_cloudevents_03), "specversion: "),
        Poison("another topic's event", events.encode(stranger), "type: "),
        Poison("tombstone", None, "empty message"),
    ]


def interleave(valid: list[dict], poisons: list[Poison]) -> list:
    """valid, poison, valid, poison, ..., valid: each poison has valid events after it."""
    assert len(valid) > len(poisons)
    mixed: list = []
    for i, event in enumerate(valid):
        mixed.append(event)
        if i < len(poisons):
            mixed.append(poisons[i].value)
    return mixed


def check_dead_letters(bootstrap: str, dlq: str, poisons: list[Poison], sent: list, group: str):
    """Each poison on the dead-letter topic, in order, unchanged, with where it came
    from and why."""
    origin = {m.offset for m in sent}
    dead = read_topic([bootstrap], dlq)
    assert len(dead) == len(poisons), [dict(d.headers)["koe-dlq-reason"] for d in dead]
    for letter, expected in zip(dead, poisons, strict=True):
        headers = {name: value.decode() for name, value in letter.headers}
        assert letter.value == (expected.value or b""), expected.kind
        assert headers["koe-dlq-reason"].startswith(expected.reason), (expected.kind, headers)
        assert (headers["koe-dlq-topic"], headers["koe-dlq-group"]) == (sent[0].topic, group)
        assert int(headers["koe-dlq-offset"]) in origin


def test_poison_on_the_feedback_topic_is_dead_lettered_and_the_aggregator_carries_on(
    koe_factory, broker, figures
):
    koe = koe_factory()
    page, poisoned_page = (canonical_url(f"{SITE}/shisei/poison/{n}.html") for n in (1, 2))
    now = datetime.now(UTC)
    valid = [submitted(page, {"clarity": ("yes", "no")[i % 2]}, now) for i in range(12)]
    base = submitted(poisoned_page, {"clarity": "yes"}, now)
    poisons = poison(
        base,
        lambda e: e["data"]["answers"].update(clarity="maybe"),
        stranger=alert(1),
    )
    # One key, so one partition, in this order: each poison between two valid events.
    sent = publish(broker.bootstrap, FEEDBACK, interleave(valid, poisons), key=valid[0]["subject"])
    assert len({m.partition for m in sent}) == 1

    wait_until(lambda: len(read_topic([broker.bootstrap], FEEDBACK_DLQ)) >= len(poisons))
    wait_until(lambda: koe.page_n(page_id_for_url(page)) >= len(valid), what="valid ones counted")
    drained(koe, broker.bootstrap)  # anything more, if the poison were counted, shows now
    check_dead_letters(broker.bootstrap, FEEDBACK_DLQ, poisons, sent, "aggregator")
    counted = koe.page_n(page_id_for_url(page))
    assert counted == len(valid)
    window = koe.stats(f"/api/v1/pages/{page_id_for_url(page)}").json()["windows"]["all"]
    clarity = window["questions"]["clarity"]
    assert (clarity["yes"], clarity["no"]) == (6, 6)
    listed = {p["id"] for p in koe.stats("/api/v1/pages").json()["pages"]}
    assert listed == {page_id_for_url(page)}, "a poison event reached the stats"
    assert "aggregator-consumer" not in koe.stack.dead()
    figures(
        fault=f"poison on {FEEDBACK} ({len(poisons)} kinds, between valid events)",
        in_flight=len(valid) + len(poisons),
        lost=max(0, len(valid) - counted),
        doubled=max(0, counted - len(valid)),
    )


def test_poison_on_the_alerts_topic_is_dead_lettered_and_the_notifier_carries_on(
    koe_factory, broker, smtp_server, figures
):
    koe = koe_factory()
    valid = [alert(n) for n in range(1, 13)]
    base = alert(99)
    poisons = poison(
        base,
        lambda e: e["data"].pop("page"),
        stranger=submitted(f"{SITE}/shisei/dx/1234.html", {"clarity": "no"}, datetime.now(UTC)),
    )
    sent = publish(broker.bootstrap, ALERTS, interleave(valid, poisons), key=valid[0]["subject"])
    assert len({m.partition for m in sent}) == 1

    wait_until(lambda: len(read_topic([broker.bootstrap], ALERTS_DLQ)) >= len(poisons))
    wanted = {a["id"] for a in valid}
    wait_until(lambda: set(emails_per_alert(smtp_server.messages)) >= wanted, what="alerts emailed")
    drained(koe, broker.bootstrap)  # a mail for the poison, or a second one, is here
    check_dead_letters(broker.bootstrap, ALERTS_DLQ, poisons, sent, "notifier")
    per_alert = emails_per_alert(smtp_server.messages)
    assert per_alert == dict.fromkeys(wanted, 1), "a poison alert was mailed, or one twice"
    assert len(smtp_server.messages) == len(valid)
    assert "notifier-consumer" not in koe.stack.dead()
    figures(
        fault=f"poison on {ALERTS} ({len(poisons)} kinds, between valid alerts)",
        in_flight=len(valid) + len(poisons),
        lost=len(wanted - set(per_alert)),
        doubled=sum(n - 1 for n in per_alert.values()),
    )
