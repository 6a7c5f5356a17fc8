"""The guard's outcome counters: the :class:`Recorder` protocol every metrics backend
implements, and :class:`GuardStats`, the in-process recorder every guard has."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from typing import Protocol

__all__ = ["OUTCOMES", "GuardStats", "Recorder"]

#: every outcome the guard records (one per attempt or refusal)
OUTCOMES = (
    "pass",
    "error",
    "timeout",
    "degraded",
    "fallback",
    "blocked",
    "breaker_open",
    "dry_run_blocked",
    "bulkhead_full",
)


class Recorder(Protocol):
    """What the guard reports to: one outcome per attempt or refusal, and every breaker
    transition."""

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None: ...
    def breaker_changed(self, resource: str, old: str, new: str, reason: str) -> None: ...


class GuardStats:
    """In-process counters of guard outcomes: what tests, drills and the console read
    when no metrics backend is wired in. Lock-free on the hot path: ``next()`` on an
    ``itertools.count`` is atomic in CPython."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str], itertools.count[int]] = {}
        self.transitions: list[tuple[str, str, str, str]] = []
        self._lock = threading.Lock()

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        counter = self._counters.get((resource, outcome))
        if counter is None:
            counter = self.counter(resource, outcome)
        next(counter)

    def counter(self, resource: str, outcome: str) -> itertools.count[int]:
        """The counter of one (resource, outcome): ``next()`` on it counts one."""
        with self._lock:
            return self._counters.setdefault((resource, outcome), itertools.count(1))

    @property
    def counts(self) -> Counter[tuple[str, str]]:
        return Counter({key: self._value(c) for key, c in list(self._counters.items())})

    @staticmethod
    def _value(counter: itertools.count[int]) -> int:
        return int(repr(counter)[6:-1]) - 1  # count(n) has handed out n - 1 values

    def breaker_changed(self, resource: str, old: str, new: str, reason: str) -> None:
        with self._lock:
            self.transitions.append((resource, old, new, reason))

    def count(self, resource: str, outcome: str) -> int:
        counter = self._counters.get((resource, outcome))
        return 0 if counter is None else self._value(counter)
