"""The notification outbox is written in the same transaction as the state change."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from paycore import PayRequest, PayTool, RefundRequest
from paycore.db.schema import Notification
from paycore.errors import InsufficientBalance
from paycore.notify import add_notification

HOOK = "http://127.0.0.1:9/hooks/paywatch"


@pytest.fixture
def nshop(core):
    """A shop whose merchant has a notify URL (the ``shop`` fixture's has none)."""
    from conftest import Shop

    shop = Shop(core)
    ob = core.merchants.onboard(
        "notified shop",
        products=[("goods", "physical")],
        pay_orgs=[Shop.ORG],
        fee_bps=60,
        notify_url=HOOK,
    )
    shop.mid = ob.merchant.merchant_id
    return shop


def rows(core, trade_id=None) -> list[Notification]:
    with core.db.session() as s:
        stmt = sa.select(Notification).order_by(Notification.created_at, Notification.id)
        if trade_id is not None:
            stmt = stmt.where(Notification.trade_id == trade_id)
        return list(s.execute(stmt).scalars())


def pay(shop, trade, *tools):
    return shop.core.payments.pay(shop.mid, PayRequest(trade.out_trade_no, tuple(tools)))


def test_paid_trade_has_exactly_one_trade_paid_row(nshop):
    nshop.fund("u1", 5_000)  # a recharge trade, paid through the channel
    t = nshop.trade("instant", 1_000)
    po = pay(nshop, t, PayTool("balance", 1_000))
    assert po.status == "success"
    [n] = rows(nshop.core, t.id)
    assert (n.event_type, n.status, n.url, n.merchant_id) == (
        "trade.paid",
        "pending",
        HOOK,
        nshop.mid,
    )
    assert n.event_id.startswith("evt_") and n.attempts == 0
    assert n.next_attempt_at == n.created_at  # due at once
    data = json.loads(n.payload)
    assert data["out_trade_no"] == t.out_trade_no and data["trade_status"] == "paid"
    assert data["amount"] == 1_000 and data["paid_amount"] == 1_000
    assert data["pay_order_id"] == str(po.id) and data["pay_status"] == "success"
    # the recharge got its own event; a repeated callback adds none
    assert [r.event_type for r in rows(nshop.core)] == ["trade.paid", "trade.paid"]
    t2 = nshop.trade("instant", 700)
    po2 = pay(nshop, t2, PayTool("channel", 700))
    assert rows(nshop.core, t2.id) == []  # processing: nothing to tell yet
    assert nshop.settle(po2.items[0]) == "settled"
    assert nshop.settle(po2.items[0]) == "duplicate"
    assert [r.event_type for r in rows(nshop.core, t2.id)] == ["trade.paid"]


def test_rolled_back_change_writes_no_notification(nshop, counts):
    nshop.fund("u2", 100)
    before = counts(nshop.core.db)
    t = nshop.trade("instant", 1_000, user="u2")
    with pytest.raises(InsufficientBalance):
        pay(nshop, t, PayTool("balance", 1_000))  # _complete ran, then the commit failed
    assert rows(nshop.core, t.id) == []
    assert counts(nshop.core.db)["notifications"] == before["notifications"]


def test_failed_pay_and_refunds_are_notified(nshop):
    t = nshop.trade("instant", 900)
    po = pay(nshop, t, PayTool("channel", 900))
    assert nshop.settle(po.items[0], "failed") == "failed"
    [n] = rows(nshop.core, t.id)
    data = json.loads(n.payload)
    assert n.event_type == "trade.pay_failed"
    assert (data["pay_status"], data["error_code"], data["trade_status"]) == (
        "failed",
        "channel_failed",
        "created",
    )

    t = nshop.trade("instant", 2_000)
    po = pay(nshop, t, PayTool("channel", 2_000))
    nshop.settle(po.items[0])
    core = nshop.core
    ok = core.refunds.refund(nshop.mid, RefundRequest(t.out_trade_no, "rf-ok", 500))
    refused = core.refunds.refund(nshop.mid, RefundRequest(t.out_trade_no, "rf-no", 300))
    assert rows(core, ok.trade.id) == []  # the channel has not answered yet
    nshop.settle(ok.pay_orders[0].items[0])
    nshop.settle(refused.pay_orders[0].items[0], "failed")
    [a] = rows(core, ok.trade.id)
    [b] = rows(core, refused.trade.id)
    assert (a.event_type, b.event_type) == ("refund.succeeded", "refund.failed")
    da, db = json.loads(a.payload), json.loads(b.payload)
    assert (da["out_refund_no"], da["origin_out_trade_no"], da["amount"]) == (
        "rf-ok",
        t.out_trade_no,
        500,
    )
    # the first refund settled while the second was still held; the refusal released it
    assert da["origin_refunded_amount"] == 800 and db["origin_refunded_amount"] == 500
    assert (db["trade_status"], db["error_code"]) == ("closed", "channel_refused")


def test_merchant_without_notify_url_gets_no_rows(shop):
    shop.fund("u1", 1_000)
    t = shop.trade("instant", 400)
    shop.core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("balance", 400),)))
    assert rows(shop.core) == []
    with shop.core.db.session() as s:
        assert (
            add_notification(
                s,
                shop.core,
                merchant_id=shop.mid,
                event_type="trade.paid",
                trade_id=t.id,
                payload={},
                url=None,
            )
            is None
        )
        with pytest.raises(ValueError):
            add_notification(
                s,
                shop.core,
                merchant_id=shop.mid,
                event_type="trade.bogus",
                trade_id=t.id,
                payload={},
                url=HOOK,
            )
