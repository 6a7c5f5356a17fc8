"""Distributed locks: an in-process backend and a Redis backend behind one interface."""

from __future__ import annotations

from urllib.parse import urlsplit

from paycore.locks.base import DistributedLock
from paycore.locks.memory import MemoryLock
from paycore.locks.redis import RedisLock

__all__ = ["DistributedLock", "MemoryLock", "RedisLock", "make_lock"]


def make_lock(url: str | None) -> DistributedLock:
    """Build a lock backend from a URL.

    ``None``, ``""`` or ``"memory://"`` give a :class:`MemoryLock`; ``redis://`` and
    ``rediss://`` URLs give a :class:`RedisLock` that owns its client. Any other
    scheme raises :class:`ValueError` naming only the scheme.
    """
    if not url or url == "memory://":
        return MemoryLock()
    scheme = urlsplit(url).scheme.lower()
    if scheme in {"redis", "rediss"}:
        return RedisLock(url)
    raise ValueError(f"unsupported lock backend scheme: {scheme or '(none)'!r}")
