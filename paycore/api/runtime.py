"""What one API app holds while it runs: its settings (:class:`ApiConfig`), the thread
pool the pay core's blocking calls run on, the rate limits, and the two dependencies
that pick the core serving a request (:meth:`ApiRuntime.caller` for merchants,
:meth:`ApiRuntime.pick_callback_core` for channel callbacks)."""

import asyncio
import contextvars
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request

from stability.guard import calling_as

from ..channels.gateway import ChannelFront
from ..core import PayCore
from ..errors import AuthenticationFailed, ShadowDisabled
from . import edge


def _shadow_schema(schema: dict[str, Any]) -> None:
    """An optional header is absent, never null: publish it as the string enum it is."""
    schema.pop("anyOf", None)
    schema.update(type="string", enum=["0", "1"])


#: only documents the header (with its enum); :func:`edge.is_shadow` parses it, so a
#: bad value is 400 invalid_shadow_header rather than a validation error
ShadowHeader = Annotated[
    str | None,
    Header(
        alias=edge.SHADOW_HEADER,
        json_schema_extra=_shadow_schema,
        description="1: shadow (pressure-test) traffic, served from the shadow tables; 0 or "
        "absent: real traffic. Any other value: 400 invalid_shadow_header.",
    ),
]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the authenticated merchant, and the core serving the request."""

    core: PayCore
    merchant_id: str


@dataclass
class ApiConfig:
    """Per-process API settings."""

    channel_secrets: Mapping[str, str] = field(default_factory=dict)
    rate_per_s: float = 2000.0
    burst: float = 4000.0
    callback_tolerance_s: float = 300.0
    #: threads of the app's own pool that run the pay core's blocking calls: the core
    #: holds the GIL for most of a request, so more threads only add GIL hand-offs
    #: (measured at 16 clients with anyio's pool: 40 threads 372 context switches and
    #: 15.7 ms of CPU per payment, 8 threads 244 and 12.7 ms, 4 threads 158 and 9.8 ms)
    threads: int = 8
    registry: Any = None  # prometheus_client CollectorRegistry served at /metrics
    #: the shadow pay core (built on first call) for requests marked with
    #: ``X-Paywatch-Shadow: 1``; None refuses them with 403 ``shadow_disabled``
    shadow: Callable[[], PayCore] | None = None
    #: the pay core's channel front: while the app runs it sends on the app's event loop
    #: (:meth:`ChannelFront.bind_loop`), not on threads competing for the GIL
    channel_front: ChannelFront | None = None


class ApiRuntime:
    """One app's pool, limits and core selection; built by ``create_app``, one per app."""

    def __init__(self, core: PayCore, cfg: ApiConfig) -> None:
        self.core = core
        self.cfg = cfg
        self.limiter = edge.MerchantRateLimit(cfg.rate_per_s, cfg.burst)
        self.shadow_limiter = edge.MerchantRateLimit(cfg.rate_per_s, cfg.burst)  # never real
        self._pool = self._new_pool()  # also serves a host that skips the lifespan

    def _new_pool(self) -> ThreadPoolExecutor:  # its threads start on first use, not here
        return ThreadPoolExecutor(self.cfg.threads, thread_name_prefix="paycore-api")

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        """Bind the channel front to the app's loop while it runs."""
        front = self.cfg.channel_front
        if front is not None:
            front.bind_loop(asyncio.get_running_loop())
        try:
            yield
        finally:  # stop this run's threads; an app started again gets a fresh pool
            if front is not None:
                await front.unbind_loop()
            stopping, self._pool = self._pool, self._new_pool()
            stopping.shutdown(wait=True)

    async def offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the app's pool. A plain executor hop costs a fraction of
        anyio's ``to_thread`` (capacity limiter, cancel scope, backend lookups per call)."""
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def offload_as(self, link: str, fn: Callable[..., Any], *args: Any) -> Any:
        """:meth:`offload` as the map's ``link``: the guarded calls ``fn`` makes (the
        database, the ledger, Redis, the channels) are that link's edges."""
        with calling_as(link):
            context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def _target(self, shadow: bool) -> PayCore:
        if not shadow:
            return self.core
        if self.cfg.shadow is None:
            raise ShadowDisabled("shadow traffic is disabled on this deployment")
        return self.cfg.shadow()

    # The dependencies are async: a plain ``def`` costs every request a thread-pool hop
    # each. Only what may touch the database (building the shadow core, a token not in
    # the cache) goes to the thread pool.
    async def _core_for(self, shadow: bool) -> PayCore:
        return await self.offload(self._target, True) if shadow else self.core

    async def pick_callback_core(self, request: Request, shadow: ShadowHeader = None) -> PayCore:
        """The real core, or the shadow core for a shadow result: a channel marks those
        with ``?shadow=1`` (``shadow`` only documents the header; the edge parses it)."""
        return await self._core_for(edge.is_shadow(request, allow_query=True))

    async def caller(
        self,
        request: Request,
        shadow: ShadowHeader = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Caller:
        """The merchant behind the bearer token, and the core (the shadow core for
        requests marked as shadow traffic) that serves it. One dependency: FastAPI
        solves each one on every request, and that was the API's largest framework cost."""
        c = await self._core_for(edge.is_shadow(request))
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthenticationFailed("missing bearer token")
        token = authorization[7:].strip()
        info = c.merchants.cached_authentication(token)
        if info is None:
            info = await self.offload(c.merchants.authenticate, token)
        (self.limiter if c is self.core else self.shadow_limiter).check(info.merchant_id)
        return Caller(c, info.merchant_id)
