"""Retry on the next org: a routed pay that pay org A refused before taking money (HTTP 503,
nothing listening) is moved once to B and settles there; a timeout at A is no proof and
is not moved; B refusing too moves nothing again; A's late success for the old
transaction is refunded in full at A. SQLite and PostgreSQL, the sandbox channel over
real HTTP, its callbacks delivered to the pay core through a live receiver."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import Clock, LiveServer, free_port
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from collectors.routing_metrics import RoutingMetrics
from paycore import PayRequest, PayTool
from paycore.channels import ChannelRequest, ChannelResult
from paycore.channels.client import HttpChannelClient
from paycore.channels.gateway import ChannelFront, ChannelGateway
from paycore.db.schema import PayException, PayItem, PayItemReroute, PayOrder, Trade
from paycore.errors import PayCoreError
from paycore.jobs import (
    STUCK_CHANNEL_CALL,
    Handlers,
    TaskQueue,
    Worker,
    channel_request_payload,
    refund_txn_no,
)
from paycore.ledger import channel_clearing, platform_transit, trial_balance
from paycore.pay_reroute import RETRY_RULE, PayRerouter, not_accepted
from paycore.routing import Router, RouteTarget, RoutingRule, RoutingStore
from simulator.sandbox import Knobs, SandboxConfig, create_sandbox_app
from stability.depmap_seed import default_map
from stability.guard import Guard

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
    assert w.receiver.of(B, reroute.to_txn) == ["settled"]
    assert w.shop.account(channel_clearing(B, "CNY")) == amount  # owed by B
    assert w.shop.account(channel_clearing(A, "CNY")) == 0
    return item


def jobs(w: World, clock: Clock | None = None) -> tuple[TaskQueue, Handlers, Worker]:
    """The worker's task queue and handlers over ``w``'s core and gateway."""
    clock = clock or Clock(datetime.now(UTC))
    queue = TaskQueue(w.core.db, w.core.ids, clock=clock, worker_id="w1")
    handlers = Handlers(w.core, w.gateway, notify_url_for=w.notify)
    return queue, handlers, Worker(w.core, queue, handlers)


@pytest.mark.parametrize("sender", ["threads", "loop"])
def test_a_503_at_a_moves_the_pay_to_b_once_and_it_settles_there(world, sender):
    loop = LoopThread() if sender == "loop" else None
    if loop is not None:  # the API's way: sends (and the failure hook) on its event loop
        world.front.bind_loop(loop.loop)
    try:
        world.knobs(A, outage_rate=1.0)
        t, po = world.pay(1_234)
        assert po.status == "processing" and po.pay_org_no == A
        item = settled_at_b(world, t, po.id, 1_234)
        (reroute,) = world.reroutes(po.id)
        assert reroute.reason == "http_503"
        first, retry = world.port.sent
        assert (first.pay_org_no, first.alternatives) == (A, (B,))
        assert (retry.pay_org_no, retry.alternatives) == (B, ())
        assert retry.channel_txn_no == item.channel_txn_no and world.rerouter.rerouted == 1
        world.books_closed()
    finally:
        if loop is not None:
            asyncio.run_coroutine_threadsafe(world.front.unbind_loop(), loop.loop).result(10)
            loop.stop()


def test_a_pay_the_rules_sent_to_a_is_retried_at_b_and_counted(shop, sandbox, receiver):
    store = RoutingStore(shop.core.db)
    rule = RoutingRule(name="r1", priority=1, targets=(RouteTarget(A, 100),), fallback=(B,))
    store.publish((rule,), author="sre", reason="A first, B when A cannot")
    metrics = RoutingMetrics(CollectorRegistry())
    shop.core.guard = Guard(default_map((A, B), redis_lock=False))
    shop.core.router = Router(store, rng=random.Random(7), recorder=metrics)
    w = World(shop, sandbox, receiver, {}, routes={})  # the pay service fills alternatives
    try:
        w.knobs(A, outage_rate=1.0)
        t, po = w.pay(800)
        assert po.pay_org_no == A and w.port.sent[0].alternatives == (B,)
        settled_at_b(w, t, po.id, 800)
        assert metrics.decision_count("r1", A) == 1
        assert metrics.fallback_count(RETRY_RULE, A, B, "system_error") == 1
        # a pay naming its org is not routed: it has no alternatives and stays at A
        t2, po2 = w.pay(400, org=A)
        assert w.front.wait_idle(5) and w.reroutes(po2.id) == []
        assert w.port.sent[-1].alternatives == () and w.item(po2.id).pay_org_no == A
    finally:
        w.close()


def test_nothing_listening_at_a_moves_the_pay_to_b(shop, sandbox, receiver):
    w = World(shop, sandbox, receiver, {A: f"http://127.0.0.1:{free_port()}"})
    try:
        t, po = w.pay(700)
        settled_at_b(w, t, po.id, 700)
        assert w.reroutes(po.id)[0].reason == "unreachable"
        w.books_closed()
    finally:
        w.close()


def test_a_timeout_at_a_is_no_proof_the_pay_stays_and_settles_at_a(world):
    world.knobs(A, timeout_rate=1.0, timeout_ms=1_500.0)  # A takes it, answers too late
    t, po = world.pay(500)
    assert world.front.wait_idle(5) and world.front.failures == 1
    item = world.item(po.id)
    assert (item.pay_org_no, item.channel_txn_no, item.status) == (A, str(item.id), "processing")
    assert world.reroutes(po.id) == [] and len(world.port.sent) == 1
    # A had taken it after all: its callback settles the pay where it was sent
    assert wait_until(lambda: world.order(po.id).status == "success")
    assert world.receiver.of(A, str(item.id)) == ["settled"]
    assert world.sandbox.state.get(B, str(item.id)) is None
    world.books_closed()


def test_b_refusing_too_moves_nothing_again(world):
    world.knobs(A, outage_rate=1.0)
    world.knobs(B, outage_rate=1.0)
    t, po = world.pay(900)
    assert wait_until(lambda: world.front.failures == 2)
    assert world.front.wait_idle(5)
    time.sleep(0.2)  # room for a wrong third send
    item = world.item(po.id)
    (reroute,) = world.reroutes(po.id)
    assert (item.pay_org_no, item.channel_txn_no, item.status) == (B, reroute.to_txn, "processing")
    assert [(r.pay_org_no, r.alternatives) for r in world.port.sent] == [(A, (B,)), (B, ())]
    # even a request that still named alternatives is not moved a second time
    again = dataclasses.replace(world.port.sent[1], alternatives=(A,))
    assert world.rerouter.reroute(again, "http_503") is None
    assert len(world.reroutes(po.id)) == 1 and world.item(po.id).pay_org_no == B
    assert world.order(po.id).status == "processing"  # the active query takes it from here
    # a stuck-call resend of the first request (queued before the move) sends nothing to A
    world.knobs(A)
    queue, handlers, worker = jobs(world)
    first = channel_request_payload(world.port.sent[0])
    queue.enqueue(None, STUCK_CHANNEL_CALL, f"pay:{reroute.from_txn}", first)
    worker.run_once()
    assert queue.backlog()["done"] == 1 and world.sandbox.state.get(A, reroute.from_txn) is None


def test_a_late_failure_for_the_old_txn_is_a_duplicate(world):
    world.knobs(A, outage_rate=1.0)
    t, po = world.pay(300)
    settled_at_b(world, t, po.id, 300)
    (reroute,) = world.reroutes(po.id)
    late = ChannelResult(A, reroute.from_txn, "failed", 300, "CNY")
    assert world.core.payments.on_channel_result(late) == "duplicate"
    assert world.exceptions() == [] and world.order(po.id).status == "success"
    world.books_closed()


def test_a_late_success_at_a_is_refunded_in_full_there(world):
    world.knobs(A, outage_rate=1.0)
    t, po = world.pay(1_000)
    settled_at_b(world, t, po.id, 1_000)
    (reroute,) = world.reroutes(po.id)
    # A took the first request after all (its 503 was wrong): its callback comes late
    world.knobs(A)
    old = ChannelRequest("pay", A, reroute.from_txn, 1_000, "CNY", world.shop.mid, t.id, po.id)
    world.gateway.send(old, world.notify(A))
    assert wait_until(lambda: world.receiver.of(A, reroute.from_txn) == ["exception"])
    (exc,) = world.exceptions()
    assert (exc.kind, exc.resolution, exc.status, exc.amount_taken) == (
        "other",
        "full_refund",
        "open",
        1_000,
    )
    assert exc.pay_item_id == reroute.item_id and f"moved to {B}" in exc.detail
    assert world.shop.account(platform_transit("CNY")) == 1_000  # held for the refund
    assert world.shop.account(channel_clearing(A, "CNY")) == 1_000
    # a repeat of that callback changes nothing
    repeat = world.gateway.query(A, reroute.from_txn)
    assert world.core.payments.on_channel_result(repeat) == "duplicate"
    assert len(world.exceptions()) == 1

    clock = Clock(datetime.now(UTC))
    queue, handlers, worker = jobs(world, clock)
    handlers.enqueue_open_exceptions()
    for _ in range(50):
        worker.run_once()
        if world.exceptions()[0].status == "resolved":
            break
        clock.advance(600)
        time.sleep(0.05)
    assert world.exceptions()[0].status == "resolved"
    refund = world.sandbox.state.get(A, refund_txn_no(reroute.id))
    assert (refund.kind, refund.status, refund.amount) == ("refund", "success", 1_000)
    assert refund.origin_channel_txn_no == reroute.from_txn
    # the refund's own callback finds its reroute (posted once, by the task or by it)
    assert wait_until(lambda: world.receiver.of(A, refund_txn_no(reroute.id)) != [])
    assert world.receiver.of(A, refund_txn_no(reroute.id))[0] in ("settled", "duplicate")
    assert world.shop.account(channel_clearing(A, "CNY")) == 0
    assert world.shop.account(channel_clearing(B, "CNY")) == 1_000  # B keeps its pay
    assert world.order(po.id).status == "success" and world.trade_status(t.id) == "paid"
    world.books_closed()


def test_what_proves_the_channel_never_took_it():
    from paycore.channels.errors import ChannelRefused, ChannelRejected, ChannelUnavailable

    client = HttpChannelClient(f"http://127.0.0.1:{free_port()}", A, "s")
    req = ChannelRequest("pay", A, "1", 100, "CNY", "m", 1, 2)
    with pytest.raises(ChannelUnavailable) as refused:
        client.send(req, "http://x/cb", timeout=0.5)
    assert not_accepted(refused.value) == "unreachable"
    assert not_accepted(ChannelUnavailable("503", status=503)) == "http_503"
    assert not_accepted(ChannelRefused("cap", reason="bulkhead_full")) == "refused:bulkhead_full"
    assert not_accepted(ChannelUnavailable("500", status=500)) is None
    assert not_accepted(ChannelUnavailable("timed out")) is None
    assert not_accepted(ChannelRejected("400", status=400)) is None


def test_the_platforms_front_reroutes(pg_url):
    from runtime.bootstrap import build_platform
    from runtime.settings import Settings

    settings = Settings(
        database_url=pg_url,
        pay_orgs=(A, B),
        channel_secrets=dict(SECRETS),
        sandbox_url="http://127.0.0.1:9",
    )
    p = build_platform(settings, channels=True)
    try:
        hook = p.front.on_failure
        assert isinstance(getattr(hook, "__self__", None), PayRerouter)
        assert hook.__self__._deps() is p.paycore.deps
    finally:
        p.close()
