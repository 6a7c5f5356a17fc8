"""Shadow traffic wiring: the shadow pay core with its own lock, channel front and metrics.

The shadow core is built on the first shadow request (nothing exists until then):
shadow tables next to the real database (:mod:`paycore.db.shadow`), a lock namespace of
its own, a channel front to the sandbox at ``PAYWATCH_SHADOW_CHANNEL_URL`` (default
``PAYWATCH_SANDBOX_URL``) whose callbacks come back to ``...callback?shadow=1``, and
counts on ``paywatch_shadow_requests`` instead of the link metrics.
"""

from __future__ import annotations

from typing import Any

from paycore.locks import DistributedLock, MemoryLock, RedisLock
from paycore.shadow import LazyShadow, ShadowPayCore, build_shadow_core

from .settings import Settings

SHADOW_LOCK_NAMESPACE = "paywatch:shadow:lock:"


def shadow_lock(redis_url: str | None, client: Any = None) -> DistributedLock:
    """The shadow core's lock: Redis under its own namespace when configured, on the
    process's one client (``client``) when the platform has one."""
    if not redis_url:
        return MemoryLock()
    return RedisLock(client if client is not None else redis_url, namespace=SHADOW_LOCK_NAMESPACE)


def shadow_front(settings: Settings, secrets: dict[str, str], counter: Any) -> Any:
    """A channel front to the sandbox for shadow orders; callbacks carry ``?shadow=1``."""
    from paycore.channels.gateway import ChannelFront, build_gateway

    gateway = build_gateway(settings.shadow_channel_url or settings.sandbox_url, secrets)
    api = settings.api_url.rstrip("/")

    def observe(request: Any, healthy: bool, seconds: float) -> None:
        if counter is not None:
            counter.shadow("channel_call")

    front = ChannelFront(
        gateway, lambda org: f"{api}/v1/channels/{org}/callback?shadow=1", on_result=observe
    )
    return front


def build_shadow(platform: Any) -> LazyShadow | None:
    """The lazily built shadow core of ``platform`` (a ``runtime.bootstrap.Platform``),
    or None when ``PAYWATCH_SHADOW`` is off. Sends channel calls only when the
    platform itself has a channel front."""
    settings: Settings = platform.settings
    if not settings.shadow:
        return None

    def build() -> ShadowPayCore:
        obs = platform.observability
        counter = obs.metrics if obs is not None else None
        lock = shadow_lock(settings.redis_url, getattr(platform.stability, "redis", None))
        front = None
        try:
            if platform.front is not None:
                front = shadow_front(settings, platform.channel_secrets, counter)
            core = build_shadow_core(platform.paycore, counter=counter, lock=lock, channel=front)
        except BaseException:
            if front is not None:
                front.close()
                front.gateway.close()
            lock.close()
            raise
        if front is not None:
            core.on_close.extend([front.close, front.gateway.close])
        return core

    return LazyShadow(build)
