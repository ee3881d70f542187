"""The aggregator's one declarative Base: every package's models share its metadata,
so one database and one migration history (migrations/) hold them all."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


# Rows updated in place by every batch: room for HOT updates (see migration 0001).
UPDATED_IN_PLACE = {"postgresql_with": {"fillfactor": 70}}
