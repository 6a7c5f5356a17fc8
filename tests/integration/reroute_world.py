"""What the retry-on-next-org tests share (tests/integration/test_pay_reroute.py): the
sandbox channel with pay orgs A and B, a live callback receiver that settles each
callback on the current test's pay core, a channel front whose failures go to a
:class:`~paycore.pay_reroute.PayRerouter`, and a stand-in for the router's pay service."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import Clock, LiveServer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from paycore import PayRequest, PayTool
from paycore.channels import ChannelRequest
from paycore.channels.client import HttpChannelClient
from paycore.channels.gateway import ChannelFront, ChannelGateway
from paycore.db.schema import PayException, PayItem, PayItemReroute, PayOrder, Trade
from paycore.errors import PayCoreError
from paycore.jobs import Handlers, TaskQueue, Worker
from paycore.ledger import channel_clearing, platform_transit, trial_balance
from paycore.pay_reroute import PayRerouter
from simulator.sandbox import Knobs, SandboxConfig, create_sandbox_app

A, B = "SANDBOX_A", "SANDBOX_B"
SECRETS = {A: "secret-a-0123", B: "secret-b-4567"}
FAST = Knobs(latency_ms=1.0, latency_jitter=0.0, callback_delay_ms=20.0)


class Receiver:
    """The pay core's callback endpoint: each callback is verified and settled on the
    current test's core; every outcome (or error code) is kept by (org, txn)."""

    def __init__(self) -> None:
        self.core: Any = None
        self.gateway: ChannelGateway | None = None
        self.lock = threading.Lock()
        self.outcomes: dict[tuple[str, str], list[str]] = {}

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/channels/{org}/callback")
        async def callback(org: str, request: Request) -> JSONResponse:
            body = await request.body()
            return await asyncio.to_thread(self._settle, org, dict(request.headers), body)

        return app

    def _settle(self, org: str, headers: dict[str, str], body: bytes) -> JSONResponse:
        if self.core is None or self.gateway is None:
            return JSONResponse({"error": "no core"}, status_code=503)
        result = self.gateway.parse_callback(org, headers, body)
        try:
            outcome = self.core.payments.on_channel_result(result)
        except PayCoreError as e:
            outcome = f"error:{e.code}"
        with self.lock:
            self.outcomes.setdefault((org, result.channel_txn_no), []).append(outcome)
        status = 404 if outcome.startswith("error") else 200
        return JSONResponse({"outcome": outcome}, status_code=status)

    def of(self, org: str, txn: str) -> list[str]:
        with self.lock:
            return list(self.outcomes.get((org, txn), []))


class Routed:
    """Stands in for the router's PayService: a pay order's first request carries
    ``routes[org]`` as its alternatives; later requests (the retry) pass unchanged."""

    def __init__(self, front: ChannelFront, routes: dict[str, tuple[str, ...]]) -> None:
        self.front, self.routes = front, routes
        self.sent: list[ChannelRequest] = []
        self._orders: set[int] = set()

    def submit(self, request: ChannelRequest) -> None:
        if request.pay_order_id not in self._orders:
            self._orders.add(request.pay_order_id)
            alternatives = request.alternatives or self.routes.get(request.pay_org_no, ())
            request = dataclasses.replace(request, alternatives=alternatives)
        self.sent.append(request)
        self.front.submit(request)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    app = create_sandbox_app(SandboxConfig(dict(SECRETS), "adm", seed=3, callback_backoff_ms=20))
    with LiveServer(app) as server:
        server.state = app.state.sandbox
        yield server


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    with LiveServer(rec.app()) as server:
        yield rec, server.url


class World:
    """``shop`` paying through a channel front whose failures go to a :class:`PayRerouter`;
    ``urls``: each org's gateway base URL (default the sandbox)."""

    def __init__(
        self,
        shop: Any,
        sandbox: Any,
        receiver: Any,
        urls: dict[str, str],
        routes: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        rec, api = receiver
        self.shop, self.core, self.sandbox = shop, shop.core, sandbox
        self.gateway = ChannelGateway(
            {
                org: HttpChannelClient(urls.get(org, sandbox.url), org, secret, timeout=0.5)
                for org, secret in SECRETS.items()
            }
        )
        self.notify = lambda org: f"{api}/v1/channels/{org}/callback"
        self.rerouter = PayRerouter(lambda: self.core.deps)
        self.front = ChannelFront(self.gateway, self.notify, on_failure=self.rerouter.on_failure)
        self.port = Routed(self.front, {A: (B,), B: (A,)} if routes is None else routes)
        self.core.channel = self.port
        rec.core, rec.gateway, self.receiver = self.core, self.gateway, rec
        for org in SECRETS:
            sandbox.state.set_knobs(org, FAST)

    def close(self) -> None:
        self.receiver.core = None
        self.front.close()
        self.gateway.close()

    def knobs(self, org: str, **changes: Any) -> None:
        self.sandbox.state.set_knobs(org, FAST.updated(changes))

    def pay(self, amount: int = 1_000, org: str | None = None) -> tuple[Any, Any]:
        """Pay a new trade of ``amount`` by channel (the trade's org, A, unless routed);
        (trade, the pay order's view)."""
        t = self.shop.trade("instant", amount)
        req = PayRequest(t.out_trade_no, (PayTool("channel", amount),), pay_org_no=org)
        return t, self.core.payments.pay(self.shop.mid, req)

    def item(self, po_id: int) -> PayItem:
        with self.core.db.session() as s:
            return s.execute(select(PayItem).where(PayItem.pay_order_id == po_id)).scalar_one()

    def reroutes(self, po_id: int) -> list[PayItemReroute]:
        with self.core.db.session() as s:
            stmt = select(PayItemReroute).where(PayItemReroute.pay_order_id == po_id)
            return list(s.execute(stmt).scalars())

    def order(self, po_id: int) -> PayOrder:
        with self.core.db.session() as s:
            return s.get_one(PayOrder, po_id)

    def trade_status(self, trade_id: int) -> str:
        with self.core.db.session() as s:
            return s.get_one(Trade, trade_id).status

    def exceptions(self) -> list[PayException]:
        with self.core.db.session() as s:
            return list(s.execute(select(PayException)).scalars())

    def books_closed(self) -> None:
        assert trial_balance(self.core.db).ok
        assert self.shop.account(platform_transit("CNY")) == 0


@pytest.fixture
def world(shop, sandbox, receiver) -> Iterator[World]:
    w = World(shop, sandbox, receiver, {})
    yield w
    w.close()


class LoopThread:
    """An asyncio event loop in a thread, as the API's is."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def settled_at_b(w: World, t: Any, po_id: int, amount: int) -> PayItem:
    """The pay moved once from A to B and B's callback settled it."""
    assert wait_until(lambda: w.order(po_id).status == "success"), w.item(po_id).status
    item = w.item(po_id)
    (reroute,) = w.reroutes(po_id)
    assert (item.pay_org_no, item.status, item.settled_amount) == (B, "success", amount)
    assert (reroute.item_id, reroute.from_org, reroute.to_org) == (item.id, A, B)
    assert reroute.from_txn == str(item.id) and item.channel_txn_no == reroute.to_txn
    assert reroute.to_txn != reroute.from_txn
    assert w.order(po_id).pay_org_no == B
    assert w.trade_status(t.id) == "paid"
    assert w.sandbox.state.get(A, reroute.from_txn) is None  # A never booked it
    assert w.sandbox.state.get(B, reroute.to_txn).status == "success"
    # the receiver records the outcome after the settlement has committed: wait for it
    assert wait_until(lambda: w.receiver.of(B, reroute.to_txn) == ["settled"])
    assert w.shop.account(channel_clearing(B, "CNY")) == amount  # owed by B
    assert w.shop.account(channel_clearing(A, "CNY")) == 0
    return item


def jobs(w: World, clock: Clock | None = None) -> tuple[TaskQueue, Handlers, Worker]:
    """The worker's task queue and handlers over ``w``'s core and gateway."""
    clock = clock or Clock(datetime.now(UTC))
    queue = TaskQueue(w.core.db, w.core.ids, clock=clock, worker_id="w1")
    handlers = Handlers(w.core, w.gateway, notify_url_for=w.notify)
    return queue, handlers, Worker(w.core, queue, handlers)
