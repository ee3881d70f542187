"""The aggregator's own metrics (koe_kit.metrics exposes them on the consumer's metrics port)."""

from __future__ import annotations

from prometheus_client import Counter

# processed_events would otherwise grow by one row per response for ever (pruning.py).
PROCESSED_PRUNED = Counter(
    "koe_aggregator_processed_events_pruned_total",
    "processed_events rows deleted once Kafka can no longer deliver their event again",
)

# source_counts would grow by a row per page, day and source (pruning.py).
SOURCES_PRUNED = Counter(
    "koe_aggregator_source_counts_pruned_total",
    "source_counts rows deleted KOE_SOURCE_KEEP_DAYS after their day (the counts stay)",
)
