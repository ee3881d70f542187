"""The notifier's own metrics (exposed by koe_kit.metrics on the consumer's metrics port)."""

from __future__ import annotations

from prometheus_client import Counter

EMAILS_SENT = Counter("koe_notifier_emails_sent_total", "Emails the SMTP server took")
EMAILS_RETRIED = Counter(
    "koe_notifier_emails_retried_total",
    "Sends that failed for now (4xx, server away) and will be tried again",
)
EMAILS_FAILED = Counter(
    "koe_notifier_emails_failed_total",
    "Emails refused for good (5xx): an alert's is dead-lettered, a digest is marked failed",
)
