"""A page is its canonical URL: scheme + lower-cased host + path, no query or fragment."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a page id may be: safe in a URL path, a Kafka key and a log line. The same
# pattern as $defs.page_id in schemas/koe.feedback.submitted.v1.json, but ending in \Z:
# Python's $ also matches before a final line break, and "page\n" is no page id.
PAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")


def canonical_url(url: str) -> str:
    """Raise ValueError for anything that is not an absolute http(s) URL."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("must be an http or https URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    host = parts.hostname.lower()
    port = parts.port  # raises ValueError for a port out of range
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def page_id_for_url(canonical: str) -> str:
    """A short, URL-safe id for pages the embed did not give a CMS id for."""
    return "u-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def origin_of(url: str) -> str:
    parts = urlsplit(canonical_url(url))
    return f"{parts.scheme}://{parts.netloc}"
