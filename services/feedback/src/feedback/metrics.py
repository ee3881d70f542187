"""The feedback service's own metrics (koe_kit.metrics exposes them on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter

# An operator watching for spam reads this: a surge of one reason is a bot at work.
REJECTIONS = Counter(
    "koe_feedback_rejections_total",
    "Submissions refused and never counted, by reason",
    ["reason"],
)
# challenge: no valid proof of work (403); budget: over a source's budget (429);
# token: a client_token outside its page view (409); page_identity: a signed page id
# with another URL than its first (422).
REJECTION_REASONS = (
    "honeypot",
    "challenge",
    "budget",
    "token",
    "page_identity",
    "foreign_origin",
    "invalid",
)
for _reason in REJECTION_REASONS:
    REJECTIONS.labels(reason=_reason)  # every series exists from the start, at 0

# A page view's change of mind (tokens.py): the new response replaces its earlier one.
REPLACEMENTS = Counter(
    "koe_feedback_replacements_total",
    "Responses that replaced the same page view's earlier response",
)
