"""CloudEvents 1.0 (structured JSON) encoding, decoding and schema validation.

The contract lives in the repository's `schemas/` folder: one JSON Schema per
event type and version, named `<type>.json`. Producers validate before they
send and consumers validate what they read, with the same code.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

import fastjsonschema
import yaml

from koe_kit import correlation
from koe_kit.config import schemas_dir

SPEC_VERSION = "1.0"
SCHEMA_URI_PREFIX = "urn:koe:schema:"


class InvalidEvent(ValueError):
    """An event that is not valid JSON, not a known type, or breaks its schema.

    Invalid events are never retried: they are dead-lettered with `reason`.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    """Every schema in schemas/ by $id, so event schemas can $ref the shared envelope."""
    found = {}
    for path in sorted(schemas_dir().glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        found[schema["$id"]] = schema
    return found


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@cache
def _validator(event_type: str) -> Callable[[Any], Any]:
    # fastjsonschema compiles a schema to Python: about 20x faster than
    # jsonschema's interpreter, which matters on the feedback API's hot path.
    schema = _schemas().get(SCHEMA_URI_PREFIX + event_type)
    if schema is None or event_type == "cloudevent.envelope":
        raise InvalidEvent(f"type: unknown event type {event_type!r}")
    return fastjsonschema.compile(
        schema,
        handlers={"urn": lambda uri: _schemas()[uri]},
        formats={"uuid": _is_uuid, "date": r"^\d{4}-\d{2}-\d{2}$"},
    )


@cache
def topics() -> dict[str, dict[str, Any]]:
    """The topic list from schemas/topics.yaml: name -> {partitions, retention_ms, ...}."""
    raw = yaml.safe_load((schemas_dir() / "topics.yaml").read_text(encoding="utf-8"))
    return {t["name"]: t for t in raw["topics"]}


def event_types_on(topic: str) -> set[str]:
    """The event types a topic carries: its own name's, and those it `also_carries`."""
    return {topic, *topics().get(topic, {}).get("also_carries", [])}


def dead_letter_topic(topic: str) -> str:
    """The topic that topics.yaml names as the dead letters of `topic`."""
    for name, spec in topics().items():
        if spec.get("dead_letters_of") == topic:
            return name
    raise KeyError(f"schemas/topics.yaml declares no dead-letter topic for {topic}")


def validate(event: dict[str, Any]) -> None:
    """Raise InvalidEvent naming the first problem, or return quietly."""
    if not isinstance(event, dict):
        raise InvalidEvent("event is not a JSON object")
    event_type = event.get("type")
    if not isinstance(event_type, str):
        raise InvalidEvent("type: missing or not a string")
    try:
        _validator(event_type)(event)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = [str(p) for p in exc.path[1:]]  # path[0] is fastjsonschema's name for the root
        if exc.rule == "required":
            # Name the missing field itself, not its parent.
            path.append(next(k for k in exc.rule_definition if k not in exc.value))
        message = exc.message.split(" ", 1)[-1]  # drop the "data.x.y" prefix
        raise InvalidEvent(f"{'.'.join(path) or '(event)'}: {message}") from None


def make_event(
    event_type: str,
    *,
    source: str,
    subject: str,
    data: Mapping[str, Any],
    event_id: str | None = None,
    time: datetime | None = None,
) -> dict[str, Any]:
    """Build and validate a structured-mode CloudEvent."""
    event = {
        "specversion": SPEC_VERSION,
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "time": format_time(time or datetime.now(UTC)),
        "datacontenttype": "application/json",
        "dataschema": SCHEMA_URI_PREFIX + event_type,
        "subject": subject,
        "data": data,
    }
    request_id = correlation.for_subject(subject)
    if request_id:
        event[correlation.ATTRIBUTE] = request_id
    validate(event)
    return event


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode(raw: bytes | None) -> dict[str, Any]:
    """Parse and validate one message value; InvalidEvent says why it is poison."""
    if raw is None:
        raise InvalidEvent("empty message (tombstone)")
    try:
        event = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    validate(event)
    return event
