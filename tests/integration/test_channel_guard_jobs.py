"""What a degraded channel does to refunds and to the worker's jobs, on PostgreSQL with
the sandbox channel over real HTTP: a refund is refused before anything is written,
naming the channel; the active query skips the channel without spending attempts and
asks again later; a compensation re-send is refused (the task retries later)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import SandboxWorld, Shop, table_counts

from paycore import ChannelResult, RefundRequest
from paycore.channels.errors import ChannelRefused
from paycore.channels.guarded import GuardedGateway
from paycore.db.schema import PayItem, Trade
from paycore.jobs.active_query import ActiveQuery
from paycore.jobs.channel_calls import ChannelAccess, resend_stuck_call
from stability.depmap_seed import default_map
from stability.errors import DependencyFailed
from stability.guard import Guard
from stability.switch_records import SwitchSnapshot

ORG = Shop.ORG
T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DEGRADED = SwitchSnapshot(version=1, degraded=frozenset({f"channel.{ORG}"}))


class Outcomes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        self.seen.append((resource, caller, outcome))

    def breaker_changed(self, resource: str, old: str, new: str, reason: str) -> None:
        pass


@pytest.fixture
def env(pg_url):
    with SandboxWorld(pg_url, T0) as e:
        e.rec = Outcomes()
        e.guard = Guard(default_map((ORG, "SANDBOX_B"), redis_lock=False), recorders=[e.rec])
        yield e


def item(env, item_id: int) -> PayItem:
    with env.db.session() as s:
        return s.get_one(PayItem, item_id)


def test_a_refund_on_a_degraded_channel_is_refused_before_anything_is_written(env) -> None:
    trade, paid = env.pay(1_000)
    env.sandbox.settle(ORG, paid.channel_txn_no)
    result = ChannelResult(ORG, paid.channel_txn_no, "success", 1_000, "CNY")
    assert env.core.payments.on_channel_result(result) == "settled"
    env.core.guard = env.front.guard = env.guard
    env.guard.apply(DEGRADED)
    before = table_counts(env.db)
    with pytest.raises(DependencyFailed) as info:
        env.core.refunds.refund(
            env.shop.mid, RefundRequest(trade.out_trade_no, "r1", 400, reason="too slow")
        )
    assert info.value.resource == f"channel.{ORG}" and info.value.reason == "degraded"
    assert info.value.http_status == 503
    assert table_counts(env.db) == before  # no refund trade, order, item or posting
    with env.db.session() as s:
        assert s.get_one(Trade, trade.id).refunded_amount == 0
    assert (f"channel.{ORG}", "link.refund", "degraded") in env.rec.seen

    env.guard.apply(SwitchSnapshot(version=2))  # back: the same refund goes through
    detail = env.core.refunds.refund(
        env.shop.mid, RefundRequest(trade.out_trade_no, "r1", 400, reason="too slow")
    )
    assert detail.trade.status == "paying" and env.front.wait_idle(10)
    assert env.front.acked == 2  # the pay and the refund
    assert (f"channel.{ORG}", "link.refund", "pass") in env.rec.seen


def test_the_active_query_skips_a_degraded_channel_and_asks_again_later(env) -> None:
    stuck = [env.pay(amount)[1] for amount in (1_000, 2_000, 3_000)]
    for i in stuck:
        env.sandbox.settle(ORG, i.channel_txn_no)
    job = ActiveQuery(
        env.core, GuardedGateway(env.gateway, env.guard, "job.active_query"), max_attempts=1
    )
    env.guard.apply(DEGRADED)
    first = T0 + timedelta(seconds=61)
    assert job.run_once(first) == 0
    assert job.stats.skipped == 3 and job.stats.queried == 0  # one refused, two not asked
    rows = [item(env, i.id) for i in stuck]
    assert [(r.status, r.query_attempts, r.manual) for r in rows] == [("processing", 0, False)] * 3
    assert env.rec.seen == [(f"channel.{ORG}", "job.active_query", "degraded")]

    env.guard.apply(SwitchSnapshot(version=2))
    assert job.run_once(first + timedelta(seconds=300)) == 3  # max_attempts=1: none lost
    assert [item(env, i.id).status for i in stuck] == ["success"] * 3
    assert env.rec.seen[1:] == [(f"channel.{ORG}", "job.active_query", "pass")] * 3


def test_a_compensation_resend_on_a_degraded_channel_is_refused(env) -> None:
    env.core.channel = None
    _, lost = env.pay(1_000)  # never reached the channel
    env.core.channel = env.front
    with env.db.session() as s:
        row = s.get_one(PayItem, lost.id)
        payload = {
            "kind": "pay",
            "pay_org_no": ORG,
            "channel_txn_no": row.channel_txn_no,
            "amount": row.amount,
            "currency": "CNY",
            "merchant_id": env.shop.mid,
            "trade_id": 1,
            "pay_order_id": row.pay_order_id,
        }
    channel = ChannelAccess(
        GuardedGateway(env.gateway, env.guard, "job.compensation"),
        lambda org: "http://127.0.0.1:9/callback",
    )
    env.guard.apply(DEGRADED)
    with pytest.raises(ChannelRefused, match=f"channel.{ORG}"):
        resend_stuck_call(env.db, channel, payload)  # a system failure: the task retries
    assert env.sandbox.get(ORG, str(payload["channel_txn_no"])) is None
    env.guard.apply(SwitchSnapshot(version=2))
    resend_stuck_call(env.db, channel, payload)
    assert env.sandbox.get(ORG, str(payload["channel_txn_no"])) is not None
    assert [o for _, c, o in env.rec.seen if c == "job.compensation"] == ["degraded", "pass"]


def test_the_worker_defers_a_refused_resend_without_spending_an_attempt(env) -> None:
    """A channel degraded for an hour sends no compensation task to manual: each refused
    re-send goes back to pending for later with its attempt given back."""
    from paycore.db.schema import CompensationTask
    from paycore.jobs import STUCK_CHANNEL_CALL, Handlers, TaskQueue, Worker

    env.core.channel = None
    _, lost = env.pay(1_000)  # never reached the channel
    env.core.channel = env.front
    row = item(env, lost.id)
    payload = {
        "kind": "pay",
        "pay_org_no": ORG,
        "channel_txn_no": row.channel_txn_no,
        "amount": row.amount,
        "currency": "CNY",
        "merchant_id": env.shop.mid,
        "trade_id": 1,
        "pay_order_id": row.pay_order_id,
    }
    now = [T0]
    queue = TaskQueue(env.db, env.core.ids, clock=lambda: now[0], worker_id="w1")
    gateway = GuardedGateway(env.gateway, env.guard, "job.compensation")
    handlers = Handlers(env.core, gateway, notify_url_for=lambda org: "http://127.0.0.1:9/cb")
    worker = Worker(env.core, queue, handlers, refused_delay_s=30)
    assert queue.enqueue(None, STUCK_CHANNEL_CALL, "stuck:1", payload, max_attempts=2)
    env.guard.apply(DEGRADED)
    for _ in range(5):  # more refusals than the task has attempts
        assert worker.run_once() == 1
        with env.db.session() as s:
            task = s.query(CompensationTask).one()
            assert (task.status, task.attempts) == ("pending", 0)
            assert task.next_run_at == now[0] + timedelta(seconds=30)
            assert "channel_refused" in task.last_error or f"channel.{ORG}" in task.last_error
        now[0] += timedelta(seconds=31)
    assert worker.counts["deferred"] == 5 and worker.counts["manual"] == 0
    env.guard.apply(SwitchSnapshot(version=2))
    assert worker.run_once() == 1 and worker.counts["done"] == 1
    assert env.sandbox.get(ORG, str(payload["channel_txn_no"])) is not None
