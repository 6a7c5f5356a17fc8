"""Merchant notification POSTs through the guard: the map's ``link.notify ->
notification`` edge (weak, fallback "outbox: deliver later").

Each POST runs as ``guard.call("notification", caller="link.notify")`` with the edge's
timeout as its HTTP timeout. A merchant that answers (any status) is the notification
service working: the answer is the row's business (2xx delivered, anything else retried
on the schedule). A POST that gets no answer (a timeout, a refused connection) is a
failure of the dependency and still spends that row's attempt. When the guard refuses
the call (``notification`` degraded, its breaker open, its bulkhead full) nothing is
sent: the row stays ``pending``, its attempts untouched, and goes out on a later run
once the dependency is back. Nothing is lost and no attempt is burned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["CALLER", "DEFERRED", "RESOURCE", "guarded_post", "notify_timeout"]

RESOURCE, CALLER = "notification", "link.notify"
T = TypeVar("T")


class _NoAnswer(Exception):
    """The merchant's endpoint did not answer: counted against ``notification``."""


#: what a refused POST returns: leave the row pending, nothing attempted
DEFERRED: Any = object()


def notify_timeout(guard: Any, default: float) -> float:
    """The HTTP timeout of a POST: the edge's timeout with a guard whose map has the
    edge, else ``default``."""
    if guard is None or guard.map.edge(CALLER, RESOURCE) is None:
        return default
    return float(guard.timeout_s(CALLER, RESOURCE))


def guarded_post(guard: Any, post: Callable[[], T], answered: Callable[[T], bool]) -> T | Any:
    """``post()`` through the guard (unguarded without a guard or the edge): its outcome,
    or :data:`DEFERRED` when the guard refused the call. ``answered(outcome)``: False when
    the endpoint gave no answer (a failure of the dependency; the outcome still stands)."""
    if guard is None or guard.map.edge(CALLER, RESOURCE) is None:
        return post()
    made: list[T] = []

    def attempt() -> T:
        outcome = post()
        made.append(outcome)
        if not answered(outcome):
            raise _NoAnswer
        return outcome

    def later() -> T | Any:
        return made[-1] if made else DEFERRED

    return guard.call(RESOURCE, attempt, caller=CALLER, fallback=later)
