"""Token-bucket rate limits per resource and business context.

A :class:`LimitStore` keeps the buckets: :class:`MemoryLimitStore` in-process,
:class:`~stability.limits_redis.RedisLimitStore` cluster-wide (one round trip per
decision). A :class:`Limiter` evaluates the :class:`LimitRule` set of a resource,
keyed by the context labels each rule scopes on (merchant, order type, pay org).
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backends.registry import LIMITS, MEMORY, from_url, register

from .errors import LimitBackendUnavailable, RateLimited

#: context labels a rule may key its bucket on
SCOPE_LABELS = frozenset({"merchant_id", "order_type", "sub_type", "pay_org_no"})
#: what a rule does when the limit store is unreachable
POLICIES = ("fail_open", "fail_closed")
#: retry hint for calls refused because the store is unreachable (fail_closed)
BACKEND_RETRY_AFTER = 1.0


@dataclass(frozen=True)
class Decision:
    """One bucket's answer.

    ``retry_after`` is the number of seconds until the refused cost fits (for a
    cost of 1: until one token is free); after an admitted call it is the time
    until the next token, 0 when one is already there.
    """

    allowed: bool
    remaining: float
    retry_after: float


def check_acquire_args(rate: float, burst: float, cost: float) -> None:
    """Reject a bucket that could never admit anything (shared by every store)."""
    if not rate > 0:
        raise ValueError("rate must be > 0")
    if not burst >= 1:
        raise ValueError("burst must be >= 1")
    if not 0 < cost <= burst:
        raise ValueError("cost must be > 0 and <= burst")


class LimitStore(ABC):
    """Token buckets: capacity ``burst``, refilled at ``rate`` tokens/s, new ones full."""

    @abstractmethod
    def acquire(self, key: str, rate: float, burst: float, cost: float = 1.0) -> Decision:
        """Take ``cost`` tokens from bucket ``key`` if it holds them.

        Raises :class:`LimitBackendUnavailable` when the store cannot be reached.
        """

    def take(
        self, key: str, rate: float, burst: float, cost: float = 1.0
    ) -> tuple[bool, float, float]:
        """:meth:`acquire` as a plain ``(allowed, remaining, retry_after)`` tuple (the
        guard's hot path; stores override it to skip building a :class:`Decision`)."""
        d = self.acquire(key, rate, burst, cost)
        return d.allowed, d.remaining, d.retry_after

    def take_valid(
        self, key: str, rate: float, burst: float, cost: float = 1.0
    ) -> tuple[bool, float, float]:
        """:meth:`take` for arguments already validated (a :class:`LimitRule`'s)."""
        return self.take(key, rate, burst, cost)

    @abstractmethod
    def reset(self, key: str) -> None:
        """Forget bucket ``key`` (it starts full again)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""


@register(LIMITS, MEMORY)
class MemoryLimitStore(LimitStore):
    """Thread-safe in-process buckets (one process's view only); the API's per-merchant
    limit (:class:`paycore.api.edge.MerchantRateLimit`) keeps its buckets here too."""

    #: buckets are swept for idle (full again) entries every this many acquires
    SWEEP_EVERY = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [tokens, last refill time, time at which the bucket is full again]
        self._buckets: dict[str, list[float]] = {}
        self._until_sweep = self.SWEEP_EVERY

    def acquire(self, key: str, rate: float, burst: float, cost: float = 1.0) -> Decision:
        return Decision(*self.take(key, rate, burst, cost))

    def take(
        self, key: str, rate: float, burst: float, cost: float = 1.0
    ) -> tuple[bool, float, float]:
        if not (rate > 0 and burst >= 1 and 0 < cost <= burst):  # hot path: validate cheaply
            check_acquire_args(rate, burst, cost)
        return self.take_valid(key, rate, burst, cost)

    def take_valid(
        self, key: str, rate: float, burst: float, cost: float = 1.0
    ) -> tuple[bool, float, float]:
        """:meth:`take` for arguments already validated (a :class:`LimitRule`'s)."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                tokens = burst
                bucket = self._buckets[key] = [0.0, 0.0, 0.0]
            else:
                tokens = bucket[0]
                if now > bucket[1]:
                    tokens += (now - bucket[1]) * rate
                    if tokens > burst:
                        tokens = burst
            if tokens >= cost:
                tokens -= cost
                allowed, retry_after = True, (0.0 if tokens >= 1.0 else (1.0 - tokens) / rate)
            else:
                allowed, retry_after = False, (cost - tokens) / rate
            bucket[0], bucket[1], bucket[2] = tokens, now, now + (burst - tokens) / rate
            self._until_sweep -= 1
            if not self._until_sweep:
                self._until_sweep = self.SWEEP_EVERY
                self._sweep(now)
        return allowed, tokens, retry_after

    def _sweep(self, now: float) -> None:
        # A bucket that has refilled completely is the same as a missing one.
        idle = [k for k, b in self._buckets.items() if b[2] <= now]
        for k in idle:
            del self._buckets[k]

    def reset(self, key: str) -> None:
        with self._lock:
            self._buckets.pop(key, None)

    def close(self) -> None:
        with self._lock:
            self._buckets.clear()


def make_limit_store(url: str | None, **deps: Any) -> LimitStore:
    """The limit store for ``url`` (:func:`backends.from_url`): ``None``/``memory://`` →
    :class:`MemoryLimitStore`; ``redis://`` → :class:`~stability.limits_redis.RedisLimitStore`
    (``client=`` a live client to share instead of building one)."""
    store: LimitStore = from_url(LIMITS, url, **deps)
    return store


@dataclass(frozen=True)
class LimitRule:
    """A token bucket on ``resource``, one bucket per value of the ``scope`` labels.

    ``scope=()`` is one bucket for the whole resource; ``("merchant_id",)`` one per
    merchant; ``("merchant_id", "pay_org_no")`` one per merchant and pay org.
    ``policy`` says what happens when the store is unreachable; a ``dry_run`` rule
    consumes tokens and reports what it would have refused, but never refuses.
    """

    name: str
    resource: str
    rate: float
    burst: float
    scope: tuple[str, ...] = ()
    policy: str = "fail_open"
    dry_run: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", tuple(self.scope))
        if not self.name or not self.resource:
            raise ValueError("a limit rule needs a name and a resource")
        if not self.rate > 0:
            raise ValueError(f"rule {self.name}: rate must be > 0")
        if not self.burst >= 1:
            raise ValueError(f"rule {self.name}: burst must be >= 1")
        if self.policy not in POLICIES:
            raise ValueError(f"rule {self.name}: policy must be one of {POLICIES}")
        unknown = set(self.scope) - SCOPE_LABELS
        if unknown:
            raise ValueError(f"rule {self.name}: unknown scope labels {sorted(unknown)}")

    def bucket_key(self, labels: Mapping[str, str]) -> str:
        """The bucket of this rule for a call with ``labels`` (missing label → ``-``)."""
        parts = [self.name]
        for label in self.scope:
            value = str(labels.get(label) or "-")
            parts.append(f"{label}={value.replace('|', '||')}")
        return "|".join(parts)


@dataclass
class LimitOutcome:
    """The verdict of every rule on one call."""

    allowed: bool = True
    blocked_by: str | None = None
    dry_run_blocked: list[str] = field(default_factory=list)
    retry_after: float = 0.0
    backend_error: bool = False


#: the shared verdict for an admitted call with nothing to report (never mutate it)
ALLOWED = LimitOutcome()


class Limiter:
    """Applies the limit rules of a resource; the rule set can be swapped at run time."""

    def __init__(self, store: LimitStore, rules: Iterable[LimitRule] = ()) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._by_resource: dict[str, tuple[LimitRule, ...]] = {}
        self.set_rules(rules)

    def set_rules(self, rules: Iterable[LimitRule]) -> None:
        """Replace the whole rule set atomically (rule names must be unique).

        A rule that keeps its name keeps its buckets, so a changed rate or burst
        applies to the current fill level at once.
        """
        by_resource: dict[str, list[LimitRule]] = {}
        names: set[str] = set()
        for rule in rules:
            if rule.name in names:
                raise ValueError(f"duplicate limit rule name {rule.name!r}")
            names.add(rule.name)
            by_resource.setdefault(rule.resource, []).append(rule)
        frozen = {res: tuple(rs) for res, rs in by_resource.items()}
        fast = {
            res: rs[0]
            for res, rs in frozen.items()
            if len(rs) == 1 and not rs[0].dry_run and rs[0].policy == "fail_open"
        }
        with self._lock:
            self._by_resource = frozen
            #: resource -> its only rule, when that rule enforces and fails open: the
            #: guard's hot path asks the store for it directly (see ``Guard.call``)
            self.fast_rules = fast

    def rules(self) -> list[LimitRule]:
        """The current rule set."""
        with self._lock:
            current = self._by_resource
        return [rule for rs in current.values() for rule in rs]

    def check(self, resource: str, labels: Mapping[str, str]) -> LimitOutcome:
        """Evaluate the rules of ``resource`` for a call carrying ``labels``.

        Enforcing rules run in order and stop at the first refusal (a refused call
        must not drain further buckets); dry-run rules always run. Once the store
        has failed during this check, the remaining rules apply their policy
        without asking it again.
        """
        # the rule map is replaced whole, never changed in place: no lock needed to read it
        rules = self._by_resource.get(resource, ())
        outcome = None
        for rule in rules:
            if outcome is None:
                if rule.dry_run or rule.policy == "fail_closed" or len(rules) > 1:
                    outcome = LimitOutcome()
                else:  # the common case: one enforcing rule, store healthy
                    try:
                        d = self.store.acquire(rule.bucket_key(labels), rule.rate, rule.burst)
                    except LimitBackendUnavailable:
                        return LimitOutcome(backend_error=True)
                    if d.allowed:
                        return ALLOWED
                    return LimitOutcome(False, rule.name, [], d.retry_after)
            if not outcome.allowed and not rule.dry_run:
                continue
            if outcome.backend_error:
                decision = None
            else:
                try:
                    decision = self.store.acquire(rule.bucket_key(labels), rule.rate, rule.burst)
                except LimitBackendUnavailable:
                    outcome.backend_error = True
                    decision = None
            if decision is None:
                refused = rule.policy == "fail_closed"
                retry_after = BACKEND_RETRY_AFTER
            else:
                refused = not decision.allowed
                retry_after = decision.retry_after
            if not refused:
                continue
            if rule.dry_run:
                outcome.dry_run_blocked.append(rule.name)
            else:
                outcome.allowed = False
                outcome.blocked_by = rule.name
                outcome.retry_after = retry_after
        return outcome if outcome is not None else ALLOWED

    def enforce(self, resource: str, labels: Mapping[str, str]) -> LimitOutcome:
        """Like :meth:`check`, but raise :class:`RateLimited` when the call is refused."""
        outcome = self.check(resource, labels)
        if not outcome.allowed:
            why = " (limit store unreachable)" if outcome.backend_error else ""
            retry_after = outcome.retry_after if math.isfinite(outcome.retry_after) else 1.0
            raise RateLimited(
                f"rate limited by rule {outcome.blocked_by}{why}",
                resource=resource,
                retry_after=retry_after,
            )
        return outcome
