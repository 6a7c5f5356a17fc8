"""The guard: one entry point around every dependency call.

    switch → rate limit → breaker → call with timeout → record outcome

Weak dependencies degrade to their fallback; strong ones fail fast with
:class:`~stability.errors.DependencyFailed` naming the resource. Sync calls cannot
be interrupted in Python, so the guard hands the callee its budget
(:func:`call_budget`, for the client's own timeout) and counts an overrun as a
timeout; :meth:`Guard.acall` enforces the timeout itself with ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from .breaker import BreakerConfig, CircuitBreaker
from .breaker_store import BreakerStateStore
from .errors import (
    BreakerOpen,
    CallTimeout,
    DependencyFailed,
    LimitBackendUnavailable,
    RateLimited,
    UnknownResource,
)
from .limits import Limiter, LimitRule, MemoryLimitStore
from .switches import SwitchSnapshot

T = TypeVar("T")
_budget: ContextVar[float | None] = ContextVar("paywatch_call_budget", default=None)
_EMPTY: Mapping[str, str] = {}


def call_budget(default: float) -> float:
    """Seconds the current guarded call may take (for a client's own timeout)."""
    value = _budget.get()
    return default if value is None else value


class Recorder(Protocol):
    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None: ...
    def breaker_changed(self, resource: str, old: str, new: str, reason: str) -> None: ...


class GuardStats:
    """In-process counters of guard outcomes: what tests, drills and the console read
    when no metrics backend is wired in. Lock-free on the hot path: ``next()`` on an
    ``itertools.count`` is atomic in CPython."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str], itertools.count[int]] = {}
        self.transitions: list[tuple[str, str, str, str]] = []
        self._lock = threading.Lock()

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        counter = self._counters.get((resource, outcome))
        if counter is None:
            counter = self.counter(resource, outcome)
        next(counter)

    def counter(self, resource: str, outcome: str) -> itertools.count[int]:
        """The counter of one (resource, outcome): ``next()`` on it counts one."""
        with self._lock:
            return self._counters.setdefault((resource, outcome), itertools.count(1))

    @property
    def counts(self) -> Counter[tuple[str, str]]:
        return Counter({key: self._value(c) for key, c in list(self._counters.items())})

    @staticmethod
    def _value(counter: itertools.count[int]) -> int:
        return int(repr(counter)[6:-1]) - 1  # count(n) has handed out n - 1 values

    def breaker_changed(self, resource: str, old: str, new: str, reason: str) -> None:
        with self._lock:
            self.transitions.append((resource, old, new, reason))

    def count(self, resource: str, outcome: str) -> int:
        counter = self._counters.get((resource, outcome))
        return 0 if counter is None else self._value(counter)


@dataclass(frozen=True, slots=True)
class _Route:
    grade: str
    timeout_s: float
    breaker: CircuitBreaker
    passes: itertools.count[int]  #: the GuardStats counter of this resource's passes


class Guard:
    """Wraps dependency calls; ``apply(snapshot)`` takes switch changes at run time."""

    def __init__(
        self,
        dependency_map: Any,
        *,
        limiter: Limiter | None = None,
        base_rules: Iterable[LimitRule] = (),
        breaker_config: BreakerConfig | None = None,
        breaker_store: BreakerStateStore | None = None,
        recorders: Iterable[Recorder] = (),
        ignore: tuple[type[BaseException], ...] = (),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.map = dependency_map
        self.base_rules = list(base_rules)
        self.limiter = limiter or Limiter(MemoryLimitStore(), self.base_rules)
        self.limiter.set_rules(self.base_rules)
        self.breaker_config = breaker_config or BreakerConfig()
        self.breaker_store = breaker_store
        self.stats = GuardStats()
        self.recorders: list[Recorder] = [self.stats, *recorders]
        self.ignore = ignore  # business errors: re-raised, never counted as failures
        self.clock = clock
        self.snapshot = SwitchSnapshot()
        self._limited = {r.resource for r in self.base_rules}
        self._routes: dict[tuple[str, str], _Route] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    # -- configuration ---------------------------------------------------------------------
    def apply(self, snapshot: SwitchSnapshot) -> None:
        """Apply a switch snapshot: degradations, forced breakers, limit overrides."""
        rules = []
        for rule in self.base_rules:
            over = snapshot.limits.get(rule.name, {})
            rule = replace(
                rule,
                rate=float(over.get("rate", rule.rate)),
                burst=float(over.get("burst", over.get("rate", rule.burst))),
                dry_run=rule.dry_run or rule.name in snapshot.dry_run,
            )
            rules.append(rule)
        self.limiter.set_rules(rules)
        self._limited = {r.resource for r in rules}
        for name in set(snapshot.forced) | set(self.snapshot.forced):
            self.breaker(name).force(snapshot.forced.get(name), "switch")
        self.snapshot = snapshot

    def breaker(self, resource: str) -> CircuitBreaker:
        b = self._breakers.get(resource)
        if b is None:
            with self._lock:
                b = self._breakers.get(resource)
                if b is None:
                    b = CircuitBreaker(
                        resource,
                        self.breaker_config,
                        store=self.breaker_store,
                        on_change=self._breaker_changed,
                    )
                    self._breakers[resource] = b
        return b

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Every breaker made so far, by resource (a copy)."""
        return dict(self._breakers)

    def _breaker_changed(self, name: str, old: str, new: str, reason: str) -> None:
        for r in self.recorders:
            r.breaker_changed(name, old, new, reason)

    def _route(self, caller: str, resource: str) -> _Route:
        route = self._routes.get((caller, resource))
        if route is None:
            edge = self.map.edge(caller, resource)
            if edge is None:
                raise UnknownResource(f"no dependency {caller} -> {resource}", resource=resource)
            route = _Route(
                edge.grade,
                edge.timeout_ms / 1000.0,
                self.breaker(resource),
                self.stats.counter(resource, "pass"),
            )
            self._routes[(caller, resource)] = route
        return route

    # -- calls -----------------------------------------------------------------------------
    def admit(
        self, resource: str, *, caller: str, labels: Mapping[str, str] = _EMPTY
    ) -> tuple[_Route, str | None]:
        """Switch, limit and breaker checks. Returns the route and, when the call must
        not go ahead, why (``degraded``, ``blocked``, ``breaker_open``); strong
        dependencies raise instead."""
        route = self._route(caller, resource)
        refusal = None
        if resource in self.snapshot.degraded:
            refusal = "degraded"
        elif resource in self._limited:
            outcome = self.limiter.check(resource, labels)
            for _ in outcome.dry_run_blocked:
                self._record(resource, caller, "dry_run_blocked", 0.0)
            if not outcome.allowed:
                if route.grade == "strong":
                    self._record(resource, caller, "blocked", 0.0)
                    raise RateLimited(
                        "rate limit", resource=resource, retry_after=outcome.retry_after
                    )
                refusal = "blocked"
        if refusal is None and not route.breaker.allow():
            refusal = "breaker_open"
        if refusal is not None and route.grade == "strong":
            self._record(resource, caller, refusal, 0.0)
            cls = BreakerOpen if refusal == "breaker_open" else DependencyFailed
            raise cls(f"{resource} is unavailable ({refusal})", resource=resource, reason=refusal)
        return route, refusal

    def record(
        self,
        resource: str,
        caller: str,
        ok: bool,
        duration_s: float,
        timeout_s: float | None = None,
    ) -> None:
        """Record a call made outside :meth:`call` (e.g. an asynchronous channel send)."""
        timed_out = timeout_s is not None and duration_s > timeout_s
        self.breaker(resource).record(ok and not timed_out, duration_s)
        outcome = "timeout" if timed_out else ("pass" if ok else "error")
        self._record(resource, caller, outcome, duration_s)

    def call(
        self,
        resource: str,
        fn: Callable[[], T],
        *,
        caller: str,
        labels: Mapping[str, str] = _EMPTY,
        fallback: Callable[[], T] | None = None,
    ) -> T:
        """Run ``fn`` under the guard; weak dependencies return ``fallback()`` instead of
        failing, strong ones raise :class:`DependencyFailed`.

        The common case (known edge, not degraded, a plainly closed breaker, at most one
        fail-open limit rule) is admitted inline; everything else through :meth:`admit`.
        """
        route = self._routes.get((caller, resource))
        rule = None
        if (
            route is None
            or not route.breaker.plainly_closed
            or resource in self.snapshot.degraded
            or (
                resource in self._limited
                and (rule := self.limiter.fast_rules.get(resource)) is None
            )
        ):
            route, refusal = self.admit(resource, caller=caller, labels=labels)
            if refusal is not None:
                return self._fallback(resource, caller, refusal, fallback)
            rule = None
        elif rule is not None:  # inline: one fail-open rule, asked of the store directly
            key = rule.bucket_key(labels) if rule.scope else rule.name
            try:
                allowed, _, retry_after = self.limiter.store.take_valid(key, rule.rate, rule.burst)
            except LimitBackendUnavailable:
                allowed = True  # the rule fails open, as Limiter.check would decide
            if not allowed:
                if route.grade == "strong":
                    self._record(resource, caller, "blocked", 0.0)
                    raise RateLimited("rate limit", resource=resource, retry_after=retry_after)
                return self._fallback(resource, caller, "blocked", fallback)
        token = _budget.set(route.timeout_s)
        start = self.clock()
        try:
            result = fn()
        except self.ignore:
            self.record(resource, caller, True, self.clock() - start)
            raise
        except Exception as exc:
            return self._failed(route, resource, caller, start, exc, fallback)
        finally:
            _budget.reset(token)
        elapsed = self.clock() - start
        if elapsed <= route.timeout_s:
            route.breaker.record(True, elapsed)
            stats = self.stats
            for r in self.recorders:
                if r is stats:
                    next(route.passes)  # what stats.outcome does, without the key lookup
                else:
                    r.outcome(resource, caller, "pass", elapsed)
            return result
        route.breaker.record(False, elapsed)
        self._record(resource, caller, "timeout", elapsed)
        if route.grade == "weak":
            return self._fallback(resource, caller, "timeout", fallback)
        return result

    def _failed(
        self,
        route: _Route,
        resource: str,
        caller: str,
        start: float,
        exc: Exception,
        fallback: Callable[[], T] | None,
    ) -> T:
        self.record(resource, caller, False, self.clock() - start)
        if route.grade == "weak":
            return self._fallback(resource, caller, "error", fallback)
        raise DependencyFailed(f"{resource} failed", resource=resource) from exc

    async def acall(
        self,
        resource: str,
        fn: Callable[[], Awaitable[T]],
        *,
        caller: str,
        labels: Mapping[str, str] = _EMPTY,
        fallback: Callable[[], T] | None = None,
    ) -> T:
        """Async :meth:`call`; the timeout is enforced with ``asyncio.wait_for``."""
        route, refusal = self.admit(resource, caller=caller, labels=labels)
        if refusal is not None:
            return self._fallback(resource, caller, refusal, fallback)
        start = self.clock()
        try:
            result = await asyncio.wait_for(fn(), timeout=route.timeout_s)
        except self.ignore:
            self.record(resource, caller, True, self.clock() - start)
            raise
        except TimeoutError as exc:
            self.record(resource, caller, False, self.clock() - start, route.timeout_s)
            if route.grade == "weak":
                return self._fallback(resource, caller, "timeout", fallback)
            raise CallTimeout(f"{resource} timed out", resource=resource, reason="timeout") from exc
        except Exception as exc:
            self.record(resource, caller, False, self.clock() - start)
            if route.grade == "weak":
                return self._fallback(resource, caller, "error", fallback)
            raise DependencyFailed(f"{resource} failed", resource=resource) from exc
        self.record(resource, caller, True, self.clock() - start, route.timeout_s)
        return result

    def _fallback(
        self, resource: str, caller: str, why: str, fallback: Callable[[], T] | None
    ) -> T:
        if fallback is None:
            raise DependencyFailed(
                f"{resource} unavailable and no fallback", resource=resource, reason=why
            )
        self._record(resource, caller, "degraded" if why == "degraded" else "fallback", 0.0)
        return fallback()

    def _record(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        for r in self.recorders:
            r.outcome(resource, caller, outcome, duration_s)
