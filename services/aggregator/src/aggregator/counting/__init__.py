"""Counting, the consumer's write side: each feedback event counted once per page,
day and question, with the source caps, replacements, the window rollups, retention
and pruning."""
