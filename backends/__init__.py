"""backends: backends chosen by URL, storage errors, and the one Redis client factory.

The bottom package: it imports nothing else of paywatch. A package registers its
backends for a kind and URL schemes (:func:`register`); :func:`from_url` builds one for
a URL, handing in live dependencies (one Redis client for the whole process, built by
:func:`redis_client`). Every backend turns driver errors into its package's storage
error, a :class:`BackendError`, through :class:`DriverErrors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import BackendError, DriverErrors, UnknownBackend, driver_errors
from .registry import (
    BREAKER_STORE,
    LIMITS,
    LOCK,
    MEMORY,
    METRIC_STORE,
    RISK_COUNTERS,
    from_url,
    kinds,
    lookup,
    register,
    scheme_of,
    schemes,
)

if TYPE_CHECKING:
    from .redis import redis_client

__all__ = [
    "BREAKER_STORE",
    "LIMITS",
    "LOCK",
    "MEMORY",
    "METRIC_STORE",
    "RISK_COUNTERS",
    "BackendError",
    "DriverErrors",
    "UnknownBackend",
    "driver_errors",
    "from_url",
    "kinds",
    "lookup",
    "redis_client",
    "register",
    "scheme_of",
    "schemes",
]


def __getattr__(name: str) -> object:
    # redis is imported only by whoever needs a Redis client
    if name == "redis_client":
        from .redis import redis_client

        return redis_client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
