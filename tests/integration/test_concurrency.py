"""Concurrency claims, proven with real threads against each backend."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from paycore import ChannelRequest, CreateTrade, PayRequest, PayTool, RefundRequest
from paycore.db.schema import PayOrder
from paycore.errors import Busy, PayCoreError, RefundExceedsPaid, WrongState
from paycore.ledger import merchant_payable, trial_balance


def _race(n: int, fn):
    """Run ``fn(i)`` in ``n`` threads released at once; returns results or exceptions."""
    barrier = threading.Barrier(n)

    def go(i):
        barrier.wait()
        try:
            return fn(i)
        except PayCoreError as e:
            return e

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def test_fifty_threads_paying_one_trade_pay_once(shop, core):
    shop.fund("u1", 5_000)
    t = shop.trade(amount=1_000)
    # half replay one request (idempotent), half try their own pay numbers (must be refused)
    results = _race(
        50,
        lambda i: core.payments.pay(
            shop.mid,
            PayRequest(
                t.out_trade_no,
                (PayTool("balance", 1_000),),
                out_pay_no="same" if i % 2 else f"own-{i}",
            ),
        ),
    )
    wins = [r for r in results if not isinstance(r, Exception)]
    errors = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(e, WrongState | Busy) for e in errors), errors
    assert {w.id for w in wins} and len({w.id for w in wins}) == 1
    assert all(w.status == "success" for w in wins)
    with core.db.session() as s:
        assert s.execute(select(func.count()).select_from(PayOrder)).scalar_one() == 2  # + fund
    assert shop.balance("u1") == 4_000
    assert shop.account(merchant_payable(shop.mid, "CNY")) == 1_000 - 6
    assert trial_balance(core.db).ok


def test_concurrent_channel_pays_reach_the_channel_once(shop, core):
    sent: list[ChannelRequest] = []
    core.channel = type("Recorder", (), {"submit": lambda self, r: sent.append(r)})()
    t = shop.trade(amount=700)
    results = _race(
        50,
        lambda i: core.payments.pay(
            shop.mid, PayRequest(t.out_trade_no, (PayTool("channel", 700),), out_pay_no=f"p{i}")
        ),
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert len(sent) == 1 and sent[0].amount == 700


def test_twenty_concurrent_refunds_never_exceed_the_paid_amount(shop, core):
    shop.fund("u1", 10_000)
    t = shop.trade(amount=10_000)
    core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("balance", 10_000),)))
    amounts = [700 + 37 * i for i in range(20)]  # sums to 21,030 > 10,000
    results = _race(
        20,
        lambda i: core.refunds.refund(shop.mid, RefundRequest(t.out_trade_no, f"r{i}", amounts[i])),
    )
    done = [amounts[i] for i, r in enumerate(results) if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(e, RefundExceedsPaid | Busy) for e in refused), refused
    trade = core.trades.get(shop.mid, t.out_trade_no)
    assert trade.refunded_amount == sum(done) <= 10_000
    assert shop.balance("u1") == sum(done)
    assert sum(done) > 10_000 - max(amounts)  # the refunds really did fill it up
    assert trial_balance(core.db).ok


def test_concurrent_create_with_same_number_creates_one_trade(shop, core, counts):
    req = CreateTrade("same", "instant", 100, "CNY", "u1", "goods", "physical", "SANDBOX_A")
    results = _race(20, lambda i: core.trades.create(shop.mid, req))
    assert len({r.id for r in results}) == 1
    assert counts(core.db)["trades"] == 1


def test_ten_concurrent_identical_callbacks_settle_once(shop, core):
    t = shop.trade(amount=900)
    po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("channel", 900),)))
    outcomes = _race(10, lambda i: shop.settle(po.items[0]))
    assert sorted(outcomes) == ["duplicate"] * 9 + ["settled"]
    assert shop.account(merchant_payable(shop.mid, "CNY")) == 900 - 5
    assert trial_balance(core.db).ok


@pytest.mark.parametrize("n", [8])
def test_hot_account_postings_from_many_threads_stay_consistent(shop, core, n):
    shop.fund("payer", 100 * n * 10)
    trades = [shop.trade(amount=100, user="payer") for _ in range(n * 10)]

    def work(i):
        for t in trades[i::n]:
            core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("balance", 100),)))

    assert not [r for r in _race(n, work) if isinstance(r, Exception)]
    from paycore.ledger import drain_pending

    drain_pending(core.db, core.ids)
    report = trial_balance(core.db)
    assert report.ok and report.pending_postings == 0
    assert shop.balance("payer") == 0
