"""Calls through the guard from inside the pay core: the database, the ledger, the hot
accounts and notification delivery are dependencies of the map, called as the current
caller's edge.

:func:`through` runs ``body`` under ``guard.call(resource, ..., caller=caller)`` and
decides what counts against the dependency: only exceptions ``failure(exc)`` accepts.
Every other exception (a business error, a retryable serialisation conflict the
:class:`~paycore.db.engine.Database` retries itself, a failure already attributed to a
nested dependency) passes through the guard untouched and is raised as it was; the guard
records the call as a pass, so a client's mistake never trips a breaker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from stability.guard import calling_as, current_caller

T = TypeVar("T")

__all__ = ["edge_caller", "through"]


class _Passed:
    """Carries an exception that is not the dependency's failure across the guard (as a
    return value: the guard records a pass)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def edge_caller(guard: Any, resource: str) -> str | None:
    """The current caller when a guard is attached and the map has its edge to
    ``resource``; ``None`` (call unguarded) otherwise: a CLI, a migration, a test without
    a guard, or code that is not one of the map's callers."""
    if guard is None:
        return None
    caller = current_caller()
    if caller is None or guard.map.edge(caller, resource) is None:
        return None
    return caller


def through(
    guard: Any,
    resource: str,
    body: Callable[[], T],
    *,
    caller: str,
    failure: Callable[[BaseException], bool],
    inner_caller: str | None = None,
    fallback: Callable[[], T] | None = None,
    timed: bool = True,
) -> T:
    """``body()`` as ``caller``'s call of ``resource``; see the module docstring.

    ``inner_caller``: who the code in ``body`` runs as (default: ``resource``, the guard's
    nested attribution). A database transaction passes the link itself: the code inside a
    link's transaction is still the link's, and its ledger posting is the link's edge.
    ``timed``: see :meth:`stability.guard.Guard.call`.
    """

    def call() -> T | _Passed:
        try:
            if inner_caller is None:
                return body()
            with calling_as(inner_caller):
                return body()
        except Exception as exc:
            if failure(exc):
                raise
            return _Passed(exc)

    result = guard.call(resource, call, caller=caller, fallback=fallback, timed=timed)
    if isinstance(result, _Passed):
        raise result.error
    return result
