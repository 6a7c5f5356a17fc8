"""A committed payment is always sent: Redis failing between the commit and the lock's
release must neither hide the committed pay from its caller (503 ``lock_unavailable``,
as before) nor keep it from the channel until the active query finds it."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import event

from paycore import CreateTrade, PayCore, PayRequest, PayTool, RefundRequest
from paycore.channels import ChannelRequest, ChannelResult
from paycore.locks.redis import RedisLock
from simulator.faultproxy import FaultProxy, proxied_url, upstream_of


class RecordingChannel:
    """A channel that takes every request (the test answers with results itself)."""

    def __init__(self) -> None:
        self.sent: list[ChannelRequest] = []
        self._lock = threading.Lock()

    def submit(self, request: ChannelRequest) -> None:
        with self._lock:
            self.sent.append(request)


@pytest.fixture
def redis_cut_after_commit(pg_url, redis_server):
    """A pay core on PostgreSQL whose trade lock lives in real Redis behind a fault proxy,
    and ``arm(table)``: Redis goes down right after the commit that inserts into
    ``table`` (before the lock is released)."""
    proxy = FaultProxy(upstream_of(redis_server, 6379), name="redis").start()
    lock = RedisLock(proxied_url(redis_server, proxy), namespace=f"t:{uuid.uuid4().hex}:")
    channel = RecordingChannel()
    core = PayCore(pg_url, lock=lock, channel=channel, lock_ttl=2.0, lock_wait=1.0)
    armed: dict[str, object] = {"table": None, "seen": False}

    @event.listens_for(core.db.engine, "after_cursor_execute")
    def _seen(conn, cursor, statement, params, context, executemany):
        if armed["table"] and statement.startswith(f"INSERT INTO {armed['table']}"):
            armed["seen"] = True

    @event.listens_for(core.db.engine, "commit")
    def _cut(conn):
        if armed["seen"]:
            armed["table"], armed["seen"] = None, False
            proxy.set(down=True)

    def arm(table: str) -> None:
        proxy.reset()
        armed["table"] = table

    yield core, channel, arm
    core.close()
    proxy.stop()


def test_redis_failing_after_the_commit_still_sends_the_pay(redis_cut_after_commit):
    core, channel, arm = redis_cut_after_commit
    m = core.merchants.onboard("shop", products=[("goods", "physical")], pay_orgs=["SANDBOX_A"])
    mid = m.merchant.merchant_id
    core.trades.create(
        mid, CreateTrade("t1", "instant", 1_000, "CNY", "u1", "goods", "physical", "SANDBOX_A")
    )
    arm("pay_orders")
    view = core.payments.pay(mid, PayRequest("t1", (PayTool("channel", 1_000),)))
    # the truth: the pay is committed and on its way, and the channel got it at once
    assert view.status == "processing"
    assert [(r.kind, r.channel_txn_no) for r in channel.sent] == [
        ("pay", view.items[0].channel_txn_no)
    ]
    # a replay answers the same pay order, and nothing is sent twice
    assert core.payments.pay(mid, PayRequest("t1", (PayTool("channel", 1_000),))).id == view.id
    assert len(channel.sent) == 1


def test_redis_failing_after_a_refunds_commit_still_sends_the_refund(redis_cut_after_commit):
    core, channel, arm = redis_cut_after_commit
    m = core.merchants.onboard("shop", products=[("goods", "physical")], pay_orgs=["SANDBOX_A"])
    mid = m.merchant.merchant_id
    core.trades.create(
        mid, CreateTrade("t1", "instant", 1_000, "CNY", "u1", "goods", "physical", "SANDBOX_A")
    )
    po = core.payments.pay(mid, PayRequest("t1", (PayTool("channel", 1_000),)))
    item = po.items[0]
    assert (
        core.payments.on_channel_result(
            ChannelResult("SANDBOX_A", str(item.channel_txn_no), "success", 1_000, "CNY")
        )
        == "settled"
    )
    arm("pay_orders")
    detail = core.refunds.refund(mid, RefundRequest("t1", "r1", 400))
    assert detail.trade.status == "paying"
    assert [r.kind for r in channel.sent] == ["pay", "refund"]
    assert channel.sent[-1].amount == 400
