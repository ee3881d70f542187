"""CloudEvents 1.0 (structured JSON) encoding, decoding and schema validation.

The contract lives in the repository's `schemas/` folder: one JSON Schema per
event type and version, named `<type>.json`. Producers validate before they
send and consumers validate what they read, with the same code.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SPEC_VERSION = "1.0"
SCHEMA_URI_PREFIX = "urn:koe:schema:"


class InvalidEvent(ValueError):
    """An event that is not valid JSON, not a known type, or breaks its schema.

    Invalid events are never retried: they are dead-lettered with `reason`.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def schemas_dir() -> Path:
    override = os.environ.get("KOE_SCHEMAS_DIR")
    return Path(override) if override else Path(__file__).resolve().parent / "schemas"


@cache
def _registry() -> Registry:
    """Every schema in schemas/, so event schemas can $ref the shared envelope by $id."""
    resources = []
    for path in sorted(schemas_dir().glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


@cache
def _validator(event_type: str) -> Draft202012Validator:
    resource = _registry().get(SCHEMA_URI_PREFIX + event_type)
    if resource is None or event_type == "cloudevent.envelope":
        raise InvalidEvent(f"type: unknown event type {event_type!r}")
    return Draft202012Validator(
        resource.contents,
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


@cache
def topics() -> dict[str, dict[str, Any]]:
    """The topic list from schemas/topics.yaml: name -> {partitions, retention_ms, ...}."""
    raw = yaml.safe_load((schemas_dir() / "topics.yaml").read_text(encoding="utf-8"))
    return {t["name"]: t for t in raw["topics"]}


def validate(event: dict[str, Any]) -> None:
    """Raise InvalidEvent naming the first problem, or return quietly."""
    if not isinstance(event, dict):
        raise InvalidEvent("event is not a JSON object")
    event_type = event.get("type")
    if not isinstance(event_type, str):
        raise InvalidEvent("type: missing or not a string")
    error = next(iter(sorted(_validator(event_type).iter_errors(event), key=str)), None)
    if error is not None:
        path = [str(p) for p in error.absolute_path]
        if error.validator == "required":
            # Name the missing field itself, not its parent.
            path += [next(k for k in error.validator_value if k not in error.instance)]
        raise InvalidEvent(f"{'.'.join(path) or '(event)'}: {error.message}")


def make_event(
    event_type: str,
    *,
    source: str,
    subject: str,
    data: dict[str, Any],
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
