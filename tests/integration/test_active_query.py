"""Active query against the sandbox channel over real HTTP, on PostgreSQL.

The sandbox is told to call back only after ten minutes, so no callback arrives during
the test: only the active query can settle the orders. Time is injected.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import SandboxWorld, Shop, free_port

from paycore import ChannelResult
from paycore.channels.gateway import build_gateway
from paycore.db.schema import JournalEntry, PayItem
from paycore.jobs.active_query import ActiveQuery

ORG = Shop.ORG
T0 = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


class Env(SandboxWorld):
    def __init__(self, pg_url: str) -> None:
        super().__init__(pg_url, T0)

    def item(self, item_id: int) -> PayItem:
        with self.db.session() as s:
            return s.get_one(PayItem, item_id)

    def trade_status(self, t) -> str:
        return self.core.trades.get(self.shop.mid, t.out_trade_no).status


@pytest.fixture
def env(pg_url):
    with Env(pg_url) as e:
        yield e


def test_stuck_items_are_queried_settled_or_handed_to_manual(env):
    ok_trade, ok = env.pay(1_000)  # the channel settles it, but never calls back
    env.sandbox.update_knobs(ORG, {"fail_rate": 1.0})
    bad_trade, bad = env.pay(2_000)  # the channel fails it
    env.sandbox.update_knobs(ORG, {"fail_rate": 0.0})
    stuck_trade, stuck = env.pay(3_000)  # the channel never settles it
    env.core.channel = None
    lost_trade, lost = env.pay(4_000)  # never reached the channel: "unknown" there
    env.core.channel = env.front
    env.sandbox.settle(ORG, ok.channel_txn_no)
    env.sandbox.settle(ORG, bad.channel_txn_no)

    job = ActiveQuery(env.core, env.gateway)  # 60 s, then every 300 s, 5 attempts
    assert job.run_once(T0 + timedelta(seconds=59)) == 0  # too young to ask about
    first = T0 + timedelta(seconds=61)
    assert job.run_once(first) == 4
    assert env.trade_status(ok_trade) == "paid"
    assert env.trade_status(bad_trade) == "created"  # failed: open to pay again
    assert (env.item(ok.id).status, env.item(bad.id).status) == ("success", "failed")
    with env.db.session() as s:
        kinds = set(
            s.execute(
                sa.select(JournalEntry.biz_type).where(JournalEntry.trade_id == ok_trade.id)
            ).scalars()
        )
    assert kinds == {"pay_item", "pay_complete"}  # settled exactly as a callback would
    for item in (stuck, lost):
        row = env.item(item.id)
        assert (row.status, row.query_attempts, row.manual) == ("processing", 1, False)
        assert row.next_query_at == first + timedelta(seconds=300)
    assert job.stats.settled == 2 and job.stats.pending == 2
    # the late callback is a harmless duplicate
    txn = env.sandbox.get(ORG, ok.channel_txn_no)
    assert (
        env.core.payments.on_channel_result(
            ChannelResult(ORG, ok.channel_txn_no, "success", txn.settled_amount, "CNY")
        )
        == "duplicate"
    )

    assert job.run_once(first + timedelta(seconds=299)) == 0  # not due again yet
    for k in range(1, 5):
        assert job.run_once(first + timedelta(seconds=300 * k)) == 2
    for item in (stuck, lost):
        row = env.item(item.id)
        assert (row.status, row.query_attempts, row.manual) == ("processing", 5, True)
    assert job.stats.manual == 2
    assert job.run_once(first + timedelta(days=1)) == 0  # manual items are left alone
    assert env.trade_status(stuck_trade) == env.trade_status(lost_trade) == "paying"


def test_channel_errors_count_as_attempts_without_a_result(env):
    t, item = env.pay(1_500)
    env.sandbox.settle(ORG, item.channel_txn_no)
    down = build_gateway(f"http://127.0.0.1:{free_port()}", env.secrets, timeout=0.5)
    try:
        job = ActiveQuery(env.core, down, max_attempts=2, interval_s=60)
        assert job.run_once(T0 + timedelta(seconds=60)) == 1
        row = env.item(item.id)
        assert (row.status, row.query_attempts, row.manual) == ("processing", 1, False)
        assert job.stats.errors == 1 and job.stats.settled == 0
        assert job.run_once(T0 + timedelta(seconds=120)) == 1
        assert env.item(item.id).manual is True
    finally:
        down.close()
    # a manual item stays out of the job until a person (or a callback) settles it
    job = ActiveQuery(env.core, env.gateway)
    assert job.run_once(T0 + timedelta(days=1)) == 0
    assert env.trade_status(t) == "paying"
