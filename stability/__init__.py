"""stability: the guard around every dependency call — dependency map, circuit breakers,
token-bucket limits, switches and their propagation.

Nothing is created at import time; the composition root (``runtime``) builds the
stores and the :class:`Guard`. Importing the package registers its backends (limit
stores, breaker stores) with :mod:`backends`, so :func:`make_limit_store` and
:func:`make_breaker_store` resolve every scheme.
"""

from __future__ import annotations

from .breaker import BreakerConfig, CircuitBreaker
from .breaker_stats import BreakerStatsPublisher, BreakerWindow, read_stats
from .breaker_store import (
    BreakerSnapshot,
    BreakerStateStore,
    MemoryBreakerStateStore,
    RedisBreakerStateStore,
    make_breaker_store,
)
from .bulkhead import Bulkhead
from .depmap import DependencyMap, EdgeSpec, ResourceSpec, impact, lint_timeouts
from .depmap_seed import default_map, seed_if_empty, seed_or_upgrade
from .depmap_store import DependencyMapStore
from .errors import (
    ApprovalError,
    BreakerOpen,
    BreakerStoreUnavailable,
    BulkheadFull,
    CallTimeout,
    DependencyFailed,
    InvalidDependency,
    LimitBackendUnavailable,
    MapStorageError,
    RateLimited,
    StabilityError,
    SwitchConflict,
    SwitchError,
    SwitchStorageError,
    UnknownResource,
    UnknownSwitchTarget,
)
from .events import BreakerEventLog
from .guard import Guard, call_budget, calling_as, current_caller
from .limits import (
    Decision,
    Limiter,
    LimitOutcome,
    LimitRule,
    LimitStore,
    MemoryLimitStore,
    make_limit_store,
)
from .limits_redis import RedisLimitStore
from .policy import (
    acting_targets,
    approval_policy,
    default_bulkheads,
    default_rules,
    is_core_link,
    is_strong_dependency,
    known_targets,
    target_checker,
)
from .propagation import SwitchWatcher, redis_publisher
from .switches import SwitchRecord, SwitchService, SwitchSnapshot

__all__ = [
    "ApprovalError",
    "BreakerConfig",
    "BreakerEventLog",
    "BreakerOpen",
    "BreakerSnapshot",
    "BreakerStateStore",
    "BreakerStatsPublisher",
    "BreakerStoreUnavailable",
    "BreakerWindow",
    "Bulkhead",
    "BulkheadFull",
    "CallTimeout",
    "CircuitBreaker",
    "Decision",
    "DependencyFailed",
    "DependencyMap",
    "DependencyMapStore",
    "EdgeSpec",
    "Guard",
    "InvalidDependency",
    "LimitBackendUnavailable",
    "LimitOutcome",
    "LimitRule",
    "LimitStore",
    "Limiter",
    "MapStorageError",
    "MemoryBreakerStateStore",
    "MemoryLimitStore",
    "RateLimited",
    "RedisBreakerStateStore",
    "RedisLimitStore",
    "ResourceSpec",
    "StabilityError",
    "SwitchConflict",
    "SwitchError",
    "SwitchRecord",
    "SwitchService",
    "SwitchSnapshot",
    "SwitchStorageError",
    "SwitchWatcher",
    "UnknownResource",
    "UnknownSwitchTarget",
    "acting_targets",
    "approval_policy",
    "call_budget",
    "calling_as",
    "current_caller",
    "default_bulkheads",
    "default_map",
    "default_rules",
    "impact",
    "is_core_link",
    "is_strong_dependency",
    "known_targets",
    "lint_timeouts",
    "make_breaker_store",
    "make_limit_store",
    "read_stats",
    "redis_publisher",
    "seed_if_empty",
    "seed_or_upgrade",
    "target_checker",
]
