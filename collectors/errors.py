"""The collectors package's exceptions; driver errors (SQLAlchemy, httpx) never leave it."""

from __future__ import annotations

__all__ = ["CollectorsError", "LabelError", "QueryError", "StoreError"]


class CollectorsError(Exception):
    """Root of every error the collectors package raises."""


class LabelError(CollectorsError, ValueError):
    """A label value outside its bounded set (a programming error, caught in tests)."""


class QueryError(CollectorsError):
    """A metrics query could not be answered (bad arguments, backend failure)."""


class StoreError(CollectorsError):
    """The time-series store could not read or write the database."""
