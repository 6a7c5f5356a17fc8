"""Attack classes beyond the issue's list: confused deputies across trade types, refunds
of refunds, transfers to self, currency games, replays across pay orgs and merchants,
and races between confirm, refund and withdraw. Each asserts the clean refusal and
that the books did not move."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from hostile_stack import hostile  # noqa: F401 - the fixture

from paycore.ledger import (
    balance_of,
    channel_clearing,
    fee_income,
    guarantee_escrow,
    merchant_payable,
    trial_balance,
    user_balance,
)

CNY = "CNY"


def bal(stack, ref) -> int:
    with stack.core.db.session() as s:
        return balance_of(s, ref)


def code(r) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def paid_by_channel(m, no: str, amount: int, trade_type: str = "instant") -> None:
    assert m.trade(no, amount, trade_type).status_code == 200
    assert m.pay(no, [{"tool": "channel", "amount": amount}]).status_code == 200
    assert m.wait_for(no, lambda d: d["trade"]["status"] == "paid")["trade"]["status"] == "paid"


def test_trade_types_cannot_stand_in_for_each_other(hostile):
    """Confused deputy: every operation refuses the trade types it is not for."""
    a = hostile.a
    a.fund("u1", 5_000, "fund-1")
    paid_by_channel(a, "buy-1", 1_000)
    before = hostile.counts()
    # a recharge cannot be refunded (it would pull the user's money back to the merchant)
    assert code(a.refund("fund-1", "rf-fund", 100)) == (409, "wrong_state")
    # an instant trade has no escrow to confirm; a paid trade cannot be closed
    assert code(a.http.post("/v1/trades/buy-1/confirm")) == (409, "wrong_state")
    assert code(a.http.post("/v1/trades/buy-1/close")) == (409, "wrong_state")
    # a paid trade cannot be paid again, not even with another pay number
    r = a.pay("buy-1", [{"tool": "balance", "amount": 1_000}], out_pay_no="again-1")
    assert code(r) == (409, "wrong_state")
    assert hostile.counts() == before
    assert bal(hostile, user_balance(a.mid, "u1", CNY)) == 5_000


def test_a_refund_cannot_be_refunded_or_paid(hostile):
    a = hostile.a
    paid_by_channel(a, "buy-1", 1_000)
    assert a.refund("buy-1", "rf-1", 400).status_code == 200
    a.wait_for("rf-1", lambda d: d["trade"]["status"] == "paid")
    before = hostile.counts()
    assert code(a.refund("rf-1", "rf-of-rf", 100)) == (409, "wrong_state")
    assert code(a.pay("rf-1", [{"tool": "balance", "amount": 400}])) == (409, "wrong_state")
    # a refund trade created directly must point at a refundable trade of this merchant
    r = a.trade("rf-direct", 100, "refund", origin_out_trade_no="rf-1")
    assert code(r) == (409, "wrong_state")
    assert hostile.counts() == before


def test_transfers_to_self_and_across_currencies_move_nothing(hostile):
    a = hostile.a
    a.fund("u1", 5_000, "fund-1")
    r = a.trade("self-1", 1_000, "transfer", user="u1", payee_user_id="u1")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    # a CNY balance does not pay a USD trade: each currency is its own account
    assert a.trade("usd-1", 1_000, currency="USD").status_code == 200
    assert code(a.pay("usd-1", [{"tool": "balance", "amount": 1_000}])) == (
        409,
        "insufficient_balance",
    )
    # a refund is in its trade's currency, whatever the body says
    paid_by_channel(a, "buy-1", 1_000)
    r = a.refund("buy-1", "rf-1", 1_000, currency="USD")
    assert r.status_code in (200, 422)
    if r.status_code == 200:
        assert r.json()["trade"]["currency"] == CNY
    assert bal(hostile, user_balance(a.mid, "u1", CNY)) == 5_000
    assert bal(hostile, user_balance(a.mid, "u1", "USD")) == 0
    assert trial_balance(hostile.core.db).ok


def test_a_result_replayed_through_another_pay_org_settles_nothing(hostile):
    a = hostile.a
    hostile.knobs("SANDBOX_A", callback_delay_ms=600_000)
    assert a.trade("p-1", 1_000).status_code == 200
    item = a.pay("p-1", [{"tool": "channel", "amount": 1_000}]).json()["items"][0]
    body = {
        "channel_txn_no": item["channel_txn_no"],
        "status": "success",
        "amount": 1_000,
        "currency": CNY,
    }
    # B's channel signs a result for A's item: not B's item, so nothing is found
    r = hostile.callback("SANDBOX_B", body | {"pay_org_no": "SANDBOX_B"})
    assert r.status_code == 404
    # a body naming SANDBOX_A sent through SANDBOX_B's route with B's signature
    r = hostile.callback("SANDBOX_B", body | {"pay_org_no": "SANDBOX_A"})
    assert r.status_code == 401
    assert a.detail("p-1")["trade"]["status"] == "paying"
    assert bal(hostile, channel_clearing("SANDBOX_B", CNY)) == 0
    # the right channel settles it once
    assert (
        hostile.callback("SANDBOX_A", body | {"pay_org_no": "SANDBOX_A"}).json()["result"]
        == "settled"
    )


def test_another_merchants_trade_numbers_are_not_there(hostile):
    a, b = hostile.a, hostile.b
    paid_by_channel(a, "buy-1", 1_000)
    before = hostile.counts()
    assert code(b.http.get("/v1/trades/buy-1")) == (404, "trade_not_found")
    assert code(b.refund("buy-1", "rf-b", 100)) == (404, "trade_not_found")
    assert code(b.http.post("/v1/trades/buy-1/close")) == (404, "trade_not_found")
    assert code(b.pay("buy-1", [{"tool": "balance", "amount": 1_000}])) == (404, "trade_not_found")
    assert hostile.counts() == before
    assert bal(hostile, merchant_payable(b.mid, CNY)) == 0


def test_confirm_and_refunds_racing_on_a_guaranteed_trade_never_pay_out_twice(hostile):
    a = hostile.a
    paid_by_channel(a, "g-1", 10_000, "guaranteed")

    def confirm(_):
        return a.http.post("/v1/trades/g-1/confirm").status_code

    def refund(i):
        return a.refund("g-1", f"rf-{i}", 3_000).status_code

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(confirm, i) for i in range(3)]
        futures += [pool.submit(refund, i) for i in range(5)]
        codes = [f.result() for f in futures]
    assert all(c in (200, 409) for c in codes), codes
    for i in range(5):
        a.wait_for(f"rf-{i}", lambda d: d.get("trade", {}).get("status") != "paying", 10)
    trade = a.detail("g-1")["trade"]
    assert trade["refunded_amount"] <= 10_000 and trade["refunded_amount"] % 3_000 == 0
    kept = 10_000 - trade["refunded_amount"]
    held = bal(hostile, guarantee_escrow(a.mid, CNY)) + bal(hostile, merchant_payable(a.mid, CNY))
    fee = bal(hostile, fee_income(CNY))
    assert held + fee == kept
    assert trial_balance(hostile.core.db).ok


def test_concurrent_withdraws_never_hold_more_than_the_balance(hostile):
    a = hostile.a
    a.fund("u1", 10_000, "fund-1")
    hostile.knobs("SANDBOX_A", callback_delay_ms=600_000)
    for i in range(4):
        assert a.trade(f"wd-{i}", 6_000, "withdraw").status_code == 200

    def withdraw(i):
        return a.pay(f"wd-{i}", [{"tool": "channel", "amount": 6_000}]).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(withdraw, range(4)))
    assert codes == [200, 409, 409, 409], codes
    assert bal(hostile, user_balance(a.mid, "u1", CNY)) == 4_000
    assert trial_balance(hostile.core.db).ok
