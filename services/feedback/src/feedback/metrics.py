"""The feedback service's own metrics (koe_kit.metrics exposes them on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter

# An operator watching for spam reads this: a surge of one reason is a bot at work.
REJECTIONS = Counter(
    "koe_feedback_rejections_total",
    "Submissions refused and never counted, by reason",
    ["reason"],
)
REJECTION_REASONS = ("honeypot", "challenge", "rate_limited", "foreign_origin", "invalid")
for _reason in REJECTION_REASONS:
    REJECTIONS.labels(reason=_reason)  # every series exists from the start, at 0

# A second response from one client for one page within the window replaces the first.
REPLACEMENTS = Counter(
    "koe_feedback_replacements_total",
    "Responses that replaced the same client's earlier response to the same page",
)
