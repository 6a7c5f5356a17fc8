"""The risk engine: limits per merchant and user, a blocklist, and a review log of the
payments its fallback let through unchecked (see :mod:`paycore.risk.engine`)."""

from .counters import MemoryRiskCounters, RiskCounters
from .counters_redis import RedisRiskCounters
from .engine import BLOCKED, RiskEngine, RiskHold
from .lists import block, blocked, close_review, list_reviews, record_review, unblock
from .policy import RiskPolicy, Window, scope_key, windows_at
from .stores import make_risk_counters

__all__ = [
    "BLOCKED",
    "MemoryRiskCounters",
    "RedisRiskCounters",
    "RiskCounters",
    "RiskEngine",
    "RiskHold",
    "RiskPolicy",
    "Window",
    "block",
    "blocked",
    "close_review",
    "list_reviews",
    "make_risk_counters",
    "record_review",
    "scope_key",
    "unblock",
    "windows_at",
]
