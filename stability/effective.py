"""The timeouts the clients really use, derived from the dependency map in one place.

The clients take their numbers from here (the shared Redis client's socket timeout and
retries, the trade lock's wait) or from the guard at call time (the database's
``statement_timeout``, the channel and notification HTTP timeouts are the edge's
timeout: ``guard.timeout_s``); :func:`effective_timeouts` reports the same numbers for
:func:`stability.depmap.lint_effective`, next to what the map does not set (SQLite's
busy timeout) and each link's own budget.

**A link's budget** is ``Settings.link_budgets_ms`` (``PAYWATCH_LINK_BUDGET_MS``,
``link.pay=9000,...``): the longest one call of the link may take end to end, what a
merchant's client (or a channel's callback sender, or the notification job's lease) must
be ready to wait. The lint sums what the link calls one after another, retries included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_LINK_BUDGETS_MS",
    "REDIS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "ClientTimeout",
    "EffectiveTimeouts",
    "effective_timeouts",
    "lock_wait_s",
    "redis_client_options",
]

REDIS = "redis"
#: what a SQLite writer waits for the file lock (``PRAGMA busy_timeout``, paycore.db.engine)
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: the default budget of each link, ms (see the module docstring)
DEFAULT_LINK_BUDGETS_MS: Mapping[str, int] = {
    "link.trade_create": 2000,
    "link.pay": 8000,
    "link.refund": 8000,
    "link.callback": 5000,
    "link.notify": 3000,
}
#: the shared Redis client's numbers when the map has no ``redis`` edge (seconds, retries)
REDIS_FALLBACK = (0.25, 1)


def redis_client_options(dmap: Any) -> tuple[float, int]:
    """``(socket timeout s, retries)`` of the process's shared Redis client: the
    shortest ``redis`` edge's timeout and that edge's retries (redis-py retries a command
    whose connection failed or timed out), so a command takes at most the edge's
    ``timeout * (1 + retries)``."""
    edges = [e for e in dmap.edges if e.callee == REDIS]
    if not edges:
        return REDIS_FALLBACK
    shortest = min(edges, key=lambda e: (e.timeout_ms, e.retries))
    return shortest.timeout_ms / 1000.0, shortest.retries


def lock_wait_s(dmap: Any, caller: str, configured: float) -> float:
    """How long ``caller`` waits for a busy trade lock in Redis: the redis edge's budget
    (``timeout * (1 + retries)``), never more than ``configured``; ``configured`` when
    the map has no such edge (the in-process lock is no dependency)."""
    edge = dmap.edge(caller, REDIS)
    if edge is None:
        return configured
    return min(configured, edge.budget_ms / 1000.0)


@dataclass(frozen=True)
class ClientTimeout:
    """One number a client uses, and the edge whose timeout it must fit in.

    ``value_ms`` None: the client has no limit at all. ``attempts``: how many times the
    client itself tries (its own retries), so it can spend ``value_ms * attempts``.
    """

    name: str
    caller: str
    callee: str
    value_ms: int | None
    attempts: int = 1

    @property
    def spend_ms(self) -> int | None:
        return None if self.value_ms is None else self.value_ms * self.attempts


@dataclass(frozen=True)
class EffectiveTimeouts:
    """What the clients use (:class:`ClientTimeout` per edge they serve), the trade lock's
    wait per link, and each link's budget."""

    clients: tuple[ClientTimeout, ...] = ()
    lock_wait_ms: Mapping[str, int] = field(default_factory=dict)
    link_budget_ms: Mapping[str, int] = field(default_factory=dict)


def _clients(settings: Any, dmap: Any) -> list[ClientTimeout]:
    postgres = str(getattr(settings, "database_url", "")).startswith("postgresql")
    redis_on = bool(getattr(settings, "redis_url", None))
    socket_s, retries = redis_client_options(dmap)
    out: list[ClientTimeout] = []
    for e in dmap.edges:
        if e.callee == "database":
            if postgres:
                out.append(ClientTimeout("statement_timeout", e.caller, e.callee, e.timeout_ms))
                out.append(ClientTimeout("lock_timeout", e.caller, e.callee, e.timeout_ms))
            else:
                busy = SQLITE_BUSY_TIMEOUT_MS
                out.append(ClientTimeout("sqlite busy_timeout", e.caller, e.callee, busy))
        elif e.callee == REDIS and redis_on:
            ms = round(socket_s * 1000)
            out.append(ClientTimeout("redis socket timeout", e.caller, e.callee, ms, 1 + retries))
        elif e.callee.startswith("channel."):
            out.append(ClientTimeout("channel HTTP timeout", e.caller, e.callee, e.timeout_ms))
        elif e.callee == "notification":
            out.append(ClientTimeout("notification HTTP timeout", e.caller, e.callee, e.timeout_ms))
    return out


def effective_timeouts(
    settings: Any, dmap: Any, *, configured_lock_wait_s: float = 10.0
) -> EffectiveTimeouts:
    """The numbers the clients of a platform built from ``settings`` use with ``dmap``.

    ``settings``: a ``runtime.settings.Settings`` (read: ``database_url``,
    ``redis_url``, ``link_budgets_ms``); ``configured_lock_wait_s``: the pay core's own
    lock wait (``PayCore(lock_wait=...)``), which the map's redis edge can only shorten.
    """
    waits: dict[str, int] = {}
    if getattr(settings, "redis_url", None):
        for e in dmap.edges:
            if e.callee == REDIS:
                waits[e.caller] = round(lock_wait_s(dmap, e.caller, configured_lock_wait_s) * 1000)
    budgets = dict(DEFAULT_LINK_BUDGETS_MS)
    budgets.update(getattr(settings, "link_budgets_ms", None) or {})
    return EffectiveTimeouts(tuple(_clients(settings, dmap)), waits, budgets)
