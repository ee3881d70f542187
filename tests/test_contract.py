"""schemas/ is the contract between services: every example must validate, every
schema must be sound, and every topic must be declared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from koe_kit import events

SCHEMAS = Path(__file__).parents[1] / "schemas"
EXAMPLES = sorted((SCHEMAS / "examples").glob("*/*.json"))


def test_every_event_type_has_examples():
    types = {p.stem for p in SCHEMAS.glob("koe.*.json")}
    with_examples = {p.parent.name for p in EXAMPLES}
    assert types == with_examples


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_is_valid(path: Path):
    event = json.loads(path.read_text(encoding="utf-8"))
    assert event["type"] == path.parent.name
    events.validate(event)


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.name)
def test_schema_is_valid_draft_2020_12(path: Path):
    Draft202012Validator.check_schema(json.loads(path.read_text(encoding="utf-8")))


def test_every_event_type_has_a_topic_and_a_dead_letter_topic():
    topics = events.topics()
    carried = {t: topic for topic in topics for t in events.event_types_on(topic)}
    for path in SCHEMAS.glob("koe.*.json"):
        assert path.stem in carried, f"{path.stem} is carried by no topic in topics.yaml"
        topic = carried[path.stem]
        assert events.dead_letter_topic(topic) in topics  # raises KeyError if undeclared


def test_a_recovery_is_carried_beside_the_drops_it_follows():
    # Same topic and key (the page id) as the drops: a recovery never overtakes its drop.
    assert events.event_types_on("koe.alerts.v1") == {
        "koe.alerts.v1",
        "koe.alerts.recovered.v1",
        "koe.alerts.edit.reviewed.v1",
    }
    assert events.event_types_on("koe.feedback.submitted.v1") == {"koe.feedback.submitted.v1"}


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda e: e.pop("id"), "id"),
        (lambda e: e.update(specversion="0.3"), "specversion"),
        (lambda e: e["data"].update(answers={}), "data.answers"),
        (lambda e: e["data"]["answers"].update(clarity="maybe"), "data.answers.clarity"),
        (lambda e: e["data"].update(page_url="javascript:alert(1)"), "data.page_url"),
        (lambda e: e["data"].update(extra=1), "data"),
        (lambda e: e.update(time="yesterday"), "time"),
    ],
)
def test_broken_events_are_rejected_naming_the_field(mutate, where):
    event = json.loads(EXAMPLES[-1].read_text(encoding="utf-8"))
    assert event["type"] == "koe.feedback.submitted.v1"
    mutate(event)
    with pytest.raises(events.InvalidEvent) as caught:
        events.validate(event)
    assert caught.value.reason.startswith(where)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[]", "event is not"),
        (b'{"type": "koe.nope.v1"}', "type: unknown event type"),
        (None, "empty message"),
    ],
)
def test_undecodable_messages_say_why(raw, reason):
    with pytest.raises(events.InvalidEvent) as caught:
        events.decode(raw)
    assert caught.value.reason.startswith(reason)


def test_the_event_carries_every_locale_the_widget_speaks():
    """A language added to the catalogue but not to the schema would make every answer
    in it an invalid event, refused after the citizen pressed 送信."""
    from koe_directory.catalogue import LOCALES

    schema = json.loads((SCHEMAS / "koe.feedback.submitted.v1.json").read_text(encoding="utf-8"))
    data = schema["properties"]["data"]
    assert data["properties"]["locale"]["enum"] == list(LOCALES)
