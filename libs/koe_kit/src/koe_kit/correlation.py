"""One id that follows a citizen's response from the HTTP request to the email.

The feedback API takes the request's X-Request-Id (koe_kit.web); every event
made while it handles the request carries it as the CloudEvents extension
attribute `koerequestid`, and every log line of the request names it. A
consumer does the same per event it handles (`for_event`), so the relay,
the aggregator, the alert event it publishes and the notifier's log of the
email all carry the id of the response that caused them: one grep for the id
follows a response through koe.

CloudEvents extension names are lower-case letters and digits only, hence
`koerequestid`, not `koe_request_id`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

ATTRIBUTE = "koerequestid"

_request_id: ContextVar[str | None] = ContextVar("koe_request_id", default=None)
# In a consumer batch: the request id of the latest event per subject (page id), so
# an event made for a page (an alert) carries the id of the response that tipped it.
_by_subject: ContextVar[Mapping[str, str] | None] = ContextVar("koe_request_ids", default=None)


def current() -> str | None:
    return _request_id.get()


def set_request_id(request_id: str | None) -> None:
    """For a web request: the id holds until the next request of this worker sets its own."""
    _request_id.set(request_id)


def of_event(event: Mapping[str, Any]) -> str | None:
    value = event.get(ATTRIBUTE)
    return value if isinstance(value, str) else None


def for_subject(subject: str) -> str | None:
    """The id a new event about `subject` should carry, if any."""
    return _request_id.get() or (_by_subject.get() or {}).get(subject)


@contextmanager
def for_event(event: Mapping[str, Any]) -> Iterator[None]:
    """While one consumed event is handled, log lines and new events name its request id."""
    token = _request_id.set(of_event(event))
    try:
        yield
    finally:
        _request_id.reset(token)


@contextmanager
def for_batch(events: list[Mapping[str, Any]]) -> Iterator[None]:
    """While a batch is handled, events made about a subject carry its latest request id."""
    ids = {e["subject"]: rid for e in events if (rid := of_event(e)) is not None}
    token = _by_subject.set(ids)
    try:
        yield
    finally:
        _by_subject.reset(token)
