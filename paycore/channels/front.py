"""The channel front: send the pay core's channel requests off the request path, one
bulkhead per pay org.

:class:`ChannelFront` is the pay core's :class:`~paycore.channels.port.ChannelPort`:
``submit`` returns at once and the request is sent from a thread pool, or as a task on
the API's event loop. The outcome comes back by callback (or an active query).

Bulkheads: each pay org has its own thread pool (``max_workers`` threads), its own aiohttp
session (a connector of ``max_in_flight`` connections) and a cap of ``max_in_flight``
requests queued or in flight. A slow org fills its own slots, never another's. A request
beyond its org's cap is not sent: it is refused (``bulkhead_full``) and counted, and it
is settled exactly like a send that failed: the order stays *processing*, the active
query finds the channel does not know the transaction and hands it to compensation,
which sends it again (channels are idempotent on ``channel_txn_no``).

The guard: a send was admitted once, in the link's preflight, before any money moved
(``link.pay`` for pays, withdraws and recharges, ``link.refund`` for refunds: switch,
limit and breaker of ``channel.<org>``); admitting it again here would spend a second
limit token per payment. Here its outcome is recorded against that edge
(:meth:`stability.guard.Guard.record`) and its HTTP timeout is the edge's
(:meth:`~stability.guard.Guard.timeout_s`); a bulkhead refusal is recorded as
``bulkhead_full``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Protocol

import aiohttp

from ..errors import PayCoreError
from .client import ChannelAck, HttpChannelClient
from .errors import ChannelRefused, ChannelRejected, ChannelUnavailable, UnknownChannel
from .port import ChannelRequest

log = logging.getLogger(__name__)

#: requests one pay org may have queued or in flight before the front refuses more
DEFAULT_MAX_IN_FLIGHT = 32


class Clients(Protocol):
    """What the front needs of :class:`~paycore.channels.gateway.ChannelGateway`."""

    def client(self, org: str) -> HttpChannelClient: ...

    def close(self) -> None: ...


def link_of(request: ChannelRequest) -> str:
    """The core link a send belongs to: ``link.refund`` for refunds, else ``link.pay``."""
    return "link.refund" if request.kind == "refund" else "link.pay"


class ChannelFront:
    """The pay core's channel port: hands requests off and returns at once.

    Requests are sent from the org's thread pool, or, once :meth:`bind_loop` has been
    called (the API does, with its event loop), as tasks on that loop with aiohttp. In the
    API the loop is idle between requests, while the pool's threads competed with the pay
    core's for the GIL: over six interleaved pairs of ``bench/pay_e2e.py`` runs the loop
    won five, at 106-132 against 86-109 payments/s and 7.2-8.7 against 8.5-10.6 ms of
    API CPU per payment.

    ``notify_url_for(org)`` gives the callback URL the channel should answer to. Counters
    (``submitted``, ``acked``, ``failures``, ``refused``) are updated as sends finish;
    hooks run where the send ran (a pool thread or the loop), so they must be quick:
    ``on_ack(ack)``, ``on_failure(request, exc)`` (also for a refused send, with
    :class:`ChannelRefused`), ``on_result(request, channel healthy?, seconds)``,
    ``on_refused(request, reason)`` (``cap`` or ``closed``) and
    ``on_in_flight(org, n)`` whenever an org's count changes.
    """

    def __init__(
        self,
        gateway: Clients,
        notify_url_for: Callable[[str], str],
        *,
        max_workers: int = 8,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        guard: Any = None,
        on_ack: Callable[[ChannelAck], None] | None = None,
        on_failure: Callable[[ChannelRequest, Exception], None] | None = None,
        on_result: Callable[[ChannelRequest, bool, float], None] | None = None,
        on_refused: Callable[[ChannelRequest, str], None] | None = None,
        on_in_flight: Callable[[str, int], None] | None = None,
    ) -> None:
        if max_workers < 1 or max_in_flight < 1:
            raise ValueError("max_workers and max_in_flight must be at least 1")
        self.gateway = gateway
        self.notify_url_for = notify_url_for
        self.max_workers = max_workers
        self.max_in_flight = max_in_flight
        self.guard = guard  # stability.Guard: records each send against its edge
        self.on_ack, self.on_failure, self.on_result = on_ack, on_failure, on_result
        self.on_refused, self.on_in_flight = on_refused, on_in_flight
        self.submitted = self.acked = self.failures = self.refused = 0
        self._lock = threading.Lock()
        self._pending: set[Future[None]] = set()
        self._in_flight: dict[str, int] = {}
        self._closed = False
        self._pools: dict[str, ThreadPoolExecutor] = {}  # per org, made on first use
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sessions: dict[str, aiohttp.ClientSession] = {}  # per org, made on the loop

    @property
    def bound_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop sends run on, or None when they run on the thread pools."""
        return self._loop

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send as tasks on ``loop`` from now on (until :meth:`unbind_loop`)."""
        with self._lock:
            self._loop = loop

    async def unbind_loop(self, timeout: float = 5.0) -> None:
        """Back to the thread pools. Run on the bound loop before it stops: waits up to
        ``timeout`` for the sends in flight on it, then closes its HTTP connections."""
        with self._lock:
            loop, self._loop = self._loop, None
            pending = set(self._pending) if loop is not None else set()
        if pending:
            await asyncio.wait([asyncio.wrap_future(f) for f in pending], timeout=timeout)
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()

    def in_flight(self, org: str | None = None) -> int:
        """Requests queued or in flight for ``org`` (all orgs when None)."""
        with self._lock:
            if org is None:
                return sum(self._in_flight.values())
            return self._in_flight.get(org, 0)

    def submit(self, request: ChannelRequest) -> None:
        """Queue ``request`` for sending and return immediately.

        Raises :class:`UnknownChannel` at once for a pay org without a channel, and
        :class:`ChannelUnavailable` after :meth:`close`. A request beyond its org's cap is
        refused without raising (see the module's documentation).
        """
        org = request.pay_org_no
        try:
            client = self.gateway.client(org)
        except UnknownChannel as exc:
            self._failed(request, exc)
            raise
        with self._lock:
            closed = self._closed
            full = not closed and self._in_flight.get(org, 0) >= self.max_in_flight
            if full:
                self.refused += 1
            elif not closed:
                n = self._in_flight[org] = self._in_flight.get(org, 0) + 1
                future = self._schedule(client, request)
                self.submitted += 1
                self._pending.add(future)
        if closed:
            self._hook(self.on_refused, request, "closed")
            raise ChannelUnavailable("the channel front is closed")
        if full:
            self._refuse(request)
            return
        self._hook(self.on_in_flight, org, n)
        future.add_done_callback(lambda f: self._done(f, org))

    def _schedule(self, client: HttpChannelClient, request: ChannelRequest) -> Future[None]:
        """Hand the send to the loop or to its org's pool (called under the lock)."""
        if self._loop is not None:
            return asyncio.run_coroutine_threadsafe(self._send_async(client, request), self._loop)
        org = request.pay_org_no
        pool = self._pools.get(org)
        if pool is None:
            pool = self._pools[org] = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix=f"channel-front-{org}"
            )
        # the caller's context (request id, trace) goes with the send to the pool thread
        return pool.submit(contextvars.copy_context().run, self._send, client, request)

    def _done(self, future: Future[None], org: str) -> None:
        with self._lock:
            self._pending.discard(future)
            n = self._in_flight[org] = self._in_flight[org] - 1
        self._hook(self.on_in_flight, org, n)

    def _refuse(self, request: ChannelRequest) -> None:
        resource = f"channel.{request.pay_org_no}"
        if self.guard is not None:
            for recorder in self.guard.recorders:
                self._hook(recorder.outcome, resource, link_of(request), "bulkhead_full", 0.0)
        self._hook(self.on_refused, request, "cap")
        exc = ChannelRefused(
            f"{resource}: {self.max_in_flight} sends in flight; not sent (bulkhead_full)",
            resource=resource,
            reason="bulkhead_full",
        )
        self._failed(request, exc)

    def _timeout(self, request: ChannelRequest, client: HttpChannelClient) -> float:
        """The edge's timeout (``link.pay``/``link.refund`` -> ``channel.<org>``)."""
        timeout_s = getattr(self.guard, "timeout_s", None)
        if timeout_s is not None:
            try:
                return float(timeout_s(link_of(request), f"channel.{request.pay_org_no}"))
            except Exception:  # noqa: BLE001 - an org the map lacks: the client's default
                log.warning("no edge %s -> channel.%s", link_of(request), request.pay_org_no)
        return float(client.timeout)

    def _send(self, client: HttpChannelClient, request: ChannelRequest) -> None:
        timeout = self._timeout(request, client)
        start = time.perf_counter()
        try:
            notify_url = self.notify_url_for(request.pay_org_no)
            ack = client.send(request, notify_url, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - logged and counted; active query settles it
            self._finish(request, start, exc, timeout)
            return
        self._finish(request, start, ack, timeout)

    async def _send_async(self, client: HttpChannelClient, request: ChannelRequest) -> None:
        timeout = self._timeout(request, client)
        start = time.perf_counter()
        try:
            session = self._session(request.pay_org_no)
            notify_url = self.notify_url_for(request.pay_org_no)
            ack = await client.send_async(session, request, notify_url, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - logged and counted; active query settles it
            self._finish(request, start, exc, timeout)
            return
        self._finish(request, start, ack, timeout)

    def _session(self, org: str) -> aiohttp.ClientSession:
        """The org's session (on the loop): its own connections, at most its cap."""
        session = self._sessions.get(org)
        if session is None:
            # idle connections are dropped before a server's own idle close (uvicorn's is
            # 5 s, aiohttp keeps 15 s): a send racing that close fails after sending
            connector = aiohttp.TCPConnector(limit=self.max_in_flight, keepalive_timeout=4.0)
            session = self._sessions[org] = aiohttp.ClientSession(connector=connector)
        return session

    def _finish(
        self,
        request: ChannelRequest,
        start: float,
        outcome: ChannelAck | Exception,
        timeout: float | None = None,
    ) -> None:
        seconds = time.perf_counter() - start
        # a 4xx is an answer: the channel itself is up
        healthy = not isinstance(outcome, Exception) or isinstance(outcome, ChannelRejected)
        if self.guard is not None:
            self._hook(self._record, request, healthy, seconds, timeout)
        if self.on_result is not None:
            self._hook(self.on_result, request, healthy, seconds)
        if isinstance(outcome, Exception):
            self._failed(request, outcome)
            return
        with self._lock:
            self.acked += 1
        if self.on_ack is not None:
            self._hook(self.on_ack, outcome)

    def _record(
        self, request: ChannelRequest, healthy: bool, seconds: float, timeout: float | None
    ) -> None:
        resource = f"channel.{request.pay_org_no}"
        self.guard.record(resource, link_of(request), healthy, seconds, timeout_s=timeout)

    def _failed(self, request: ChannelRequest, exc: Exception) -> None:
        with self._lock:
            self.failures += 1
        if isinstance(exc, PayCoreError):
            log.warning(
                "channel %s failed: org=%s txn=%s code=%s: %s",
                request.kind,
                request.pay_org_no,
                request.channel_txn_no,
                exc.code,
                exc.message,
            )
        else:
            log.error(
                "channel %s failed unexpectedly: org=%s txn=%s: %s",
                request.kind,
                request.pay_org_no,
                request.channel_txn_no,
                type(exc).__name__,
                exc_info=exc,
            )
        if self.on_failure is not None:
            self._hook(self.on_failure, request, exc)

    @staticmethod
    def _hook(hook: Callable[..., None] | None, *args: object) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:  # noqa: BLE001 - a broken hook must not break sending
            log.exception("channel front hook failed")

    @property
    def pending(self) -> int:
        """Requests queued or in flight."""
        with self._lock:
            return len(self._pending)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted request has been sent (or failed); False on timeout."""
        with self._lock:
            pending = set(self._pending)
        _, not_done = wait_futures(pending, timeout=timeout)
        return not not_done

    def close(self) -> None:
        """Stop taking requests, wait for those in flight, and shut the pools down."""
        with self._lock:
            self._closed = True
            pools = list(self._pools.values())
        for pool in pools:
            pool.shutdown(wait=True)
