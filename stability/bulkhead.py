"""Bulkheads: a cap on the calls in flight to one resource (Sentinel's thread grade,
resilience4j's semaphore bulkhead), so one slow dependency cannot hold every worker.

A call that finds the cap reached is refused at once (no queueing): the guard records
``bulkhead_full`` and a strong edge raises :class:`~stability.errors.BulkheadFull`.
"""

from __future__ import annotations

import threading

__all__ = ["Bulkhead"]


class Bulkhead:
    """An in-flight counter with a cap; thread-safe, never blocks."""

    __slots__ = ("_lock", "_n", "cap", "resource")

    def __init__(self, resource: str, cap: int) -> None:
        self.resource = resource
        self.cap = check_cap(resource, cap)
        self._n = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Calls admitted and not finished."""
        return self._n

    def try_enter(self) -> bool:
        """Take a slot; False (and nothing taken) when ``cap`` calls are in flight."""
        with self._lock:
            if self._n >= self.cap:
                return False
            self._n += 1
            return True

    def leave(self) -> None:
        """Give back the slot :meth:`try_enter` took."""
        with self._lock:
            self._n -= 1


def check_cap(resource: str, cap: object) -> int:
    """``cap`` when it is an int >= 1; ValueError otherwise."""
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ValueError(f"bulkhead of {resource}: cap must be an int >= 1, got {cap!r}")
    return cap
