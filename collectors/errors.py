"""The collectors package's exceptions; driver errors (SQLAlchemy, urllib3) never leave it.

::

    CollectorsError
    ├── LabelError (also ValueError): a label value outside its bounded set
    ├── QueryError: a metrics query could not be answered (bad arguments, ...)
    │   └── QueryBackendError (also BackendError): the database or Prometheus failed
    └── StoreError (also BackendError): the time-series store could not write

:class:`backends.errors.BackendError` is the project-wide root of storage failures.
"""

from __future__ import annotations

from backends.errors import BackendError

__all__ = ["CollectorsError", "LabelError", "QueryBackendError", "QueryError", "StoreError"]


class CollectorsError(Exception):
    """Root of every error the collectors package raises."""


class LabelError(CollectorsError, ValueError):
    """A label value outside its bounded set (a programming error, caught in tests)."""


class QueryError(CollectorsError):
    """A metrics query could not be answered (bad arguments, backend failure)."""


class QueryBackendError(QueryError, BackendError):
    """The backend of a metrics query failed: the database, or Prometheus' HTTP API."""


class StoreError(CollectorsError, BackendError):
    """The time-series store could not read or write the database."""
