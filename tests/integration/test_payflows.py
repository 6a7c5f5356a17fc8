"""End-to-end flows of the service layer on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from paycore import ChannelResult, CreateTrade, PayRequest, PayTool, RefundRequest
from paycore.db.schema import Merchant, PayException
from paycore.errors import (
    AuthenticationFailed,
    ContextNotGranted,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidPayTools,
    PayOrderNotFound,
    RefundExceedsPaid,
    TradeNotFound,
    UnknownMerchant,
    WrongState,
)
from paycore.ids import id_timestamp_ms
from paycore.ledger import (
    channel_clearing,
    fee_income,
    guarantee_escrow,
    merchant_payable,
    platform_transit,
    trial_balance,
)


def pay(shop, out_trade_no, *tools, **kw):
    return shop.core.payments.pay(
        shop.mid, PayRequest(out_trade_no, tuple(PayTool(t, a) for t, a in tools), **kw)
    )


# -- merchants -----------------------------------------------------------------------------
def test_token_is_shown_once_and_stored_hashed(shop, core):
    with core.db.session() as s:
        row = s.get(Merchant, shop.mid)
    assert shop.token not in (row.token_hash, row.token_prefix)
    assert len(row.token_hash) == 64
    assert core.merchants.authenticate(shop.token).merchant_id == shop.mid
    assert "pwk_" not in repr(core.merchants.onboard("x", products=[("a", "b")], pay_orgs=["P"]))
    for bad in (None, "", "pwk_wrong", shop.token + "x", "Bearer " + shop.token):
        with pytest.raises(AuthenticationFailed):
            core.merchants.authenticate(bad)
    # the API's event-loop fast path answers only what authenticate() has cached
    fresh = core.merchants.onboard("y", products=[("a", "b")], pay_orgs=["P"])
    assert core.merchants.cached_authentication(fresh.token) is None  # not looked up yet
    assert core.merchants.cached_authentication(shop.token).merchant_id == shop.mid
    for bad in ("", "pwk_wrong", shop.token + "x"):
        assert core.merchants.cached_authentication(bad) is None
    core.merchants.cache_ttl = 0  # what authenticate() caches from now on is stale at once
    assert core.merchants.authenticate(fresh.token).name == "y"
    assert core.merchants.cached_authentication(fresh.token) is None


def test_context_outside_grant_is_refused_and_writes_nothing(shop, core, counts):
    before = counts(core.db)
    for kw in ({"order_type": "loans"}, {"sub_type": "other"}, {"pay_org_no": "SANDBOX_Z"}):
        args = {"order_type": "goods", "sub_type": "physical", "pay_org_no": "SANDBOX_A"} | kw
        with pytest.raises(ContextNotGranted):
            core.trades.create(shop.mid, CreateTrade("x1", "instant", 100, "CNY", "u1", **args))
    with pytest.raises(UnknownMerchant):
        core.trades.create(
            "M404", CreateTrade("x1", "instant", 100, "CNY", "u1", "goods", "physical", "SANDBOX_A")
        )
    t = shop.trade(amount=100)
    with pytest.raises(ContextNotGranted):  # paying through a pay org outside the grant
        pay(shop, t.out_trade_no, ("channel", 100), pay_org_no="SANDBOX_Z")
    after = counts(core.db)
    assert after["trades"] == before["trades"] + 1 and after["pay_orders"] == 0


# -- trade core ----------------------------------------------------------------------------
def test_create_is_idempotent_and_conflicts_on_a_different_body(shop, core, counts):
    first = shop.trade(amount=500, out_trade_no="o-1")
    again = shop.trade(amount=500, out_trade_no="o-1")
    assert again == first
    n = counts(core.db)["trades"]
    with pytest.raises(IdempotencyConflict):
        shop.trade(amount=501, out_trade_no="o-1")
    assert counts(core.db)["trades"] == n == 1


def test_ids_are_time_ordered_and_orders_trace_to_their_origin(shop, core):
    a = shop.trade(amount=100, out_trade_no="root")
    b = shop.trade(
        "transfer", 50, payee_user_id="u2", out_trade_no="child", origin_out_trade_no="root"
    )
    c = shop.trade("withdraw", 10, out_trade_no="grandchild", origin_out_trade_no="child")
    assert a.id < b.id < c.id and 0 < a.id < 2**63
    assert abs(id_timestamp_ms(a.id) - a.created_at.timestamp() * 1000) < 5_000
    assert c.root_trade_id == a.id and c.origin_trade_id == b.id
    chain = core.trades.detail(shop.mid, "grandchild").origin_chain
    assert [t.out_trade_no for t in chain] == ["child", "root"]
    with pytest.raises(TradeNotFound):
        shop.trade(amount=1, origin_out_trade_no="nope")


# -- the six trade types -------------------------------------------------------------------
def test_instant_balance_pay_moves_money_once_and_charges_the_fee(shop, core):
    shop.fund("u1", 10_000)
    t = shop.trade(amount=10_000)
    po = pay(shop, t.out_trade_no, ("balance", 10_000))
    assert po.status == "success" and [i.status for i in po.items] == ["success"]
    assert shop.balance("u1") == 0
    assert shop.account(merchant_payable(shop.mid, "CNY")) == 9_940  # 60 bps fee
    assert shop.account(fee_income("CNY")) == 60
    assert core.trades.get(shop.mid, t.out_trade_no).status == "paid"
    assert pay(shop, t.out_trade_no, ("balance", 10_000)) == po  # replay: same result
    with pytest.raises(IdempotencyConflict):
        pay(shop, t.out_trade_no, ("channel", 10_000))
    assert trial_balance(core.db).ok


def test_each_merchant_is_charged_its_own_fee(core):
    """Completion reads the fee with the trade's compare-and-set: the merchant of that
    trade, not whichever merchant row comes first."""
    from conftest import Shop

    cheap, dear = Shop(core, fee_bps=10), Shop(core, fee_bps=250)
    for shop in (dear, cheap, dear):  # the first merchant onboarded is not the last to pay
        t = shop.trade(amount=10_000)
        po = pay(shop, t.out_trade_no, ("channel", 10_000))
        assert shop.settle(po.items[0]) == "settled"
    assert cheap.account(merchant_payable(cheap.mid, "CNY")) == 9_990
    assert dear.account(merchant_payable(dear.mid, "CNY")) == 2 * 9_750
    assert core.trades.get(cheap.mid, "t1").paid_amount == 10_000
    assert trial_balance(core.db).ok


def test_combined_balance_and_channel_payment(shop, core):
    shop.fund("u1", 300)
    t = shop.trade(amount=1_000)
    po = pay(shop, t.out_trade_no, ("balance", 300), ("channel", 700))
    assert po.status == "processing"
    assert [i.status for i in po.items] == ["success", "processing"]
    assert shop.settle(po.items[1]) == "settled"
    assert shop.settle(po.items[1]) == "duplicate"  # repeated callback: ignored
    detail = core.trades.detail(shop.mid, t.out_trade_no)
    assert detail.trade.status == "paid" and detail.pay_orders[0].status == "success"
    assert shop.account(platform_transit("CNY")) == 0
    assert shop.account(channel_clearing("SANDBOX_A", "CNY")) == 300 + 700
    assert trial_balance(core.db).ok


def test_partial_payment_is_classified_for_a_full_refund(shop, core):
    shop.fund("u1", 300)
    t = shop.trade(amount=1_000)
    po = pay(shop, t.out_trade_no, ("balance", 300), ("channel", 700))
    assert shop.settle(po.items[1], "failed") == "failed"
    assert core.trades.get(shop.mid, t.out_trade_no).status == "created"  # payer may retry
    with core.db.session() as s:
        rows = s.execute(select(PayException)).scalars().all()
    assert [(r.kind, r.amount_taken, r.resolution) for r in rows] == [
        ("partial_payment", 300, "full_refund")
    ]
    assert shop.account(platform_transit("CNY")) == 300  # held until compensation refunds it
    assert trial_balance(core.db).ok


def test_amount_mismatch_never_settles_at_the_wrong_amount(shop, core):
    t = shop.trade(amount=1_000)
    po = pay(shop, t.out_trade_no, ("channel", 1_000))
    assert shop.settle(po.items[0], amount=999) == "exception"
    detail = core.trades.detail(shop.mid, t.out_trade_no)
    assert detail.trade.status == "created" and detail.trade.paid_amount == 0
    assert detail.pay_orders[0].status == "failed"
    assert shop.account(merchant_payable(shop.mid, "CNY")) == 0
    with core.db.session() as s:
        row = s.execute(select(PayException)).scalar_one()
    assert (row.kind, row.amount_taken) == ("amount_mismatch", 999)
    assert trial_balance(core.db).ok


def test_late_success_after_another_order_paid_is_a_duplicate_payment(shop, core):
    t = shop.trade(amount=500)
    first = pay(shop, t.out_trade_no, ("channel", 500), out_pay_no="p1")
    shop.settle(first.items[0], "failed")
    second = pay(shop, t.out_trade_no, ("channel", 500), out_pay_no="p2")
    shop.settle(second.items[0])
    assert shop.settle(first.items[0]) == "exception"  # the channel took money for p1 after all
    with core.db.session() as s:
        row = s.execute(select(PayException)).scalar_one()
    assert (row.kind, row.amount_taken) == ("duplicate_payment", 500)
    assert core.trades.get(shop.mid, t.out_trade_no).paid_amount == 500
    assert trial_balance(core.db).ok


def test_unknown_channel_transaction_is_refused(shop, core):
    with pytest.raises(PayOrderNotFound):
        core.payments.on_channel_result(ChannelResult("SANDBOX_A", "404", "success", 1, "CNY"))


def test_guaranteed_trade_is_held_until_confirm(shop, core):
    shop.fund("u1", 2_000)
    t = shop.trade("guaranteed", 2_000)
    pay(shop, t.out_trade_no, ("balance", 2_000))
    assert shop.account(guarantee_escrow(shop.mid, "CNY")) == 2_000
    assert shop.account(merchant_payable(shop.mid, "CNY")) == 0
    core.refunds.refund(shop.mid, RefundRequest(t.out_trade_no, "r1", 500))
    assert shop.account(guarantee_escrow(shop.mid, "CNY")) == 1_500
    confirmed = core.trades.confirm(shop.mid, t.out_trade_no)
    assert confirmed.status == "confirmed"
    assert core.trades.confirm(shop.mid, t.out_trade_no).status == "confirmed"  # repeatable
    assert shop.account(guarantee_escrow(shop.mid, "CNY")) == 0
    assert shop.account(merchant_payable(shop.mid, "CNY")) == 1_500 - 9
    assert shop.balance("u1") == 500
    instant = shop.trade(amount=1)
    with pytest.raises(WrongState):
        core.trades.confirm(shop.mid, instant.out_trade_no)
    assert trial_balance(core.db).ok


def test_transfer_and_withdraw(shop, core):
    shop.fund("u1", 1_000)
    t = shop.trade("transfer", 400, payee_user_id="u2")
    assert pay(shop, t.out_trade_no, ("balance", 400)).status == "success"
    assert (shop.balance("u1"), shop.balance("u2")) == (600, 400)
    w = shop.trade("withdraw", 400, user="u2")
    po = pay(shop, w.out_trade_no, ("channel", 400))
    assert shop.balance("u2") == 0  # held while the payout runs
    shop.settle(po.items[0], "failed")
    assert shop.balance("u2") == 400  # released
    po = pay(shop, w.out_trade_no, ("channel", 400), out_pay_no="w-2")
    shop.settle(po.items[0])
    assert shop.balance("u2") == 0
    assert core.trades.get(shop.mid, w.out_trade_no).status == "paid"
    assert trial_balance(core.db).ok


def test_wrong_tools_and_insufficient_balance_write_nothing(shop, core, counts):
    shop.fund("u1", 100)
    t = shop.trade(amount=1_000)
    before = counts(core.db)
    cases = [
        (InvalidPayTools, [("balance", 500)]),  # does not add up
        (InvalidPayTools, [("balance", 500), ("balance", 500)]),  # same tool twice
        (InsufficientBalance, [("balance", 1_000)]),
    ]
    for error, tools in cases:
        with pytest.raises(error):
            pay(shop, t.out_trade_no, *tools)
    r = shop.trade("recharge", 100)
    with pytest.raises(InvalidPayTools):
        pay(shop, r.out_trade_no, ("balance", 100))
    assert counts(core.db) | {"trades": 0} == before | {"trades": 0}
    assert core.trades.get(shop.mid, t.out_trade_no).status == "created"


def test_refunds_partial_full_and_never_past_paid(shop, core):
    t = shop.trade(amount=1_000)
    po = pay(shop, t.out_trade_no, ("channel", 1_000))
    shop.settle(po.items[0])
    r1 = core.refunds.refund(shop.mid, RefundRequest(t.out_trade_no, "r1", 400))
    assert r1.trade.trade_type == "refund" and r1.trade.origin_trade_id == t.id
    assert r1.pay_orders[0].status == "processing"
    assert shop.settle(r1.pay_orders[0].items[0]) == "settled"
    assert (
        core.refunds.refund(shop.mid, RefundRequest(t.out_trade_no, "r1", 400)).trade.id
        == r1.trade.id
    )
    with pytest.raises(IdempotencyConflict):
        core.refunds.refund(shop.mid, RefundRequest(t.out_trade_no, "r1", 401))
    with pytest.raises(RefundExceedsPaid):
        core.refunds.refund(shop.mid, RefundRequest(t.out_trade_no, "r2", 601))
    r2 = core.refunds.refund(shop.mid, RefundRequest(t.out_trade_no, "r2", 600))
    shop.settle(r2.pay_orders[0].items[0], "failed")  # the channel refuses: money goes back
    assert core.trades.get(shop.mid, t.out_trade_no).refunded_amount == 400
    r3 = core.refunds.refund(shop.mid, RefundRequest(t.out_trade_no, "r3", 600))
    shop.settle(r3.pay_orders[0].items[0])
    detail = core.trades.detail(shop.mid, t.out_trade_no)
    assert detail.trade.refunded_amount == 1_000
    assert [r.trade.status for r in detail.refunds] == ["paid", "closed", "paid"]
    assert shop.account(channel_clearing("SANDBOX_A", "CNY")) == 0
    assert trial_balance(core.db).ok
    unpaid = shop.trade(amount=10)
    with pytest.raises(WrongState):
        core.refunds.refund(shop.mid, RefundRequest(unpaid.out_trade_no, "r4", 10))


def test_refund_trade_type_through_create(shop, core):
    shop.fund("u1", 100)
    t = shop.trade(amount=100)
    pay(shop, t.out_trade_no, ("balance", 100))
    rt = shop.trade("refund", 100, out_trade_no="rf-1", origin_out_trade_no=t.out_trade_no)
    assert rt.trade_type == "refund" and rt.status == "paid"
    assert shop.balance("u1") == 100
    assert (
        shop.trade("refund", 100, out_trade_no="rf-1", origin_out_trade_no=t.out_trade_no).id
        == rt.id
    )


def test_closed_trade_cannot_be_paid(shop, core):
    t = shop.trade(amount=10)
    assert core.trades.close(shop.mid, t.out_trade_no).status == "closed"
    with pytest.raises(WrongState):
        pay(shop, t.out_trade_no, ("channel", 10))
