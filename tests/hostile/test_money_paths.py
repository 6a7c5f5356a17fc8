"""Attacks on the money paths: balances that belong to another merchant, channel results
that do not match their item, and a lock backend failing after the commit.

Each test is what a hostile merchant or a faulty channel would send over real HTTP; each
failed on the code before the fix (the note of the commit that added it says how).
"""

from __future__ import annotations

import sqlalchemy as sa
from hostile_stack import hostile  # noqa: F401 - the fixture

from paycore.db.schema import JournalEntry, PayException, PayItem
from paycore.ledger import (
    balance_of,
    channel_clearing,
    merchant_payable,
    platform_transit,
    trial_balance,
    user_balance,
)

CNY = "CNY"
SLOW_CALLBACKS = {"callback_delay_ms": 600_000}  # the sandbox accepts, and stays silent


def balance(stack, ref) -> int:
    with stack.core.db.session() as s:
        return balance_of(s, ref)


def error_of(response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def exceptions_of(stack, **where) -> list[PayException]:
    with stack.core.db.session() as s:
        stmt = sa.select(PayException)
        for name, value in where.items():
            stmt = stmt.where(getattr(PayException, name) == value)
        return list(s.execute(stmt).scalars())


# -- 1. balances have owners ---------------------------------------------------------------
def test_a_merchant_cannot_pay_from_another_merchants_user(hostile):
    a, b = hostile.a, hostile.b
    a.fund("u1", 5_000, "fund-1")
    assert balance(hostile, user_balance(a.mid, "u1", CNY)) == 5_000

    answers = {}
    for user in ("u1", "ghost"):  # A's funded user, and a user nobody has
        assert b.trade(f"steal-{user}", 1_000, user=user).status_code == 200
        answers[user] = b.pay(f"steal-{user}", [{"tool": "balance", "amount": 1_000}])
    assert answers["u1"].status_code == 409, answers["u1"].text
    # the same answer as for a user that does not exist: nothing about u1 leaks
    assert error_of(answers["u1"])[1:] == error_of(answers["ghost"])[1:]
    assert error_of(answers["u1"])[1] == "insufficient_balance"
    assert balance(hostile, user_balance(a.mid, "u1", CNY)) == 5_000
    assert balance(hostile, merchant_payable(b.mid, CNY)) == 0


def test_a_merchant_cannot_transfer_or_withdraw_another_merchants_user(hostile):
    a, b = hostile.a, hostile.b
    a.fund("u1", 5_000, "fund-1")
    assert b.trade("tr-1", 2_000, "transfer", user="u1", payee_user_id="mule").status_code == 200
    transfer = b.pay("tr-1", [{"tool": "balance", "amount": 2_000}])
    assert error_of(transfer)[:2] == (409, "insufficient_balance"), transfer.text

    assert b.trade("wd-1", 2_000, "withdraw", user="u1").status_code == 200
    withdraw = b.pay("wd-1", [{"tool": "channel", "amount": 2_000}])
    assert error_of(withdraw)[:2] == (409, "insufficient_balance"), withdraw.text

    assert balance(hostile, user_balance(a.mid, "u1", CNY)) == 5_000
    assert balance(hostile, user_balance(b.mid, "mule", CNY)) == 0
    # A's own user is A's to move
    assert a.trade("tr-a", 2_000, "transfer", user="u1", payee_user_id="u2").status_code == 200
    assert a.pay("tr-a", [{"tool": "balance", "amount": 2_000}]).json()["status"] == "success"
    assert balance(hostile, user_balance(a.mid, "u2", CNY)) == 2_000
    assert trial_balance(hostile.core.db).ok


def test_probing_amounts_tells_a_stranger_nothing(hostile):
    a, b = hostile.a, hostile.b
    a.fund("rich", 9_000, "fund-rich")
    seen = set()
    for amount in (1, 8_999, 9_000, 9_001, 10_000_000):
        no = f"probe-{amount}"
        assert b.trade(no, amount, user="rich").status_code == 200
        seen.add(error_of(b.pay(no, [{"tool": "balance", "amount": amount}]))[:2])
    assert seen == {(409, "insufficient_balance")}


# -- 2. every channel result is checked against its item -----------------------------------
def _paid_trade(stack, no: str, amount: int) -> dict:
    a = stack.a
    assert a.trade(no, amount).status_code == 200
    assert a.pay(no, [{"tool": "channel", "amount": amount}]).status_code == 200
    done = a.wait_for(no, lambda d: d["trade"]["status"] == "paid")
    assert done["trade"]["status"] == "paid"
    return done


def _refund_item(stack, no: str, refund_no: str) -> dict:
    detail = stack.a.detail(no)
    refund = next(r for r in detail["refunds"] if r["trade"]["out_trade_no"] == refund_no)
    return refund["pay_orders"][0]["items"][0]


def test_a_refund_callback_with_another_amount_or_currency_settles_nothing(hostile):
    a = hostile.a
    _paid_trade(hostile, "p-1", 10_000)
    payable = balance(hostile, merchant_payable(a.mid, CNY))
    hostile.knobs("SANDBOX_A", **SLOW_CALLBACKS)
    for refund_no, amount, currency in (("r-more", 9_999, CNY), ("r-usd", 2_000, "USD")):
        assert a.refund("p-1", refund_no, 2_000).status_code == 200
        item = _refund_item(hostile, "p-1", refund_no)
        clearing = balance(hostile, channel_clearing("SANDBOX_A", CNY))
        r = hostile.callback(
            "SANDBOX_A",
            {
                "pay_org_no": "SANDBOX_A",
                "status": "success",
                "channel_txn_no": item["channel_txn_no"],
                "amount": amount,
                "currency": currency,
            },
        )
        assert r.status_code == 200 and r.json()["result"] == "exception", r.text
        # nothing settled at the wrong amount: the refund is not reported done
        assert _refund_item(hostile, "p-1", refund_no)["status"] != "success"
        refund = next(
            x for x in a.detail("p-1")["refunds"] if x["trade"]["out_trade_no"] == refund_no
        )
        assert refund["trade"]["status"] != "paid"
        assert balance(hostile, channel_clearing("SANDBOX_A", CNY)) == clearing
        assert exceptions_of(hostile, pay_item_id=int(item["id"]), kind="amount_mismatch")
    # the merchant's money for both refunds is held once, not taken twice
    assert balance(hostile, merchant_payable(a.mid, CNY)) == payable - 4_000
    assert trial_balance(hostile.core.db).ok


def test_a_withdraw_callback_with_another_amount_never_holds_the_user_twice(hostile):
    a = hostile.a
    a.fund("u1", 10_000, "fund-1")
    hostile.knobs("SANDBOX_A", **SLOW_CALLBACKS)
    assert a.trade("wd-1", 3_000, "withdraw").status_code == 200
    po = a.pay("wd-1", [{"tool": "channel", "amount": 3_000}]).json()
    assert po["status"] == "processing"
    item = po["items"][0]
    r = hostile.callback(
        "SANDBOX_A",
        {
            "pay_org_no": "SANDBOX_A",
            "status": "success",
            "channel_txn_no": item["channel_txn_no"],
            "amount": 2_999,
            "currency": CNY,
        },
    )
    assert r.status_code == 200 and r.json()["result"] == "exception", r.text
    again = a.pay("wd-1", [{"tool": "channel", "amount": 3_000}], out_pay_no="wd-1-again")
    assert again.status_code == 409, again.text
    # held once: the hold waits for a human (the channel paid out something), never twice
    assert balance(hostile, user_balance(a.mid, "u1", CNY)) == 7_000
    assert a.detail("wd-1")["trade"]["status"] == "closed"
    assert exceptions_of(hostile, pay_item_id=int(item["id"]), kind="amount_mismatch")
    assert trial_balance(hostile.core.db).ok


def test_a_recharge_callback_with_another_amount_credits_nothing(hostile):
    a = hostile.a
    hostile.knobs("SANDBOX_A", **SLOW_CALLBACKS)
    assert a.trade("rc-1", 1_000, "recharge").status_code == 200
    item = a.pay("rc-1", [{"tool": "channel", "amount": 1_000}]).json()["items"][0]
    r = hostile.callback(
        "SANDBOX_A",
        {
            "pay_org_no": "SANDBOX_A",
            "status": "success",
            "channel_txn_no": item["channel_txn_no"],
            "amount": 999,
            "currency": CNY,
        },
    )
    assert r.status_code == 200 and r.json()["result"] == "exception"
    assert balance(hostile, user_balance(a.mid, "u1", CNY)) == 0
    taken = exceptions_of(hostile, pay_item_id=int(item["id"]))
    assert [(e.kind, e.amount_taken, e.resolution) for e in taken] == [
        ("amount_mismatch", 999, "full_refund")
    ]
    assert trial_balance(hostile.core.db).ok


def test_zero_and_absurd_success_amounts_are_recorded_never_posted(hostile):
    a = hostile.a
    hostile.knobs("SANDBOX_A", **SLOW_CALLBACKS)
    for no, amount in (("z-0", 0), ("z-huge", 2**62), ("z-over", 2_001)):
        assert a.trade(no, 1_000).status_code == 200
        item = a.pay(no, [{"tool": "channel", "amount": 1_000}]).json()["items"][0]
        transit = balance(hostile, platform_transit(CNY))
        r = hostile.callback(
            "SANDBOX_A",
            {
                "pay_org_no": "SANDBOX_A",
                "status": "success",
                "channel_txn_no": item["channel_txn_no"],
                "amount": amount,
                "currency": CNY,
            },
        )
        assert r.status_code < 500, r.text
        if r.status_code == 200:
            assert r.json()["result"] == "exception"
        assert balance(hostile, platform_transit(CNY)) == transit  # nothing posted
        found = exceptions_of(hostile, pay_item_id=int(item["id"]))
        assert [(e.kind, e.amount_taken, e.resolution) for e in found] == [
            ("amount_mismatch", 0, "manual")
        ], no
        assert a.detail(no)["trade"]["status"] != "paid"
    assert trial_balance(hostile.core.db).ok


def test_a_compensation_refunds_callback_is_recognised_and_checked(hostile):
    from runtime.worker import build_worker

    a = hostile.a
    hostile.knobs("SANDBOX_A", amount_mismatch_rate=1.0)  # the channel takes 1 too much
    assert a.trade("cm-1", 1_000).status_code == 200
    item = a.pay("cm-1", [{"tool": "channel", "amount": 1_000}]).json()["items"][0]
    a.wait_for("cm-1", lambda d: d["pay_orders"][0]["status"] != "processing")
    [exc] = exceptions_of(hostile, pay_item_id=int(item["id"]))
    assert (exc.kind, exc.amount_taken, exc.resolution) == ("amount_mismatch", 1_001, "full_refund")
    hostile.knobs("SANDBOX_A", amount_mismatch_rate=0.0, **SLOW_CALLBACKS)
    worker = build_worker(hostile.platform, worker_id="hostile-w")
    worker.handlers.enqueue_open_exceptions()
    worker.run_once()
    txn = f"x{item['id']}"
    wrong = hostile.callback(
        "SANDBOX_A",
        {
            "pay_org_no": "SANDBOX_A",
            "status": "success",
            "channel_txn_no": txn,
            "amount": 5,
            "currency": CNY,
        },
    )
    assert wrong.status_code == 200 and wrong.json()["result"] == "exception", wrong.text
    right = hostile.callback(
        "SANDBOX_A",
        {
            "pay_org_no": "SANDBOX_A",
            "status": "success",
            "channel_txn_no": txn,
            "amount": 1_001,
            "currency": CNY,
        },
    )
    assert right.status_code == 200, right.text  # 404 before: the callback was not known
    assert right.json()["result"] in ("settled", "duplicate")
    with hostile.core.db.session() as s:
        posted = s.execute(
            sa.select(sa.func.count())
            .select_from(JournalEntry)
            .where(
                JournalEntry.biz_type == "exception_refund", JournalEntry.biz_key == str(item["id"])
            )
        ).scalar_one()
    assert posted == 1
    again = hostile.callback(
        "SANDBOX_A",
        {
            "pay_org_no": "SANDBOX_A",
            "status": "success",
            "channel_txn_no": txn,
            "amount": 1_001,
            "currency": CNY,
        },
    )
    assert again.json()["result"] == "duplicate"
    unknown = hostile.callback(
        "SANDBOX_A",
        {
            "pay_org_no": "SANDBOX_A",
            "status": "success",
            "channel_txn_no": "x12345",
            "amount": 1,
            "currency": CNY,
        },
    )
    assert unknown.status_code == 404
    assert trial_balance(hostile.core.db).ok


def test_refund_items_never_settle_above_what_they_hold(hostile):
    """A duplicate refund callback with the right amount after a mismatch stays recorded."""
    a = hostile.a
    _paid_trade(hostile, "p-2", 5_000)
    hostile.knobs("SANDBOX_A", **SLOW_CALLBACKS)
    assert a.refund("p-2", "r-2", 5_000).status_code == 200
    item = _refund_item(hostile, "p-2", "r-2")
    body = {
        "pay_org_no": "SANDBOX_A",
        "status": "success",
        "channel_txn_no": item["channel_txn_no"],
        "amount": 5_000,
        "currency": CNY,
    }
    assert hostile.callback("SANDBOX_A", body).json()["result"] == "settled"
    assert hostile.callback("SANDBOX_A", body).json()["result"] == "duplicate"
    assert hostile.callback("SANDBOX_A", body | {"amount": 4_000}).json()["result"] == "exception"
    with hostile.core.db.session() as s:
        settled = s.execute(
            sa.select(PayItem.settled_amount).where(PayItem.id == int(item["id"]))
        ).scalar_one()
    assert settled == 5_000
    assert trial_balance(hostile.core.db).ok
