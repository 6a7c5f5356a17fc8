"""Risk counters: attempts and amounts per scope and window, reserved atomically.

:class:`MemoryRiskCounters` keeps them in one process (valid only for a single API
process); :class:`~paycore.risk.counters_redis.RedisRiskCounters` shares them between
every API replica pointing at the same Redis (one round trip per decision).

The contract (``tests/contract/test_risk_counters.py`` runs it over both):
:meth:`RiskCounters.reserve` either adds the attempt to *every* window or, when one of
them has no room, to none and names that window; :meth:`RiskCounters.release` gives a
reservation back (never below zero); a window is forgotten ``ttl_s`` after it was
last written.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .policy import Window


@dataclass(frozen=True)
class Refusal:
    """The window that had no room, and whether its ``count`` or ``amount`` was full."""

    window: Window
    limit: str


class RiskCounters(ABC):
    """Attempt counts and amounts per (scope, window)."""

    @abstractmethod
    def reserve(self, scope: str, amount: int, windows: Sequence[Window]) -> Refusal | None:
        """Add one attempt of ``amount`` to every window of ``scope`` if each has room;
        else change nothing and return the first window (count before amount) without.

        Raises :class:`~paycore.errors.RiskUnavailable` when the store cannot be reached.
        """

    @abstractmethod
    def release(self, scope: str, amount: int, windows: Sequence[Window]) -> None:
        """Give back one attempt of ``amount`` reserved in ``windows`` (floored at 0)."""

    @abstractmethod
    def usage(self, scope: str, window: Window) -> tuple[int, int]:
        """``(attempts, amount)`` counted in one window of ``scope``."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""


class MemoryRiskCounters(RiskCounters):
    """Thread-safe in-process counters (one process's view only)."""

    #: expired windows are swept every this many reservations
    SWEEP_EVERY = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._cells: dict[str, list[int | float]] = {}  # key -> [count, amount, expires]
        self._until_sweep = self.SWEEP_EVERY

    def _live(self, key: str, now: float) -> list[int | float] | None:
        cell = self._cells.get(key)
        if cell is not None and cell[2] <= now:
            del self._cells[key]
            return None
        return cell

    def reserve(self, scope: str, amount: int, windows: Sequence[Window]) -> Refusal | None:
        keys = [f"{scope}|{w.suffix}" for w in windows]
        with self._lock:
            now = self._clock()
            for key, w in zip(keys, windows, strict=True):
                cell = self._live(key, now)
                count, total = (cell[0], cell[1]) if cell is not None else (0, 0)
                if count + 1 > w.max_count:
                    return Refusal(w, "count")
                if w.max_amount and total + amount > w.max_amount:
                    return Refusal(w, "amount")
            for key, w in zip(keys, windows, strict=True):
                cell = self._cells.setdefault(key, [0, 0, 0.0])
                cell[0] += 1
                cell[1] += amount
                cell[2] = now + w.ttl_s
            self._until_sweep -= 1
            if not self._until_sweep:
                self._until_sweep = self.SWEEP_EVERY
                for key in [k for k, c in self._cells.items() if c[2] <= now]:
                    del self._cells[key]
        return None

    def release(self, scope: str, amount: int, windows: Sequence[Window]) -> None:
        with self._lock:
            now = self._clock()
            for w in windows:
                cell = self._live(f"{scope}|{w.suffix}", now)
                if cell is not None:
                    cell[0] = max(0, int(cell[0]) - 1)
                    cell[1] = max(0, int(cell[1]) - amount)

    def usage(self, scope: str, window: Window) -> tuple[int, int]:
        with self._lock:
            cell = self._live(f"{scope}|{window.suffix}", self._clock())
            return (int(cell[0]), int(cell[1])) if cell is not None else (0, 0)

    def close(self) -> None:
        with self._lock:
            self._cells.clear()
