"""The channel gateway: route requests to pay orgs, and send them off the request path.

:class:`ChannelGateway` holds one :class:`HttpChannelClient` per pay org.
:class:`ChannelFront` is the pay core's :class:`~paycore.channels.port.ChannelPort`:
``submit`` returns at once and a thread pool sends the request, so the API answers
*processing* without waiting for the channel. The outcome comes back by callback
(or an active query); a send that fails is logged and counted, and the order stays
*processing* for the active query to settle.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from datetime import date

import aiohttp

from ..errors import PayCoreError
from .callbacks import parse_callback
from .client import ChannelAck, ChannelStatus, HttpChannelClient, StatementLine
from .errors import ChannelRejected, ChannelUnavailable, InvalidSignature, UnknownChannel
from .port import ChannelRequest, ChannelResult

__all__ = [
    "ChannelAck",
    "ChannelFront",
    "ChannelGateway",
    "ChannelRejected",
    "ChannelStatus",
    "ChannelUnavailable",
    "HttpChannelClient",
    "InvalidSignature",
    "StatementLine",
    "UnknownChannel",
    "build_gateway",
    "parse_callback",
]

log = logging.getLogger(__name__)


class ChannelGateway:
    """Routes channel calls to the client of the request's pay org."""

    def __init__(self, clients: Mapping[str, HttpChannelClient]) -> None:
        self._clients = dict(clients)

    @property
    def orgs(self) -> list[str]:
        """The pay orgs this gateway can reach."""
        return sorted(self._clients)

    def client(self, org: str) -> HttpChannelClient:
        """The client for ``org``; :class:`UnknownChannel` if none is configured."""
        try:
            return self._clients[org]
        except KeyError:
            raise UnknownChannel(
                f"no channel is configured for pay org {org!r}", pay_org_no=org
            ) from None

    def send(self, request: ChannelRequest, notify_url: str) -> ChannelAck:
        """Send ``request`` (pay, refund or withdraw) to its pay org, synchronously."""
        return self.client(request.pay_org_no).send(request, notify_url)

    def query(self, org: str, channel_txn_no: str) -> ChannelResult | None:
        """The settled result of a transaction at ``org``, or None while pending."""
        return self.client(org).query(channel_txn_no)

    def query_status(self, org: str, channel_txn_no: str) -> ChannelStatus:
        """The raw status of a transaction at ``org`` (including processing/unknown)."""
        return self.client(org).query_status(channel_txn_no)

    def statement(self, org: str, day: date) -> list[StatementLine]:
        """``org``'s statement for UTC ``day``."""
        return self.client(org).statement(day)

    def parse_callback(self, org: str, headers: Mapping[str, str], body: bytes) -> ChannelResult:
        """Verify and read a result callback from ``org``'s channel.

        Raises :class:`UnknownChannel`, :class:`InvalidSignature` (401) or
        :class:`~paycore.errors.InvalidRequest` (422).
        """
        return self.client(org).parse_callback(headers, body)

    def close(self) -> None:
        """Close every client's HTTP connections."""
        for client in self._clients.values():
            client.close()


class ChannelFront:
    """The pay core's channel port: hands requests off and returns at once.

    Requests are sent from a thread pool, or, once :meth:`bind_loop` has been called
    (the API does, with its event loop), as tasks on that loop with aiohttp. In the API
    the loop is idle between requests, while the pool's threads competed with the pay
    core's for the GIL: over six interleaved pairs of ``bench/pay_e2e.py`` runs the loop
    won five, at 106-132 against 86-109 payments/s and 7.2-8.7 against 8.5-10.6 ms of
    API CPU per payment.

    ``notify_url_for(org)`` gives the callback URL the channel should answer to, e.g.
    ``http://127.0.0.1:8000/v1/channels/{org}/callback``. Counters (``submitted``,
    ``acked``, ``failures``) are updated as sends finish; ``on_ack`` / ``on_failure`` /
    ``on_result`` are optional hooks called where the send ran (a pool thread or the
    loop), so they must be quick and must not block.
    """

    def __init__(
        self,
        gateway: ChannelGateway,
        notify_url_for: Callable[[str], str],
        *,
        max_workers: int = 8,
        on_ack: Callable[[ChannelAck], None] | None = None,
        on_failure: Callable[[ChannelRequest, Exception], None] | None = None,
        on_result: Callable[[ChannelRequest, bool, float], None] | None = None,
    ) -> None:
        self.gateway = gateway
        self.notify_url_for = notify_url_for
        self.on_ack = on_ack
        self.on_failure = on_failure
        self.on_result = on_result  # (request, channel healthy?, seconds): feeds the guard
        self.submitted = 0
        self.acked = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._pending: set[Future[None]] = set()
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="channel-front")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None  # made on the loop, on first use

    @property
    def bound_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop sends run on, or None when they run on the thread pool."""
        return self._loop

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send as tasks on ``loop`` from now on (until :meth:`unbind_loop`)."""
        with self._lock:
            self._loop = loop

    async def unbind_loop(self, timeout: float = 5.0) -> None:
        """Back to the thread pool. Run on the bound loop before it stops: waits up to
        ``timeout`` for the sends in flight on it, then closes its HTTP connections."""
        with self._lock:
            loop, self._loop = self._loop, None
            pending = set(self._pending) if loop is not None else set()
        if pending:
            await asyncio.wait([asyncio.wrap_future(f) for f in pending], timeout=timeout)
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def submit(self, request: ChannelRequest) -> None:
        """Queue ``request`` for sending and return immediately.

        Raises :class:`UnknownChannel` at once for a pay org without a channel, and
        :class:`ChannelUnavailable` after :meth:`close`.
        """
        try:
            client = self.gateway.client(request.pay_org_no)
        except UnknownChannel as exc:
            self._failed(request, exc)
            raise
        with self._lock:
            if self._closed:
                raise ChannelUnavailable("the channel front is closed")
            if self._loop is not None:
                future = asyncio.run_coroutine_threadsafe(
                    self._send_async(client, request), self._loop
                )
            else:
                future = self._pool.submit(self._send, client, request)
            self.submitted += 1
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _send(self, client: HttpChannelClient, request: ChannelRequest) -> None:
        start = time.perf_counter()
        try:
            ack = client.send(request, self.notify_url_for(request.pay_org_no))
        except Exception as exc:  # noqa: BLE001 - logged and counted; active query settles it
            self._finish(request, start, exc)
            return
        self._finish(request, start, ack)

    async def _send_async(self, client: HttpChannelClient, request: ChannelRequest) -> None:
        start = time.perf_counter()
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            notify_url = self.notify_url_for(request.pay_org_no)
            ack = await client.send_async(self._session, request, notify_url)
        except Exception as exc:  # noqa: BLE001 - logged and counted; active query settles it
            self._finish(request, start, exc)
            return
        self._finish(request, start, ack)

    def _finish(
        self, request: ChannelRequest, start: float, outcome: ChannelAck | Exception
    ) -> None:
        if isinstance(outcome, Exception):
            if self.on_result is not None:  # a 4xx is an answer: the channel itself is up
                healthy = isinstance(outcome, ChannelRejected)
                self._hook(self.on_result, request, healthy, time.perf_counter() - start)
            self._failed(request, outcome)
            return
        ack = outcome
        if self.on_result is not None:
            self._hook(self.on_result, request, True, time.perf_counter() - start)
        with self._lock:
            self.acked += 1
        if self.on_ack is not None:
            self._hook(self.on_ack, ack)

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
    def _hook(hook: Callable[..., None], *args: object) -> None:
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
        """Stop taking requests, wait for those in flight, and shut the pool down."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True)


def build_gateway(
    base_url: str, secrets: Mapping[str, str], *, timeout: float = 3.0
) -> ChannelGateway:
    """A gateway with one :class:`HttpChannelClient` per pay org in ``secrets``."""
    return ChannelGateway(
        {
            org: HttpChannelClient(base_url, org, secret, timeout=timeout)
            for org, secret in secrets.items()
        }
    )
