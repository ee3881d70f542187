"""koe aggregator: per-page satisfaction counts, the drop rule, and the stats API."""
