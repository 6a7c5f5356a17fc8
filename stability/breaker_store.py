"""Breaker state shared across processes: one process's open breaker opens it everywhere."""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

import redis

from stability.errors import StabilityError

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
FORCED_OPEN = "forced_open"
FORCED_CLOSED = "forced_closed"
#: every state a breaker can be in
STATES = (CLOSED, OPEN, HALF_OPEN, FORCED_OPEN, FORCED_CLOSED)


@dataclass(frozen=True)
class BreakerSnapshot:
    """A breaker's state; the counters are only filled by ``CircuitBreaker.snapshot()``.

    ``opened_at`` is on the clock of the breaker that wrote it, so across
    processes it is informational: a reader starts its own cool-down on adoption.
    """

    state: str
    opened_at: float | None = None
    calls: int = 0
    failures: int = 0
    slow_calls: int = 0

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown breaker state {self.state!r}")

    @property
    def shared(self) -> tuple[str, float | None]:
        """The part a :class:`BreakerStateStore` keeps."""
        return (self.state, self.opened_at)


class BreakerStoreUnavailable(StabilityError):
    """The shared breaker store cannot be reached; breakers go on with local state."""

    code = "breaker_store_unavailable"
    http_status = 503


class BreakerStateStore(ABC):
    """Where breakers of the same name in several processes publish their state."""

    @abstractmethod
    def get(self, name: str) -> BreakerSnapshot | None:
        """The last published state of breaker ``name`` (``None``: never published).

        Raises :class:`BreakerStoreUnavailable` when the store cannot be reached.
        """

    @abstractmethod
    def set(self, name: str, snapshot: BreakerSnapshot) -> None:
        """Publish ``snapshot`` (only state and ``opened_at`` are kept)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


class MemoryBreakerStateStore(BreakerStateStore):
    """Thread-safe in-process store: breakers of one process share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, tuple[str, float | None]] = {}

    def get(self, name: str) -> BreakerSnapshot | None:
        with self._lock:
            shared = self._states.get(name)
        return None if shared is None else BreakerSnapshot(*shared)

    def set(self, name: str, snapshot: BreakerSnapshot) -> None:
        with self._lock:
            self._states[name] = snapshot.shared

    def close(self) -> None:
        with self._lock:
            self._states.clear()


class RedisBreakerStateStore(BreakerStateStore):
    """Breaker states as small JSON strings under ``namespace + name``.

    ``client_or_url`` is a ``redis.Redis`` (not closed by :meth:`close`) or a URL
    (a client with short timeouts is built and owned here).
    """

    def __init__(
        self, client_or_url: redis.Redis | str, namespace: str = "paywatch:breaker:"
    ) -> None:
        if isinstance(client_or_url, str):
            from stability.limits_redis import client_from_url

            self._client = client_from_url(client_or_url)
            self._owned = True
        else:
            self._client = client_or_url
            self._owned = False
        self.namespace = namespace

    def get(self, name: str) -> BreakerSnapshot | None:
        try:
            raw = self._client.get(self.namespace + name)
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return BreakerSnapshot(str(data["state"]), data.get("opened_at"))
        except (ValueError, KeyError, TypeError):
            return None  # a foreign or corrupt value: as if never published

    def set(self, name: str, snapshot: BreakerSnapshot) -> None:
        value = json.dumps({"state": snapshot.state, "opened_at": snapshot.opened_at})
        try:
            self._client.set(self.namespace + name, value)
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from None

    def close(self) -> None:
        if self._owned:
            self._client.close()


def _unavailable(exc: BaseException) -> BreakerStoreUnavailable:
    return BreakerStoreUnavailable(
        f"breaker store unreachable: {type(exc).__name__}", resource="redis"
    )


def make_breaker_store(url: str | None) -> BreakerStateStore:
    """``None``/``memory://`` → :class:`MemoryBreakerStateStore`; ``redis://`` → Redis."""
    if url is None or url in {"memory", "memory://"}:
        return MemoryBreakerStateStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBreakerStateStore(url)
    raise ValueError(f"unsupported breaker store url scheme: {url.split('://', 1)[0]!r}")
