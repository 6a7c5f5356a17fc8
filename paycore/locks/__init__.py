"""Distributed locks: an in-process backend and a Redis backend behind one interface.

Importing the package registers both with :mod:`backends` (kind ``lock``), so
:func:`make_lock` resolves every scheme.
"""

from __future__ import annotations

from typing import Any

from backends.registry import LOCK, from_url

from .base import DistributedLock
from .guarded import guarded_hold
from .memory import MemoryLock
from .redis import RedisLock

__all__ = ["DistributedLock", "MemoryLock", "RedisLock", "guarded_hold", "make_lock"]


def make_lock(url: str | None, **deps: Any) -> DistributedLock:
    """Build a lock backend from a URL (:func:`backends.from_url`, kind ``lock``).

    ``None``, ``""`` or ``"memory://"`` give a :class:`MemoryLock`; ``redis://``,
    ``rediss://`` and ``unix://`` URLs give a :class:`RedisLock` that owns its client,
    or uses ``client=`` (a live client, left open) when one is handed in. Any other
    scheme raises :class:`ValueError` naming only the scheme.
    """
    lock: DistributedLock = from_url(LOCK, url, **deps)
    return lock
