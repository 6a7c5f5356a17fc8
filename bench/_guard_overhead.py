"""Guard bench, part 1: the in-process cost of ``Guard.call`` against a bare call and
against pybreaker + ``limits`` doing the same job, plus a breakdown of where the guard's
time goes (component timings and a cProfile listing).
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import statistics
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import pybreaker
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from stability.callers import _frame
from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.guard import Guard
from stability.limits import Decision, LimitOutcome, LimitRule, check_acquire_args

CALLER, RESOURCE = "link.pay", "coupon"
Runner = Callable[[int], None]  # performs n calls


class FastDecision(NamedTuple):
    allowed: bool
    remaining: float
    retry_after: float


def _locked(lock: threading.Lock) -> None:
    with lock:
        pass


def _clamp(burst: float, tokens: float, dt: float, rate: float) -> float:
    t = tokens + (dt if dt > 0.0 else 0.0) * rate
    return t if t < burst else burst


def work() -> int:
    """The trivial protected function."""
    return 1


def fallback() -> int:
    return 0


def make_guard() -> Guard:
    """A weak dependency (``link.pay -> coupon``) with one in-memory limit rule that never
    refuses, and a closed breaker without a shared store."""
    dmap = DependencyMap(
        [ResourceSpec(CALLER, "link", core_link=True), ResourceSpec(RESOURCE, "service")],
        [EdgeSpec(CALLER, RESOURCE, "weak", 300, fallback="pay without coupon")],
    )
    rule = LimitRule(f"{RESOURCE}.total", RESOURCE, rate=1e9, burst=1e9)
    return Guard(dmap, base_rules=[rule])


def bare_runner() -> Runner:
    fn = work

    def run(n: int) -> None:
        for _ in range(n):
            fn()

    return run


def guard_runner(guard: Guard) -> Runner:
    call, fn, fb = guard.call, work, fallback

    def run(n: int) -> None:
        for _ in range(n):
            call(RESOURCE, fn, caller=CALLER, fallback=fb)

    return run


def libs_runner() -> Runner:
    """pybreaker around the call, ``limits`` fixed window in memory in front of it."""
    limiter = FixedWindowRateLimiter(MemoryStorage())
    item = RateLimitItemPerSecond(10**9)
    breaker = pybreaker.CircuitBreaker(fail_max=10, reset_timeout=5, name=RESOURCE)
    hit, bcall, fn, fb = limiter.hit, breaker.call, work, fallback

    def one() -> int:
        if not hit(item, RESOURCE):
            return fb()
        try:
            return bcall(fn)
        except Exception:  # noqa: BLE001 - open breaker or failed call: degrade
            return fb()

    def run(n: int) -> None:
        for _ in range(n):
            one()

    return run


def time_batches(
    runners: dict[str, Runner], batches: int, calls: int, warmup: int = 10
) -> dict[str, list[float]]:
    """Per-call µs of every batch; the runners take turns (rotating order) so host noise
    hits all of them alike."""
    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name](calls)
    out: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter_ns
    for b in range(batches):
        for k in range(len(names)):
            name = names[(b + k) % len(names)]
            run = runners[name]
            t0 = clock()
            run(calls)
            out[name].append((clock() - t0) / 1000.0 / calls)
    return out


def overhead(batches: int, calls: int) -> dict[str, object]:
    guard = make_guard()
    runners = {"bare": bare_runner(), "guard": guard_runner(guard), "libs": libs_runner()}
    per_call = time_batches(runners, batches, calls)
    p50 = {k: statistics.median(v) for k, v in per_call.items()}
    total = batches * calls + 10 * calls
    passed = guard.stats.count(RESOURCE, "pass")
    if passed != total or guard.breaker(RESOURCE).state != "closed":
        raise RuntimeError(f"guard did not pass every call ({passed}/{total})")
    return {
        "bare_us": round(p50["bare"], 3),
        "guard_us": round(p50["guard"], 3),
        "libs_baseline_us": round(p50["libs"], 3),
        "guard_added_us": round(p50["guard"] - p50["bare"], 3),
        "libs_added_us": round(p50["libs"] - p50["bare"], 3),
        "guard_p90_us": round(sorted(per_call["guard"])[int(0.9 * batches)], 3),
        "overhead_batches": batches,
        "overhead_calls_per_batch": calls,
        "gc_enabled": gc.isenabled(),
    }


def components(batches: int = 60, calls: int = 2000) -> dict[str, float]:
    """p50 µs of each step ``Guard.call`` takes, timed alone on a warm guard (bare loop
    subtracted). The steps add up to about the measured ``guard_added_us``."""
    guard = make_guard()
    rule = guard.base_rules[0]
    store, breaker, clock = guard.limiter.store, guard.breaker(RESOURCE), guard.clock
    empty: dict[str, str] = {}
    key, lock = rule.bucket_key(empty), threading.Lock()
    guard.call(RESOURCE, work, caller=CALLER, fallback=fallback)

    def loop(step: Callable[[], object]) -> Runner:
        def run(n: int) -> None:
            for _ in range(n):
                step()

        return run

    steps: dict[str, Callable[[], object]] = {
        "loop": lambda: None,
        "route (dict lookup)": lambda: guard._route(CALLER, RESOURCE),
        "degraded check": lambda: RESOURCE in guard.snapshot.degraded,
        "limiter.check total": lambda: guard.limiter.check(RESOURCE, empty),
        "  rule.bucket_key": lambda: rule.bucket_key(empty),
        "  store.acquire (MemoryLimitStore)": lambda: store.acquire(key, rule.rate, rule.burst),
        "breaker.allow": breaker.allow,
        "admit total": lambda: guard.admit(RESOURCE, caller=CALLER),
        "caller+budget ContextVar set+reset": lambda: _frame.reset(_frame.set((RESOURCE, 0.3))),
        "clock() x2": lambda: (clock(), clock()),
        "breaker.record": lambda: breaker.record(True, 1e-6),
        "stats outcome (GuardStats lock+Counter)": lambda: guard._record(
            RESOURCE, CALLER, "pass", 0.0
        ),
        "record total": lambda: guard.record(RESOURCE, CALLER, True, 1e-6, 0.3),
        "call total": lambda: guard.call(RESOURCE, work, caller=CALLER, fallback=fallback),
        # single lines of MemoryLimitStore.acquire / Limiter.check, and cheaper stand-ins
        "  line: Decision(...) (frozen dataclass)": lambda: Decision(True, 1.0, 0.0),
        "  alt: NamedTuple Decision": lambda: FastDecision(True, 1.0, 0.0),
        "  line: LimitOutcome()": LimitOutcome,
        "  line: check_acquire_args": lambda: check_acquire_args(1e9, 1e9, 1.0),
        "  line: with threading.Lock()": lambda: _locked(lock),
        "  line: min(burst, t + max(0, dt) * rate)": lambda: min(1e9, 1.0 + max(0.0, 1e-6) * 1e9),
        "  alt: conditional expressions": lambda: _clamp(1e9, 1.0, 1e-6, 1e9),
    }
    per_call = time_batches({k: loop(f) for k, f in steps.items()}, batches, calls, warmup=3)
    p50 = {k: statistics.median(v) for k, v in per_call.items()}
    base = p50.pop("loop")
    return {k: round(v - base, 3) for k, v in p50.items()}


def profile(calls: int = 50_000, top: int = 14) -> list[tuple[str, int, float, float]]:
    """cProfile of ``calls`` guard calls: (function, calls per guard call, own µs, cumulative
    µs per guard call), by own time. cProfile inflates small functions, so read the
    shares, not the absolute numbers."""
    run = guard_runner(make_guard())
    run(1000)
    prof = cProfile.Profile()
    prof.runcall(run, calls)
    st = pstats.Stats(prof)
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        where = f"{file.rsplit('/', 2)[-2:][-1]}:{line}({func})" if "/" in file else func
        rows.append(
            (where, round(nc / calls, 2), round(tt / calls * 1e6, 3), round(ct / calls * 1e6, 3))
        )
    rows.sort(key=lambda r: -r[2])
    return rows[:top]
