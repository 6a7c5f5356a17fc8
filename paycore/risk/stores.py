"""The risk counter store named by a URL: in-process, or Redis shared by the replicas."""

from __future__ import annotations

from .counters import MemoryRiskCounters, RiskCounters
from .counters_redis import RedisRiskCounters


def make_risk_counters(url: str | None, *, namespace: str = "paywatch:risk:") -> RiskCounters:
    """``None``/``memory://`` → in-process counters; ``redis://``/``rediss://`` → Redis
    (a client owned by the store, keys under ``namespace``)."""
    if not url or url in {"memory", "memory://"}:
        return MemoryRiskCounters()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisRiskCounters(url, namespace=namespace)
    raise ValueError(f"unsupported risk counter store scheme: {url.split('://', 1)[0]!r}")
