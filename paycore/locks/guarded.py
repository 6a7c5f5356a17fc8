"""The trade lock through the guard: Redis is a strong dependency of the pay links.

A lock backend that is down or slow should open the ``redis`` breaker, so a pay or
refund fails fast with ``dependency_unavailable:redis`` instead of every request
waiting out its own connection timeout, and the outage shows on the dependency map
and in the guard metrics. Only backend errors count as failures: a lock that stays
busy (another request holds the trade) is Redis answering correctly.

The wait for a busy lock comes from the map: the redis edge's ``timeout * (1 + retries)``
(:func:`stability.effective.lock_wait_s`), never more than the core's own ``lock_wait``;
the timeout lint counts it in the link's budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from paycore.errors import LockBackendError, LockTimeout
from stability.effective import lock_wait_s

from .base import DistributedLock


@contextmanager
def guarded_hold(
    lock: DistributedLock, guard: Any, key: str, *, caller: str, ttl: float, wait: float
) -> Iterator[str]:
    """``lock.hold(key)`` with the guard's switch/breaker check before, and the outcome
    recorded after, waiting for a busy lock as long as the map allows; unguarded when the
    lock has no ``resource`` (in-process) or the map has no ``caller -> resource`` edge."""
    resource = getattr(lock, "resource", None)
    if guard is None or resource is None or guard.map.edge(caller, resource) is None:
        with lock.hold(key, ttl=ttl, wait=wait) as held:
            yield held
        return
    guard.admit(resource, caller=caller)  # strong: raises when degraded or the breaker is open
    wait = lock_wait_s(guard.map, caller, wait)
    start = time.monotonic()
    try:
        token = lock.acquire(key, ttl=ttl, wait=wait)
    except LockBackendError:
        guard.record(resource, caller, False, time.monotonic() - start)
        raise
    guard.record(resource, caller, True, time.monotonic() - start)
    if token is None:
        raise LockTimeout(f"lock busy: {key}")
    try:
        yield token
    finally:
        start = time.monotonic()
        if lock.release_quietly(key, token) is None:  # the outage still shows on the map
            guard.record(resource, caller, False, time.monotonic() - start)
