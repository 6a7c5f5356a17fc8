"""The abstract distributed-lock interface shared by every backend."""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from paycore.errors import LockBackendError, LockTimeout

log = logging.getLogger(__name__)


class DistributedLock(abc.ABC):
    """A named, non-re-entrant mutual-exclusion lock with a time-to-live.

    Acquiring a key returns an opaque owner token (a uuid4 hex string); only that
    token can release or extend the lock. A lock whose TTL elapses is free again,
    even if its owner never released it.
    """

    #: the dependency-map resource behind the lock (``None``: in-process, not a dependency)
    resource: str | None = None

    @abc.abstractmethod
    def acquire(self, key: str, *, ttl: float, wait: float) -> str | None:
        """Take the lock on ``key`` for ``ttl`` seconds.

        Retries until ``wait`` seconds have elapsed (``wait=0`` tries once).
        Returns the owner token, or ``None`` if the lock stayed busy.
        """

    @abc.abstractmethod
    def release(self, key: str, token: str) -> bool:
        """Release ``key`` if it is still held by ``token``.

        Returns ``False`` if the lock was not held by that token (for example it
        expired and was taken by someone else); the lock is then left untouched.
        """

    @abc.abstractmethod
    def extend(self, key: str, token: str, ttl: float) -> bool:
        """Reset the TTL of ``key`` to ``ttl`` seconds from now if ``token`` holds it.

        Returns ``False`` if the lock is not held by ``token``.
        """

    @contextmanager
    def hold(self, key: str, *, ttl: float = 10.0, wait: float = 5.0) -> Iterator[str]:
        """Hold ``key`` for the duration of a ``with`` block and yield the token.

        Raises :class:`paycore.errors.LockTimeout` if the lock cannot be acquired
        within ``wait`` seconds. The lock is released when the block exits, also
        on an exception; a release the backend fails is logged, not raised (see
        :meth:`release_quietly`).
        """
        token = self.acquire(key, ttl=ttl, wait=wait)
        if token is None:
            raise LockTimeout(f"lock busy: {key}")
        try:
            yield token
        finally:
            self.release_quietly(key, token)

    def release_quietly(self, key: str, token: str) -> bool | None:
        """:meth:`release`, and None instead of an error when the backend fails.

        What the lock guarded has already happened (a pay committed): failing the
        request now would hide a committed payment from its caller and skip sending it.
        The lock frees itself when its TTL elapses.
        """
        try:
            return self.release(key, token)
        except LockBackendError:
            log.warning("lock %s not released (backend error); it expires at its TTL", key)
            return None

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Release any resources owned by this lock object (default: nothing)."""
