"""The composition root: build the running system from settings, and shut it down."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from paycore import Database, IdGenerator, PayCore
from paycore.locks import make_lock
from paycore.risk import RiskEngine, make_risk_counters

from .migrate import upgrade_database
from .observability import build_observability, business_snapshot
from .settings import Settings
from .shadow import build_shadow
from .wiring import BUSINESS_ERRORS, build_router, build_stability


@dataclass
class Platform:
    """The running system's parts; :meth:`close` releases them in reverse order."""

    settings: Settings
    db: Database
    paycore: PayCore
    channel_secrets: dict[str, str] = field(default_factory=dict, repr=False)
    front: Any = None
    stability: Any = None  # runtime.wiring.StabilityRuntime
    observability: Any = None  # runtime.observability.Observability
    shadow: Any = None  # paycore.shadow.LazyShadow; None: shadow traffic refused
    role: str = "all"

    def start(self) -> Platform:
        """Start the background parts (switch watcher); idempotent."""
        if not self._started:
            if self.stability is not None:
                self.stability.start()
            if self.observability is not None:
                self.observability.start()
            self._started = True
        return self

    _started: bool = False

    def api_app(self, **overrides: Any) -> Any:
        """The pay core HTTP API over this platform."""
        from paycore.api import ApiConfig, create_app

        if self.observability is not None:
            overrides.setdefault("registry", self.observability.registry)
        overrides.setdefault("shadow", self.shadow)
        overrides.setdefault("threads", self.settings.api_threads)
        overrides.setdefault("channel_front", self.front)
        return create_app(
            self.paycore, ApiConfig(channel_secrets=self.channel_secrets, **overrides)
        )

    def record_trial_balance(self, ok: bool) -> None:
        """Hook for the trial-balance job (a metric when metrics are wired)."""
        self.trial_balance_ok = ok

    def extra_worker_jobs(self) -> list[Any]:
        """Jobs other layers add to the worker (alert evaluation, sampling)."""
        return list(self.worker_jobs)

    trial_balance_ok: bool | None = None
    worker_jobs: list[Any] = field(default_factory=list)

    def close(self) -> None:
        if self.front is not None:
            self.front.close()
        if self.stability is not None:
            self.stability.close()
        if self.observability is not None and self._started:
            self.observability.close()
        if self.shadow is not None:
            self.shadow.close()
        self.paycore.risk.close()
        if self.paycore.coupons is not None:
            self.paycore.coupons.close()
        self.paycore.close()


def build_risk_engine(settings: Settings, db: Database, redis: Any = None) -> RiskEngine:
    """The risk engine from settings: its counters in Redis (shared by every API replica,
    keys under ``settings.risk_namespace``) when ``PAYWATCH_REDIS_URL`` is set, else in
    this process; blocklist and review log in ``db``."""
    counters = make_risk_counters(
        settings.redis_url, namespace=settings.risk_namespace, client=redis
    )
    return RiskEngine(settings.risk_policy, counters=counters, db=db)


def build_coupon_client(settings: Settings) -> Any:
    """The coupon service's client (:class:`paycore.coupons.HttpCouponClient`), or None
    when ``PAYWATCH_COUPON_URL=off``. Nothing is connected until the first call."""
    from paycore.coupons import HttpCouponClient

    url = settings.resolved_coupon_url()
    return None if url is None else HttpCouponClient(url, settings.coupon_secret())


def build_platform(
    settings: Settings | None = None,
    *,
    migrate: bool = True,
    channels: bool = True,
    role: str = "all",
) -> Platform:
    """Create engines and clients from ``settings``, apply migrations, wire the services.

    With ``channels`` the pay core sends channel calls through the asynchronous channel
    front to the sandbox (or real) channel at ``settings.sandbox_url``.
    """
    settings = settings or Settings.from_env()
    db = Database(settings.database_url)
    if migrate:
        upgrade_database(db.engine)
    runtime = build_stability(db.engine, pay_orgs=settings.pay_orgs, redis_url=settings.redis_url)
    guard = runtime.guard
    coupons = build_coupon_client(settings) if channels else None
    core = PayCore(
        db,
        lock=make_lock(settings.redis_url, client=runtime.redis),  # the one Redis client
        ids=IdGenerator(settings.node_id),
        guard=guard,
        risk=build_risk_engine(settings, db, runtime.redis),
        coupons=coupons,
    )
    secrets = settings.resolved_channel_secrets()
    platform = Platform(
        settings=settings,
        db=db,
        paycore=core,
        channel_secrets=secrets,
        stability=runtime,
        role=role,
    )
    business = None
    if role in ("all", "worker"):
        business = partial(business_snapshot, core, lambda: platform.trial_balance_ok)
    obs = build_observability(
        db.engine, settings, role=role, business=business, rejected=BUSINESS_ERRORS
    )
    platform.observability = obs
    core.metrics = core.ledger.metrics = obs.metrics
    guard.recorders.append(obs.metrics)
    obs.metrics.edges.track_bulkheads(guard.bulkheads)
    core.router = build_router(db, obs.registry)  # a pay naming no org: the rules choose
    if channels:
        from paycore.channels.gateway import ChannelFront, build_gateway
        from paycore.pay_reroute import PayRerouter

        def observe(request: Any, healthy: bool, seconds: float) -> None:
            obs.metrics.observe(
                "channel_call",
                "ok" if healthy else "error",
                pay_org=request.pay_org_no,
                seconds=seconds,
            )

        def refused(request: Any, reason: str) -> None:
            why = "bulkhead_full" if reason == "cap" else "front_closed"
            obs.metrics.observe(
                "channel_call", "error", why, pay_org=request.pay_org_no, seconds=0.0
            )
            edges = getattr(obs.metrics, "edges", None)
            if edges is not None:
                edges.front_refusal(request.pay_org_no, reason)

        def in_flight(org: str, n: int) -> None:
            edges = getattr(obs.metrics, "edges", None)
            if edges is not None:
                edges.set_front_in_flight(org, n)

        gateway = build_gateway(settings.sandbox_url, secrets)
        api = settings.api_url.rstrip("/")
        # the guard records each send against its edge (link.pay / link.refund ->
        # channel.<org>) with the edge's timeout; one bulkhead per pay org
        platform.front = ChannelFront(
            gateway,
            lambda org: f"{api}/v1/channels/{org}/callback",
            guard=guard,
            on_failure=PayRerouter(lambda: core.deps).on_failure,  # routed pays: next org
            on_result=observe,
            on_refused=refused,
            on_in_flight=in_flight,
        )
        core.channel = platform.front
    platform.shadow = build_shadow(platform)  # built on the first shadow request
    return platform
