"""The guard: one entry point around every dependency call.

    switch → rate limit → breaker → call with timeout → record outcome

Weak dependencies degrade to their fallback; strong ones fail fast with
:class:`~stability.errors.DependencyFailed` naming the resource. Sync calls cannot
be interrupted in Python, so the guard hands the callee its budget
(:func:`call_budget`, for the client's own timeout) and counts an overrun as a
timeout; :meth:`Guard.acall` enforces the timeout itself with ``asyncio.wait_for``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from .breaker import BreakerConfig, CircuitBreaker
from .breaker_store import BreakerStateStore
from .bulkhead import Bulkhead, check_cap
from .callers import _frame, call_budget, calling_as, current_caller, need_caller
from .errors import (
    BreakerOpen,
    BulkheadFull,
    DependencyFailed,
    LimitBackendUnavailable,
    RateLimited,
    UnknownResource,
)
from .guard_attempts import Route as _Route
from .guard_attempts import acall, failed
from .guard_stats import GuardStats, Recorder
from .limits import Limiter, LimitRule, MemoryLimitStore
from .switches import SwitchSnapshot

__all__ = ["Guard", "GuardStats", "Recorder", "call_budget", "calling_as", "current_caller"]

T = TypeVar("T")
_EMPTY: Mapping[str, str] = {}


class Guard:
    """Wraps dependency calls; ``apply(snapshot)`` takes switch changes at run time,
    ``set_map(dmap)`` an edited map, ``set_bulkhead`` a new concurrency cap."""

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
        bulkheads: Mapping[str, int] | None = None,
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
        self.fault_injector: Any = None  # stability.faults.FaultInjector, drills only
        self._limited = {r.resource for r in self.base_rules}
        self._routes: dict[tuple[str, str], _Route] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._bulkheads = {r: Bulkhead(r, n) for r, n in (bulkheads or {}).items()}
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

    def injected(self, resource: str) -> bool:
        """True while a drill's fault injector fails ``resource``: call sites that admit
        and record around their own work (not through :meth:`call`) ask this, then take
        the path a failed call takes."""
        injector = self.fault_injector
        return injector is not None and resource in injector.faulted

    def set_map(self, dependency_map: Any) -> None:
        """Use an edited map from now on (grades, timeouts and retries of every edge);
        breakers, bulkheads and counters carry over."""
        with self._lock:
            self.map = dependency_map
            self._routes = {}

    def set_bulkhead(self, resource: str, cap: int | None) -> None:
        """Cap the calls in flight to ``resource`` at ``cap`` (None: no cap). Calls in
        flight keep their slots; a lower cap refuses new calls until they drain."""
        with self._lock:
            current = self._bulkheads.get(resource)
            if cap is None:
                self._bulkheads.pop(resource, None)
            elif current is not None:
                current.cap = check_cap(resource, cap)
                return
            else:
                self._bulkheads[resource] = Bulkhead(resource, cap)
            self._routes = {}

    def bulkhead(self, resource: str) -> Bulkhead | None:
        """The bulkhead of ``resource`` (for calls made outside :meth:`call`)."""
        return self._bulkheads.get(resource)

    def bulkheads(self) -> dict[str, tuple[int, int]]:
        """``{resource: (in_flight, cap)}`` of every bulkhead, for metrics."""
        return {r: (b.in_flight, b.cap) for r, b in list(self._bulkheads.items())}

    def in_flight(self, resource: str) -> int:
        """Calls to ``resource`` in flight now (counted only where a bulkhead caps it)."""
        b = self._bulkheads.get(resource)
        return 0 if b is None else b.in_flight

    def timeout_s(self, caller: str, resource: str) -> float:
        """The timeout of the edge ``caller -> resource`` in seconds (UnknownResource
        when the map has no such edge)."""
        return self._route(caller, resource).timeout_s

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
            dmap = self.map
            edge = dmap.edge(caller, resource)
            if edge is None:
                raise UnknownResource(f"no dependency {caller} -> {resource}", resource=resource)
            timeout_s = edge.timeout_ms / 1000.0
            route = _Route(
                edge.grade,
                timeout_s,
                edge.retries,
                self.breaker(resource),
                self.stats.counter(resource, "pass"),
                self._bulkheads.get(resource),
                (resource, timeout_s),
            )
            with self._lock:
                if self.map is dmap:  # not an edge of a map replaced meanwhile
                    self._routes[(caller, resource)] = route
        return route

    def availability(self, resource: str) -> str | None:
        """Why a call to ``resource`` would be refused now, without taking anything: no
        limit token, no half-open probe, no bulkhead slot. ``degraded`` (switched off),
        ``breaker_open`` (open or forced open), ``bulkhead_full``; None: it looks
        available (a rate limit is only known by trying). For routing previews and the
        cashier; a pay still goes through :meth:`admit`."""
        if resource in self.snapshot.degraded:
            return "degraded"
        breaker = self.breaker(resource)
        # sync: a breaker another replica opened counts here too, within its sync_s
        if not breaker.plainly_closed and breaker.sync() in ("open", "forced_open"):
            return "breaker_open"
        bulkhead = self._bulkheads.get(resource)
        if bulkhead is not None and bulkhead.in_flight >= bulkhead.cap:
            return "bulkhead_full"
        return None

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
            for rule_name in outcome.dry_run_blocked:
                self._record(resource, caller, "dry_run_blocked", 0.0)
                self._dry_run_blocked(rule_name)
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
        *,
        timed: bool = True,
    ) -> None:
        """Record a call made outside :meth:`call` (e.g. an asynchronous channel send);
        ``timed=False`` as in :meth:`call` (the duration is reported, never judged)."""
        timed_out = timed and timeout_s is not None and duration_s > timeout_s
        self.breaker(resource).record(ok and not timed_out, duration_s if timed else 0.0)
        outcome = "timeout" if timed_out else ("pass" if ok else "error")
        self._record(resource, caller, outcome, duration_s)

    def call(
        self,
        resource: str,
        fn: Callable[[], T],
        *,
        caller: str | None = None,
        labels: Mapping[str, str] = _EMPTY,
        fallback: Callable[[], T] | None = None,
        timed: bool = True,
    ) -> T:
        """Run ``fn`` under the guard as ``caller`` (default: :func:`current_caller`);
        weak dependencies return ``fallback()`` instead of failing, strong ones raise
        :class:`DependencyFailed`. A failed ``fn`` is tried again up to the edge's
        ``retries`` times; while it runs, :func:`current_caller` is ``resource``.

        ``timed=False``: the callee enforces the edge's timeout itself on each of its
        steps (the database's ``statement_timeout``), so the whole call's duration is
        neither a timeout nor a slow call for the breaker; only its failures count.

        The common case (known edge, not degraded, a plainly closed breaker, at most one
        fail-open limit rule) is admitted inline; everything else through :meth:`admit`.
        """
        if caller is None:
            caller = need_caller(resource)
        route = self._routes.get((caller, resource)) or self._route(caller, resource)
        bulkhead = route.bulkhead
        if bulkhead is not None and not bulkhead.try_enter():
            return self._full(route, resource, caller, fallback)
        try:
            rule = None
            if (
                not route.breaker.plainly_closed
                or resource in self.snapshot.degraded
                or (
                    resource in self._limited
                    and (rule := self.limiter.fast_rules.get(resource)) is None
                )
            ):
                route, refusal = self.admit(resource, caller=caller, labels=labels)
                if refusal is not None:
                    return self._fallback(resource, caller, refusal, fallback)
            elif rule is not None:  # inline: one fail-open rule, asked of the store directly
                key = rule.bucket_key(labels) if rule.scope else rule.name
                try:
                    allowed, _, retry_after = self.limiter.store.take_valid(
                        key, rule.rate, rule.burst
                    )
                except LimitBackendUnavailable:
                    allowed = True  # the rule fails open, as Limiter.check would decide
                if not allowed:
                    if route.grade == "strong":
                        self._record(resource, caller, "blocked", 0.0)
                        raise RateLimited("rate limit", resource=resource, retry_after=retry_after)
                    return self._fallback(resource, caller, "blocked", fallback)
            if self.fault_injector is not None:
                fn = self.fault_injector.wrap(resource, fn)
            token = _frame.set(route.frame)
            start = self.clock()
            failure = None
            try:
                result = fn()
            except self.ignore:
                self.record(resource, caller, True, self.clock() - start)
                raise
            except Exception as exc:
                failure = exc
            finally:
                _frame.reset(token)
            if failure is not None:
                return failed(self, route, resource, caller, fn, start, failure, fallback)
            elapsed = self.clock() - start
            if elapsed <= route.timeout_s or not timed:
                route.breaker.record(True, elapsed if timed else 0.0)
                stats = self.stats
                for r in self.recorders:
                    if r is stats:
                        next(route.passes)  # what stats.outcome does, without the key lookup
                    else:
                        r.outcome(resource, caller, "pass", elapsed)
                return result
            return self._overran(route, resource, caller, elapsed, result, fallback)
        finally:
            if bulkhead is not None:
                bulkhead.leave()

    def _overran(
        self,
        route: _Route,
        resource: str,
        caller: str,
        elapsed: float,
        result: T,
        fallback: Callable[[], T] | None,
    ) -> T:
        """A sync call that answered after its timeout: a timeout; a weak edge falls back."""
        route.breaker.record(False, elapsed)
        self._record(resource, caller, "timeout", elapsed)
        if route.grade == "weak":
            return self._fallback(resource, caller, "timeout", fallback)
        return result

    def _full(
        self, route: _Route, resource: str, caller: str, fallback: Callable[[], T] | None
    ) -> T:
        """The bulkhead refused: one ``bulkhead_full`` outcome, then fallback or raise."""
        self._record(resource, caller, "bulkhead_full", 0.0)
        if route.grade == "weak" and fallback is not None:
            return fallback()
        cap = route.bulkhead.cap if route.bulkhead else 0
        raise BulkheadFull(
            f"{resource} is unavailable (bulkhead full: {cap} calls in flight)", resource=resource
        )

    async def acall(
        self,
        resource: str,
        fn: Callable[[], Awaitable[T]],
        *,
        caller: str | None = None,
        labels: Mapping[str, str] = _EMPTY,
        fallback: Callable[[], T] | None = None,
    ) -> T:
        """Async :meth:`call`; the timeout is enforced with ``asyncio.wait_for``."""
        return await acall(self, resource, fn, caller, labels, fallback)

    def _fallback(
        self, resource: str, caller: str, why: str, fallback: Callable[[], T] | None
    ) -> T:
        if fallback is None:
            raise DependencyFailed(
                f"{resource} unavailable and no fallback", resource=resource, reason=why
            )
        self._record(resource, caller, "degraded" if why == "degraded" else "fallback", 0.0)
        return fallback()

    def _dry_run_blocked(self, rule: str) -> None:
        """Tell the recorders that count them which dry-run rule would have refused."""
        for r in self.recorders:
            per_rule = getattr(r, "limit_dry_run_blocked", None)
            if per_rule is not None:
                per_rule(rule)

    def _record(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        for r in self.recorders:
            r.outcome(resource, caller, outcome, duration_s)
