"""The guard's attempts after admission: the retries of a failed sync call
(:func:`failed`) and the asynchronous call (:meth:`stability.guard.Guard.acall`: the same
admission, bulkhead, retries and caller attribution as ``Guard.call``, the timeout
enforced with ``asyncio.wait_for``). Retries follow the edge's ``retries``; a refusal
(degraded, blocked, open breaker, full bulkhead) is never retried."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .breaker import CircuitBreaker
from .bulkhead import Bulkhead
from .callers import _frame, need_caller
from .errors import CallTimeout, DependencyFailed, RateLimited

__all__ = ["Route", "acall", "failed", "retryable"]

T = TypeVar("T")
#: refusals a retry cannot cure (raised by a nested guard inside ``fn``)
_REFUSALS = frozenset({"degraded", "blocked", "breaker_open", "bulkhead_full"})


@dataclass(frozen=True, slots=True)
class Route:
    """How the guard calls one edge: grade, timeout, retries, breaker, bulkhead."""

    grade: str
    timeout_s: float
    retries: int
    breaker: CircuitBreaker
    passes: itertools.count[int]  #: the GuardStats counter of this resource's passes
    bulkhead: Bulkhead | None
    frame: tuple[str, float]  #: (resource, timeout_s): what ``fn`` runs under


class _Guard(Protocol):
    """What these functions use of :class:`~stability.guard.Guard`."""

    clock: Callable[[], float]
    ignore: tuple[type[BaseException], ...]
    fault_injector: Any

    def record(
        self, resource: str, caller: str, ok: bool, duration_s: float, timeout_s: float | None = ...
    ) -> None: ...
    def admit(
        self, resource: str, *, caller: str, labels: Mapping[str, str] = ...
    ) -> tuple[Route, str | None]: ...
    def _route(self, caller: str, resource: str) -> Route: ...
    def _fallback(
        self, resource: str, caller: str, why: str, fallback: Callable[[], T] | None
    ) -> T: ...
    def _full(
        self, route: Route, resource: str, caller: str, fallback: Callable[[], T] | None
    ) -> T: ...
    def _overran(
        self,
        route: Route,
        resource: str,
        caller: str,
        elapsed: float,
        result: T,
        fallback: Callable[[], T] | None,
    ) -> T: ...


def retryable(exc: BaseException | None) -> bool:
    """May a call that raised ``exc`` be tried again? Not after a refusal."""
    if exc is None or isinstance(exc, RateLimited):
        return False
    return not (isinstance(exc, DependencyFailed) and exc.reason in _REFUSALS)


def failed(
    guard: _Guard,
    route: Route,
    resource: str,
    caller: str,
    fn: Callable[[], T],
    start: float,
    exc: Exception,
    fallback: Callable[[], T] | None,
) -> T:
    """``fn`` raised: record it, try again as the edge allows, then fall back or fail."""
    guard.record(resource, caller, False, guard.clock() - start)
    for _ in range(route.retries):
        if not retryable(exc) or not route.breaker.allow():
            break
        token = _frame.set(route.frame)
        start = guard.clock()
        try:
            result = fn()
        except guard.ignore:
            guard.record(resource, caller, True, guard.clock() - start)
            raise
        except Exception as again:
            guard.record(resource, caller, False, guard.clock() - start)
            exc = again
            continue
        finally:
            _frame.reset(token)
        elapsed = guard.clock() - start
        if elapsed > route.timeout_s:
            return guard._overran(route, resource, caller, elapsed, result, fallback)
        guard.record(resource, caller, True, elapsed)
        return result
    if route.grade == "weak":
        return guard._fallback(resource, caller, "error", fallback)
    raise DependencyFailed(f"{resource} failed", resource=resource) from exc


async def acall(
    guard: _Guard,
    resource: str,
    fn: Callable[[], Awaitable[T]],
    caller: str | None,
    labels: Mapping[str, str],
    fallback: Callable[[], T] | None,
) -> T:
    """``guard.acall(...)``: :meth:`~stability.guard.Guard.call` for coroutines."""
    if caller is None:
        caller = need_caller(resource)
    route = guard._route(caller, resource)
    bulkhead = route.bulkhead
    if bulkhead is not None and not bulkhead.try_enter():
        return guard._full(route, resource, caller, fallback)
    try:
        route, refusal = guard.admit(resource, caller=caller, labels=labels)
        if refusal is not None:
            return guard._fallback(resource, caller, refusal, fallback)
        if guard.fault_injector is not None:
            fn = guard.fault_injector.wrap(resource, fn)
        return await _attempts(guard, route, resource, caller, fn, fallback)
    finally:
        if bulkhead is not None:
            bulkhead.leave()


async def _attempts(
    guard: _Guard,
    route: Route,
    resource: str,
    caller: str,
    fn: Callable[[], Awaitable[T]],
    fallback: Callable[[], T] | None,
) -> T:
    exc: Exception | None = None
    for attempt in range(1 + route.retries):
        if attempt and not (retryable(exc) and route.breaker.allow()):
            break
        token = _frame.set(route.frame)
        start = guard.clock()
        try:
            result = await asyncio.wait_for(fn(), timeout=route.timeout_s)
        except guard.ignore:
            guard.record(resource, caller, True, guard.clock() - start)
            raise
        except Exception as failed:
            guard.record(resource, caller, False, guard.clock() - start, route.timeout_s)
            exc = failed
            continue
        finally:
            _frame.reset(token)
        guard.record(resource, caller, True, guard.clock() - start, route.timeout_s)
        return result
    timed_out = isinstance(exc, TimeoutError)
    if route.grade == "weak":
        return guard._fallback(resource, caller, "timeout" if timed_out else "error", fallback)
    if timed_out:
        raise CallTimeout(f"{resource} timed out", resource=resource, reason="timeout") from exc
    raise DependencyFailed(f"{resource} failed", resource=resource) from exc
