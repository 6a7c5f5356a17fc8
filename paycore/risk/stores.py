"""The risk counter store named by a URL (:func:`backends.from_url`, kind ``risk
counters``): in-process, or Redis shared by the replicas."""

from __future__ import annotations

from typing import Any

from backends.registry import MEMORY, RISK_COUNTERS, from_url, register

from .counters import MemoryRiskCounters, RiskCounters
from .counters_redis import RedisRiskCounters

DEFAULT_NAMESPACE = "paywatch:risk:"


@register(RISK_COUNTERS, MEMORY)
def _memory_counters(*, namespace: str = DEFAULT_NAMESPACE, client: Any = None) -> RiskCounters:
    return MemoryRiskCounters()


@register(RISK_COUNTERS, "redis", "rediss", "unix")
def _redis_counters(
    url: str, *, namespace: str = DEFAULT_NAMESPACE, client: Any = None
) -> RiskCounters:
    return RedisRiskCounters(client if client is not None else url, namespace=namespace)


def make_risk_counters(url: str | None, **deps: Any) -> RiskCounters:
    """``None``/``memory://`` → in-process counters; ``redis://``/``rediss://``/``unix://``
    → Redis, keys under ``namespace=``, on ``client=`` (a live client, left open) when
    the composition root hands one in, else on a client the store builds and owns.
    Another scheme raises :class:`backends.UnknownBackend` (a ``ValueError``) naming it."""
    counters: RiskCounters = from_url(RISK_COUNTERS, url, **deps)
    return counters
