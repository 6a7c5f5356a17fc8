"""A Redis-backed lock: ``SET NX PX`` to acquire, token-checked Lua to release/extend."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from backends.errors import DriverErrors
from backends.redis import REDIS_SCHEMES, client_for
from backends.registry import LOCK, register

from ..errors import LockBackendError
from .base import DistributedLock

_RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

_EXTEND_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_BACKOFF_START = 0.002
_BACKOFF_MAX = 0.05
#: any Redis error, as a message that never holds the connection URL
_UNAVAILABLE = DriverErrors(lambda exc: LockBackendError("lock backend unavailable"))


def _ms(seconds: float) -> int:
    """Convert a positive TTL in seconds to whole milliseconds (at least 1)."""
    if seconds <= 0:
        raise ValueError("ttl must be positive")
    return max(1, int(seconds * 1000))


@register(LOCK, *REDIS_SCHEMES)
class RedisLock(DistributedLock):
    """A :class:`DistributedLock` stored in Redis under ``namespace + key``.

    Any Redis error is raised as :class:`paycore.errors.LockBackendError` with a
    message that never contains the connection URL.
    """

    #: the dependency-map resource the guard accounts lock calls to
    resource = "redis"

    def __init__(
        self,
        client_or_url: Any = None,
        *,
        client: Any = None,
        namespace: str = "paywatch:lock:",
        socket_timeout: float = 1.0,
    ) -> None:
        """Wrap an existing client (``client_or_url`` or ``client=``), or create (and own)
        one from a ``redis://`` URL with ``socket_timeout``: a hung Redis must fail the
        request, not hold it (and its trade) forever."""
        self._client, self._owns_client = client_for(
            client_or_url, client, timeout=socket_timeout, retries=0
        )
        self._namespace = namespace
        # register_script only builds a Script object; no round trip happens here.
        self._release = self._client.register_script(_RELEASE_LUA)
        self._extend = self._client.register_script(_EXTEND_LUA)

    def _key(self, key: str) -> str:
        return self._namespace + key

    def acquire(self, key: str, *, ttl: float, wait: float) -> str | None:
        """Take ``key`` with ``SET NX PX``, retrying with jittered backoff for ``wait`` s."""
        ttl_ms = _ms(ttl)
        token = uuid.uuid4().hex
        name = self._key(key)
        deadline = time.monotonic() + max(wait, 0.0)
        delay = _BACKOFF_START
        while True:
            with _UNAVAILABLE:
                if self._client.set(name, token, nx=True, px=ttl_ms):
                    return token
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            sleep_for = delay + random.uniform(0, delay / 2)
            time.sleep(min(sleep_for, remaining))
            delay = min(delay * 2, _BACKOFF_MAX)

    def release(self, key: str, token: str) -> bool:
        """Delete ``key`` atomically if its value is still ``token``."""
        with _UNAVAILABLE:
            return bool(self._release(keys=[self._key(key)], args=[token]))

    def extend(self, key: str, token: str, ttl: float) -> bool:
        """Reset the expiry of ``key`` to ``ttl`` seconds atomically if ``token`` holds it."""
        ttl_ms = _ms(ttl)
        with _UNAVAILABLE:
            return bool(self._extend(keys=[self._key(key)], args=[token, ttl_ms]))

    def close(self) -> None:
        """Close the Redis client if this object created it from a URL."""
        if self._owns_client:
            self._client.close()
