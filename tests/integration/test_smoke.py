from paycore import CreateTrade, PayRequest, PayTool
from paycore.ledger import trial_balance


def test_balance_pay(core):
    ob = core.merchants.onboard("shop", products=[("goods", "physical")], pay_orgs=["SANDBOX_A"])
    mid = ob.merchant.merchant_id
    core.trades.create(mid, CreateTrade("r1", "recharge", 1000, "CNY", "u1", "goods", "physical", "SANDBOX_A"))
    po = core.payments.pay(mid, PayRequest("r1", (PayTool("channel", 1000),)))
    assert po.status == "processing"
    from paycore import ChannelResult
    item = po.items[0]
    assert core.payments.on_channel_result(ChannelResult("SANDBOX_A", item.channel_txn_no, "success", 1000, "CNY")) == "settled"
    core.trades.create(mid, CreateTrade("t1", "instant", 300, "CNY", "u1", "goods", "physical", "SANDBOX_A"))
    po = core.payments.pay(mid, PayRequest("t1", (PayTool("balance", 300),)))
    assert po.status == "success"
    d = core.trades.detail(mid, "t1")
    assert d.trade.status == "paid"
    assert trial_balance(core.db).ok
