"""Trades that end (issue 21, point 5): unpaid trades expire per merchant, guaranteed
trades confirm after their hold, and the merchant settings behind both. SQLite and
PostgreSQL; the race of an expiry against a pay with real threads on PostgreSQL."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from conftest import Clock, Shop
from sqlalchemy import func, select, update

from paycore import Database, PayCore, PayRequest, PayTool, RefundRequest
from paycore.db.schema import Merchant, Notification, PayOrder, Trade
from paycore.errors import Busy, InvalidRequest, PayCoreError, UnknownMerchant, WrongState
from paycore.ledger import guarantee_escrow, merchant_payable, trial_balance
from paycore.lifecycle import TradeLifecycle

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
NOTIFY = "http://127.0.0.1:9/notify"


class World:
    """A pay core on a test clock, with two shops that want notifications."""

    def __init__(self, db: Database) -> None:
        self.clock = Clock(T0)
        self.core = PayCore(db, clock=self.clock)
        self.core.merchants.cache_ttl = 0
        self.a, self.b = Shop(self.core), Shop(self.core)
        for shop in (self.a, self.b):
            with self.core.db.session() as s:
                s.execute(
                    update(Merchant)
                    .where(Merchant.merchant_id == shop.mid)
                    .values(notify_url=NOTIFY)
                )
        self.life = TradeLifecycle(self.core.deps, self.core.trades)

    def status(self, out_trade_no: str, shop: Shop) -> str:
        return self.core.trades.get(shop.mid, out_trade_no).status

    def closed_events(self) -> list[dict]:
        with self.core.db.session() as s:
            rows = s.execute(
                select(Notification.payload).where(Notification.event_type == "trade.closed")
            ).scalars()
            return [json.loads(p) for p in rows]

    def close(self) -> None:
        self.core.close()


@pytest.fixture
def world(db_url):
    w = World(Database(db_url))
    yield w
    w.close()


@pytest.fixture
def pg_world(pg_url):
    w = World(Database(pg_url))
    yield w
    w.close()


def _balance_pay(shop: Shop, trade, out_pay_no: str | None = None):
    return shop.core.payments.pay(
        shop.mid,
        PayRequest(trade.out_trade_no, (PayTool("balance", trade.amount),), out_pay_no=out_pay_no),
    )


# -- expiry ---------------------------------------------------------------------------------
def test_expiry_closes_only_old_unpaid_trades_by_each_merchants_setting(world):
    core, a, b = world.core, world.a, world.b
    core.merchants.configure(a.mid, trade_expiry_s=600)  # b keeps the default 1800 s
    a.fund("u1", 5_000)
    a_old, b_old = a.trade(amount=100), b.trade(amount=100)
    paid = a.trade(amount=300)
    assert _balance_pay(a, paid).status == "success"
    paying = a.trade(amount=400)  # a channel pay the channel has not answered yet
    core.payments.pay(a.mid, PayRequest(paying.out_trade_no, (PayTool("channel", 400),)))
    world.clock.advance(300)
    a_young = a.trade(amount=100)
    world.clock.advance(299)  # a_old is 599 s old: not yet
    assert world.life.expire_due() == 0
    world.clock.advance(1)
    assert world.life.expire_due() == 1
    assert world.status(a_old.out_trade_no, a) == "closed"
    assert world.status(a_young.out_trade_no, a) == "created"
    assert world.status(b_old.out_trade_no, b) == "created"  # b's trades live 1800 s
    world.clock.advance(1_200)  # b_old is 1800 s old, a_young 1500 s
    assert world.life.expire_due() == 2
    assert world.status(b_old.out_trade_no, b) == world.status(a_young.out_trade_no, a) == "closed"
    world.clock.advance(86_400)
    assert world.life.expire_due() == 0  # nothing else is ever closed
    assert world.status(paid.out_trade_no, a) == "paid"
    assert world.status(paying.out_trade_no, a) == "paying"
    events = world.closed_events()
    assert sorted(e["out_trade_no"] for e in events) == sorted(
        [a_old.out_trade_no, a_young.out_trade_no, b_old.out_trade_no]
    )
    assert {(e["reason"], e["trade_status"]) for e in events} == {("expired", "closed")}
    with pytest.raises(WrongState):  # a closed trade cannot be paid
        _balance_pay(a, a_old)
    assert a.balance("u1") == 5_000 - 300
    assert trial_balance(core.db).ok


def test_a_trade_reopened_by_a_failed_pay_expires_by_its_creation(world):
    core, a = world.core, world.a
    t = a.trade(amount=500)
    po = core.payments.pay(a.mid, PayRequest(t.out_trade_no, (PayTool("channel", 500),)))
    world.clock.advance(1_900)
    assert world.life.expire_due() == 0  # paying: the pay decides
    assert a.settle(po.items[0], "failed") == "failed"
    assert world.status(t.out_trade_no, a) == "created"
    assert world.life.expire_due() == 1
    assert world.status(t.out_trade_no, a) == "closed"
    assert trial_balance(core.db).ok


def test_concurrent_expiry_and_pays_on_postgresql_one_wins_per_trade(pg_world):
    """Real threads: 3 expiry runs and one pay per trade, released at once. Every trade
    ends either paid (its money taken once) or closed (nothing taken), never both."""
    core, a = pg_world.core, pg_world.a
    n, amount = 24, 100
    a.fund("u1", n * amount)
    trades = [a.trade(amount=amount) for _ in range(n)]
    pg_world.clock.advance(1_800)  # every one of them is due
    barrier = threading.Barrier(n + 3, timeout=60)

    def pay(t):
        barrier.wait()
        try:
            return _balance_pay(a, t)
        except PayCoreError as exc:
            return exc

    def expire(_):
        barrier.wait()
        return pg_world.life.expire_due()

    with ThreadPoolExecutor(n + 3) as pool:
        pay_futures = [pool.submit(pay, t) for t in trades]
        expiry_futures = [pool.submit(expire, i) for i in range(3)]
        pays = [f.result(timeout=120) for f in pay_futures]
        expiries = [f.result(timeout=120) for f in expiry_futures]
    won = [r for r in pays if not isinstance(r, Exception)]
    refused = [r for r in pays if isinstance(r, Exception)]
    assert all(isinstance(e, WrongState | Busy) for e in refused), refused
    statuses = {t.out_trade_no: pg_world.status(t.out_trade_no, a) for t in trades}
    closed = [no for no, s in statuses.items() if s == "closed"]
    paid = [no for no, s in statuses.items() if s == "paid"]
    assert len(closed) + len(paid) == n
    assert sum(expiries) == len(closed)  # each closure counted once, by one run
    assert len(won) == len(paid) and all(w.status == "success" for w in won)
    with core.db.session() as s:
        orders = s.execute(
            select(Trade.out_trade_no, func.count())
            .join(PayOrder, PayOrder.trade_id == Trade.id)
            .where(Trade.out_trade_no.in_([t.out_trade_no for t in trades]))
            .group_by(Trade.out_trade_no)
        ).all()
    assert {no for no, c in orders if c == 1} == set(paid) and all(c == 1 for _, c in orders)
    assert a.balance("u1") == (n - len(paid)) * amount  # nothing taken for a closed trade
    assert sorted(e["out_trade_no"] for e in pg_world.closed_events()) == sorted(closed)
    assert trial_balance(core.db).ok


# -- auto-confirm ---------------------------------------------------------------------------
def test_auto_confirm_releases_the_escrow_after_the_hold(world):
    core, a = world.core, world.a
    core.merchants.configure(a.mid, confirm_hold_s=86_400)
    a.fund("u1", 10_000)
    first = a.trade("guaranteed", 1_000)
    assert _balance_pay(a, first).status == "success"
    instant = a.trade("instant", 500)
    assert _balance_pay(a, instant).status == "success"
    world.clock.advance(3_600)
    second = a.trade("guaranteed", 2_000)
    assert _balance_pay(a, second).status == "success"
    # a channel-paid guaranteed trade with a channel refund in flight waits for it
    refunding = a.trade("guaranteed", 700)
    po = core.payments.pay(a.mid, PayRequest(refunding.out_trade_no, (PayTool("channel", 700),)))
    assert a.settle(po.items[0]) == "settled"
    core.refunds.refund(a.mid, RefundRequest(refunding.out_trade_no, a.no("r"), 200))
    escrow, payable = guarantee_escrow(a.mid, "CNY"), merchant_payable(a.mid, "CNY")
    assert a.account(escrow) == 1_000 + 2_000 + 700 - 200
    payable_before = a.account(payable)
    world.clock.advance(86_400 - 3_600 - 1)
    assert world.life.confirm_due() == 0  # one second short of the first hold
    world.clock.advance(1)
    assert world.life.confirm_due() == 1
    assert world.status(first.out_trade_no, a) == "confirmed"
    assert world.status(second.out_trade_no, a) == "paid"
    assert world.status(refunding.out_trade_no, a) == "paid"  # its refund is in flight
    assert a.account(escrow) == 2_000 + 500
    assert a.account(payable) == payable_before + 1_000 - 6  # 60 bps fee
    assert world.life.confirm_due() == 0  # repeatable, nothing twice
    world.clock.advance(3_600)
    assert world.life.confirm_due() == 1
    assert world.status(second.out_trade_no, a) == "confirmed"
    assert world.status(instant.out_trade_no, a) == "paid"  # instant trades never confirm
    assert a.account(escrow) == 500
    assert trial_balance(core.db).ok


# -- the merchant settings ------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        {"trade_expiry_s": 59},
        {"trade_expiry_s": 30 * 86_400 + 1},
        {"trade_expiry_s": True},
        {"trade_expiry_s": 90.0},
        {"confirm_hold_s": -1},
        {"confirm_hold_s": 90 * 86_400 + 1},
        {"pay_without_coupon": "yes"},
        {},
        {"trade_expiry_s": 900, "confirm_hold_s": -5},  # one bad value: nothing written
    ],
)
def test_configure_refuses_values_out_of_range_and_writes_nothing(world, kw):
    merchants, mid = world.core.merchants, world.a.mid
    before = merchants.get(mid)
    with pytest.raises(InvalidRequest) as err:
        merchants.configure(mid, **kw)
    assert err.value.http_status // 100 == 4
    assert merchants.get(mid) == before
    assert (before.trade_expiry_s, before.confirm_hold_s, before.pay_without_coupon) == (
        1800,
        604_800,
        False,
    )


def test_configure_sets_each_value_and_keeps_the_others(world):
    merchants, mid = world.core.merchants, world.a.mid
    info = merchants.configure(mid, trade_expiry_s=60, pay_without_coupon=True)
    assert (info.trade_expiry_s, info.confirm_hold_s, info.pay_without_coupon) == (
        60,
        604_800,
        True,
    )
    info = merchants.configure(mid, confirm_hold_s=0)
    assert (info.trade_expiry_s, info.confirm_hold_s, info.pay_without_coupon) == (60, 0, True)
    info = merchants.configure(mid, trade_expiry_s=30 * 86_400, confirm_hold_s=90 * 86_400)
    assert (info.trade_expiry_s, info.confirm_hold_s) == (30 * 86_400, 90 * 86_400)
    with pytest.raises(UnknownMerchant):
        merchants.configure("NOPE", trade_expiry_s=900)


def test_cli_configures_a_merchant_with_an_audit_row(sqlite_url, tmp_path, monkeypatch, capsys):
    from console.audit import recent
    from runtime.cli import main

    monkeypatch.setenv("PAYWATCH_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PAYWATCH_VAR_DIR", str(tmp_path / "var"))
    core = PayCore(Database(sqlite_url))
    core.merchants.cache_ttl = 0
    mid = Shop(core).mid
    argv = ["--trade-expiry", "15m", "--confirm-hold", "86400", "--pay-without-coupon", "yes"]
    assert main(["merchant", "configure", mid, *argv, "--actor", "ann"]) == 0
    out = capsys.readouterr().out
    assert "trade_expiry_s=900 confirm_hold_s=86400 pay_without_coupon=yes" in out
    info = core.merchants.get(mid)
    assert (info.trade_expiry_s, info.confirm_hold_s, info.pay_without_coupon) == (900, 86400, True)
    assert main(["merchant", "configure", mid, "--trade-expiry", "30s", "--actor", "ann"]) == 2
    assert "invalid_request" in capsys.readouterr().err
    assert core.merchants.get(mid).trade_expiry_s == 900
    with pytest.raises(SystemExit):
        main(["merchant", "configure", mid, "--pay-without-coupon", "maybe"])
    assert main(["merchant", "show", mid]) == 0
    assert "trade_expiry_s 900" in capsys.readouterr().out
    audit = recent(core.db.engine, action="merchant.configure")
    assert [r["detail"]["ok"] for r in audit] == [False, True]
    assert audit[1]["detail"]["trade_expiry_s"] == 900 and audit[1]["actor"] == "ann"
    core.close()


# -- the worker runs both jobs --------------------------------------------------------------
def test_the_worker_runs_trade_expiry_and_auto_confirm_as_singleton_jobs(pg_url):
    from datetime import timedelta

    from runtime.bootstrap import build_platform
    from runtime.settings import Settings
    from runtime.worker import worker_jobs

    platform = build_platform(Settings(database_url=pg_url), channels=False, role="worker")
    try:
        core = platform.paycore
        shop = Shop(core)
        shop.fund("u1", 1_000)
        old, young = shop.trade(amount=100), shop.trade(amount=100)
        held = shop.trade("guaranteed", 500)
        assert _balance_pay(shop, held).status == "success"
        core.merchants.configure(shop.mid, confirm_hold_s=0)
        with core.db.session() as s:  # made an hour ago
            s.execute(
                update(Trade)
                .where(Trade.out_trade_no == old.out_trade_no, Trade.merchant_id == shop.mid)
                .values(created_at=datetime.now(UTC) - timedelta(hours=1))
            )
        jobs, closables = worker_jobs(platform, "lifecycle-test")
        for c in closables:
            c.close()
        by_name = {name: (fn, every) for fn, every, name in jobs}
        assert (by_name["trade_expiry"][1], by_name["auto_confirm"][1]) == (30.0, 60.0)
        assert by_name["trade_expiry"][0]() == 1
        assert by_name["auto_confirm"][0]() == 1
        assert core.trades.get(shop.mid, old.out_trade_no).status == "closed"
        assert core.trades.get(shop.mid, young.out_trade_no).status == "created"
        assert core.trades.get(shop.mid, held.out_trade_no).status == "confirmed"
        assert trial_balance(core.db).ok
    finally:
        platform.close()
