"""Retry on the next org: a routed pay that pay org A refused before taking money (HTTP 503,
nothing listening) is moved once to B and settles there; a timeout at A is no proof and
is not moved; B refusing too moves nothing again; A's late success for the old
transaction is refunded in full at A. SQLite and PostgreSQL, the sandbox channel over
real HTTP, its callbacks delivered to the pay core through a live receiver."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from datetime import UTC, datetime

import pytest
from conftest import Clock, free_port
from prometheus_client import CollectorRegistry

# the sandbox, the callback receiver and the rerouting front (tests/integration/reroute_world.py)
from reroute_world import (  # noqa: F401
    SECRETS,
    A,
    B,
    LoopThread,
    World,
    jobs,
    receiver,
    sandbox,
    settled_at_b,
    wait_until,
    world,
)

from collectors.routing_metrics import RoutingMetrics
from paycore.api.convert import detail_out
from paycore.channels import ChannelRequest, ChannelResult
from paycore.channels.client import HttpChannelClient
from paycore.jobs import STUCK_CHANNEL_CALL, channel_request_payload, refund_txn_no
from paycore.ledger import channel_clearing, platform_transit
from paycore.pay_reroute import RETRY_RULE, PayRerouter, not_accepted
from paycore.routing import Router, RouteTarget, RoutingRule, RoutingStore
from stability.depmap_seed import default_map
from stability.guard import Guard


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
        # the trade as the merchant reads it (GET /v1/trades/{no}) says where the item went
        detail = detail_out(world.shop.core.trades.detail(world.shop.mid, t.out_trade_no))
        (shown,) = detail.pay_orders[0].items
        assert shown.pay_org_no == B and shown.reroute is not None
        assert (shown.reroute.from_org, shown.reroute.to_org, shown.reroute.reason) == (
            A,
            B,
            "http_503",
        )
        assert (shown.reroute.from_txn, shown.reroute.to_txn) == (reroute.from_txn, reroute.to_txn)
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
        detail = detail_out(w.shop.core.trades.detail(w.shop.mid, t2.out_trade_no))
        assert detail.pay_orders[0].items[0].reroute is None  # never moved: nothing shown
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
    # the receiver records the outcome after the settlement has committed: wait for it
    assert wait_until(lambda: world.receiver.of(A, str(item.id)) == ["settled"])
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
