"""Breaker state shared across processes: one process's open breaker opens it everywhere."""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from backends.errors import DriverErrors
from backends.redis import REDIS_SCHEMES, client_for
from backends.registry import BREAKER_STORE, MEMORY, from_url, register

from .errors import BreakerStoreUnavailable

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


@register(BREAKER_STORE, MEMORY)
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


_UNAVAILABLE = DriverErrors(
    lambda exc: BreakerStoreUnavailable(
        f"breaker store unreachable: {type(exc).__name__}", resource="redis"
    ),
    chain=False,  # the driver's error may name the server
)


@register(BREAKER_STORE, *REDIS_SCHEMES)
class RedisBreakerStateStore(BreakerStateStore):
    """Breaker states as small JSON strings under ``namespace + name``.

    ``client_or_url`` (or ``client=``) is a ``redis.Redis`` (not closed by :meth:`close`)
    or a URL (a client with short timeouts is built and owned here).
    """

    def __init__(
        self,
        client_or_url: Any = None,
        namespace: str = "paywatch:breaker:",
        *,
        client: Any = None,
    ) -> None:
        self._client, self._owned = client_for(client_or_url, client)
        self.namespace = namespace

    def get(self, name: str) -> BreakerSnapshot | None:
        with _UNAVAILABLE:
            raw = self._client.get(self.namespace + name)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return BreakerSnapshot(str(data["state"]), data.get("opened_at"))
        except (ValueError, KeyError, TypeError):
            return None  # a foreign or corrupt value: as if never published

    def set(self, name: str, snapshot: BreakerSnapshot) -> None:
        value = json.dumps({"state": snapshot.state, "opened_at": snapshot.opened_at})
        with _UNAVAILABLE:
            self._client.set(self.namespace + name, value)

    def close(self) -> None:
        if self._owned:
            self._client.close()


def make_breaker_store(url: str | None, **deps: Any) -> BreakerStateStore:
    """The breaker store for ``url`` (:func:`backends.from_url`): ``None``/``memory://``
    → :class:`MemoryBreakerStateStore`; ``redis://`` → Redis (``client=`` a live client
    to share instead of building one)."""
    store: BreakerStateStore = from_url(BREAKER_STORE, url, **deps)
    return store
