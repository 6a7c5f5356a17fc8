"""A thread-safe in-process lock, for tests and single-process deployments."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from threading import Condition

from backends.registry import LOCK, MEMORY, register

from .base import DistributedLock


@register(LOCK, MEMORY)
class MemoryLock(DistributedLock):
    """An in-process :class:`DistributedLock` backed by a dict and a condition variable.

    Each held key maps to ``(token, expires_at)`` on the ``clock`` timeline
    (``time.monotonic`` by default). Expired entries count as free. Waiters in
    :meth:`acquire` are woken when a lock is released and re-check on expiry.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Create an empty lock table; ``clock`` returns seconds on a monotonic scale."""
        self._clock = clock
        self._cond = Condition()
        self._held: dict[str, tuple[str, float]] = {}

    def _owner(self, key: str, now: float) -> str | None:
        """Return the live owner token of ``key``, dropping an expired entry."""
        entry = self._held.get(key)
        if entry is None:
            return None
        token, expires_at = entry
        if expires_at <= now:
            del self._held[key]
            return None
        return token

    def acquire(self, key: str, *, ttl: float, wait: float) -> str | None:
        """Take ``key`` for ``ttl`` seconds, waiting up to ``wait`` seconds; see base class."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        deadline = time.monotonic() + max(wait, 0.0)
        with self._cond:
            while True:
                now = self._clock()
                current = self._owner(key, now)
                if current is None:
                    token = uuid.uuid4().hex
                    self._held[key] = (token, now + ttl)
                    return token
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                # Wake on release, or when the current holder's TTL may have run out.
                until_expiry = self._held[key][1] - now
                self._cond.wait(timeout=max(min(remaining, until_expiry), 0.001))

    def release(self, key: str, token: str) -> bool:
        """Release ``key`` if ``token`` still holds it; see base class."""
        with self._cond:
            if self._owner(key, self._clock()) != token:
                return False
            del self._held[key]
            self._cond.notify_all()
            return True

    def extend(self, key: str, token: str, ttl: float) -> bool:
        """Push the expiry of ``key`` to ``ttl`` seconds from now if ``token`` holds it."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        with self._cond:
            now = self._clock()
            if self._owner(key, now) != token:
                return False
            self._held[key] = (token, now + ttl)
            return True
