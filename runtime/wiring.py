"""Assembling the stability layer for one process: map, limits, breakers, switches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from alerts.plan_proposals import propose_for_alerts
from alerts.plan_silence import silence_handlers
from backends import redis_client
from collectors.routing_metrics import RoutingMetrics
from paycore import Database
from paycore import errors as pe
from paycore.routing import Router, RoutingStore
from stability.breaker_stats import BreakerStatsPublisher, read_stats
from stability.breaker_store import make_breaker_store
from stability.depmap import DependencyMap
from stability.depmap_seed import seed_or_upgrade
from stability.depmap_store import DependencyMapStore
from stability.effective import redis_client_options
from stability.events import BreakerEventLog
from stability.guard import Guard
from stability.limits import Limiter, make_limit_store
from stability.plan_triggers import propose_for_breakers
from stability.plans import PlanService
from stability.policy import approval_policy, default_bulkheads, default_rules, target_checker
from stability.propagation import SwitchWatcher, redis_publisher
from stability.switches import SwitchService

from .admin_live import follow_map

#: errors that are the caller's fault, not the dependency's: never trip a breaker
BUSINESS_ERRORS: tuple[type[BaseException], ...] = (
    pe.InvalidRequest,
    pe.AuthenticationFailed,
    pe.ContextNotGranted,
    pe.MerchantDisabled,
    pe.RiskRejected,
    pe.NotFound,
    pe.Conflict,
)


@dataclass
class StabilityRuntime:
    map_store: DependencyMapStore
    dmap: DependencyMap
    guard: Guard
    switches: SwitchService
    watcher: SwitchWatcher
    breaker_events: BreakerEventLog
    redis: Any = None
    breaker_stats: BreakerStatsPublisher | None = None  # breaker windows for the console
    plans: PlanService | None = None  # switch plans (build_plans)

    def start(self) -> None:
        self.watcher.start()
        if self.breaker_stats is None:
            self.breaker_stats = BreakerStatsPublisher(
                self.switches.engine, self.guard.breakers
            ).start()

    def close(self) -> None:
        self.watcher.stop()
        if self.breaker_stats is not None:
            self.breaker_stats.stop()
        if self.redis is not None:
            self.redis.close()


def build_stability(
    engine: Engine, *, pay_orgs: tuple[str, ...], redis_url: str | None, poll_s: float = 0.25
) -> StabilityRuntime:
    """Seed the dependency map if empty and build the guard and switch machinery.

    With ``redis_url`` the process's one Redis client is built here (socket timeout and
    retries from the map's redis edge: :func:`stability.effective.redis_client_options`)
    and handed to the limit store, the breaker store and the switch pub/sub; the runtime
    owns it (``redis``) and the pay core's lock borrows it.
    """
    store = DependencyMapStore(engine)
    seed_or_upgrade(store, pay_orgs, redis_lock=bool(redis_url))
    dmap = store.load()
    rules = default_rules(pay_orgs)
    events = BreakerEventLog(engine)
    timeout, retries = redis_client_options(dmap)  # the map's redis edge
    client = redis_client(redis_url, timeout=timeout, retries=retries) if redis_url else None
    guard = Guard(
        dmap,
        limiter=Limiter(make_limit_store(redis_url, client=client)),
        base_rules=rules,
        breaker_store=make_breaker_store(redis_url, client=client) if redis_url else None,
        recorders=[events],
        ignore=BUSINESS_ERRORS,
        bulkheads=default_bulkheads(pay_orgs),
    )
    switches = SwitchService(
        engine,
        needs_approval=approval_policy(lambda: guard.map, lambda: guard.base_rules),
        on_commit=redis_publisher(client) if client is not None else None,
        targets=target_checker(lambda: guard.map, lambda: guard.base_rules),
    )
    # at each new config version: the edited map (if any), then the switches
    apply = follow_map(store, guard)
    watcher = SwitchWatcher(switches, apply, poll_s=poll_s, redis_client=client)
    runtime = StabilityRuntime(store, dmap, guard, switches, watcher, events, client)
    runtime.plans = build_plans(engine, runtime)
    return runtime


def build_plans(engine: Engine, runtime: StabilityRuntime) -> PlanService:
    """The switch plans over the runtime's switches and live map, silences through the
    alerts' store; the shipped plans for the map's pay orgs are stored when missing."""
    guard = runtime.guard
    plans = PlanService(
        engine,
        runtime.switches,
        dmap=lambda: guard.map,
        rules=lambda: guard.base_rules,
        handlers=silence_handlers(engine),
    )
    plans.seed_shipped()
    return plans


def plan_upkeep(engine: Engine, runtime: StabilityRuntime) -> Callable[[], int]:
    """The worker's plan job: end plan runs past their expiry (restoring what they
    replaced), and propose the plan of every weak dependency whose breaker is open and
    of every firing alert that names one. Returns how many runs it ended or proposed."""

    def upkeep() -> int:
        plans = runtime.plans
        if plans is None:
            return 0
        done = plans.expire_due()
        done += len(propose_for_breakers(plans, runtime.guard.map, read_stats(engine)))
        done += len(propose_for_alerts(plans, engine))
        return done

    return upkeep


def build_router(db: Database, registry: CollectorRegistry, *, refresh_s: float = 1.0) -> Router:
    """The pay core's router: the routing rules in ``db`` (re-read at most every
    ``refresh_s``, so a publish reaches every replica within it), counting decisions and
    fallbacks on ``registry``."""
    return Router(RoutingStore(db), recorder=RoutingMetrics(registry), refresh_s=refresh_s)
