"""koe's contract between services: topic names, event types, and who produces and
consumes each topic (payloads.py types each event's data).

schemas/topics.yaml says the same for the broker and for people (koe_kit reads it to
create topics and to find a topic's dead letters); tests/test_contract.py holds the two
equal, and each service's consumer group and topics to this module. A topic and its
first event type share a name on the wire ("koe.alerts.v1"); here they are two
constants, because a topic carries several types.
"""

from __future__ import annotations

from dataclasses import dataclass

# Topics.
FEEDBACK_TOPIC = "koe.feedback.submitted.v1"
FEEDBACK_DLQ_TOPIC = "koe.feedback.submitted.dlq.v1"
ALERTS_TOPIC = "koe.alerts.v1"
ALERTS_DLQ_TOPIC = "koe.alerts.dlq.v1"

# Event types (CloudEvents `type`, one JSON Schema each in schemas/).
FEEDBACK_SUBMITTED = "koe.feedback.submitted.v1"
ALERT_DROP = "koe.alerts.v1"
ALERT_RECOVERED = "koe.alerts.recovered.v1"
EDIT_REVIEWED = "koe.alerts.edit.reviewed.v1"

# Who writes and reads. A service's name where it produces; a consumer group where it
# consumes (each service's KOE_CONSUMER_GROUP default).
FEEDBACK = "feedback"
AGGREGATOR = "aggregator"
NOTIFIER = "notifier"
# `python -m koe_kit.dlq redrive`: reads dead letters as this group and sends them back
# to the topic they came from.
DLQ_REDRIVE = "koe-dlq-redrive"


@dataclass(frozen=True)
class Topic:
    name: str
    event_types: frozenset[str]
    producers: frozenset[str]
    consumers: frozenset[str]
    dead_letters_of: str | None = None


TOPICS = (
    Topic(
        FEEDBACK_TOPIC,
        frozenset({FEEDBACK_SUBMITTED}),
        producers=frozenset({FEEDBACK, DLQ_REDRIVE}),
        consumers=frozenset({AGGREGATOR}),
    ),
    Topic(
        FEEDBACK_DLQ_TOPIC,
        frozenset(),
        producers=frozenset({AGGREGATOR}),
        consumers=frozenset({DLQ_REDRIVE}),
        dead_letters_of=FEEDBACK_TOPIC,
    ),
    # A recovery and an edit's report share the drops' topic and key (the page id), so a
    # recovery never overtakes its drop (docs/alerts.md, docs/edits.md).
    Topic(
        ALERTS_TOPIC,
        frozenset({ALERT_DROP, ALERT_RECOVERED, EDIT_REVIEWED}),
        producers=frozenset({AGGREGATOR, DLQ_REDRIVE}),
        consumers=frozenset({NOTIFIER}),
    ),
    Topic(
        ALERTS_DLQ_TOPIC,
        frozenset(),
        producers=frozenset({NOTIFIER}),
        consumers=frozenset({DLQ_REDRIVE}),
        dead_letters_of=ALERTS_TOPIC,
    ),
)


def produced_by(producer: str) -> frozenset[str]:
    """The topics `producer` writes to."""
    return frozenset(t.name for t in TOPICS if producer in t.producers)


def consumed_by(group: str) -> frozenset[str]:
    """The topics consumer group `group` reads."""
    return frozenset(t.name for t in TOPICS if group in t.consumers)
