"""The composition root: build the running system from settings, and shut it down."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paycore import Database, IdGenerator, PayCore
from paycore.locks import make_lock

from .migrate import upgrade_database
from .settings import Settings
from .wiring import build_stability


@dataclass
class Platform:
    """The running system's parts; :meth:`close` releases them in reverse order."""

    settings: Settings
    db: Database
    paycore: PayCore
    channel_secrets: dict[str, str] = field(default_factory=dict, repr=False)
    front: Any = None
    stability: Any = None  # console.wiring.StabilityRuntime

    def start(self) -> Platform:
        """Start the background parts (switch watcher); idempotent."""
        if self.stability is not None and not self._started:
            self.stability.start()
            self._started = True
        return self

    _started: bool = False

    def api_app(self, **overrides: Any) -> Any:
        """The pay core HTTP API over this platform."""
        from paycore.api import ApiConfig, create_app

        return create_app(self.paycore, ApiConfig(channel_secrets=self.channel_secrets,
                                                  **overrides))  # fmt: skip

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
        self.paycore.close()


def build_platform(
    settings: Settings | None = None, *, migrate: bool = True, channels: bool = True
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
    core = PayCore(db, lock=make_lock(settings.redis_url), ids=IdGenerator(settings.node_id),
                   guard=guard)  # fmt: skip
    secrets = settings.resolved_channel_secrets()
    platform = Platform(settings=settings, db=db, paycore=core, channel_secrets=secrets,
                        stability=runtime)  # fmt: skip
    if channels:
        from paycore.channels.gateway import ChannelFront, build_gateway

        def observe(request: Any, healthy: bool, seconds: float) -> None:
            guard.record(f"channel.{request.pay_org_no}", "link.pay", healthy, seconds,
                         timeout_s=3.0)  # fmt: skip

        gateway = build_gateway(settings.sandbox_url, secrets)
        api = settings.api_url.rstrip("/")
        platform.front = ChannelFront(gateway, lambda org: f"{api}/v1/channels/{org}/callback",
                                      on_result=observe)  # fmt: skip
        core.channel = platform.front
    return platform
