"""The pay core over real HTTP: API + sandbox channel on 127.0.0.1, PostgreSQL behind: pay and
refund, signed callbacks, amount mismatches, channel declines and outages."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from api_stack import stack  # noqa: F401 - fixture

from paycore.db.schema import JournalEntry, PayException, PayItem
from paycore.ledger import trial_balance


def test_pay_and_refund_flow_over_http(stack):
    t = stack.trade("flow-1", 10_000)
    assert t["status"] == "created" and isinstance(t["id"], str)
    started = time.perf_counter()
    r = stack.http.post(
        "/v1/trades/flow-1/pay", json={"tools": [{"tool": "channel", "amount": 10_000}]}
    )
    assert r.status_code == 200 and r.json()["status"] == "processing"
    assert time.perf_counter() - started < 2.0  # answered before the channel settled
    detail = stack.wait_for("flow-1", lambda d: d["trade"]["status"] == "paid")
    assert detail["trade"]["status"] == "paid" and detail["trade"]["paid_amount"] == 10_000
    assert stack.platform.front.bound_loop is not None  # the API sends on its event loop
    assert stack.platform.front.acked == 1 and stack.platform.front.failures == 0
    assert detail["pay_orders"][0]["status"] == "success"
    assert detail["pay_orders"][0]["items"][0]["status"] == "success"
    with stack.core.db.session() as s:
        kinds = (
            s.execute(sa.select(JournalEntry.biz_type).where(JournalEntry.trade_id == int(t["id"])))
            .scalars()
            .all()
        )
    assert sorted(kinds) == ["pay_complete", "pay_item"]
    assert stack.snapshot()[1] == (0, 9_900)

    r = stack.http.post(
        "/v1/trades/flow-1/refunds", json={"out_refund_no": "rf-1", "amount": 4_000}
    )
    assert r.status_code == 200 and r.json()["trade"]["trade_type"] == "refund"
    detail = stack.wait_for(
        "flow-1", lambda d: d["refunds"] and d["refunds"][0]["trade"]["status"] == "paid"
    )
    assert detail["trade"]["refunded_amount"] == 4_000
    refund = detail["refunds"][0]
    assert refund["pay_orders"][0]["status"] == "success"
    child = stack.http.get("/v1/trades/rf-1").json()
    assert [t["out_trade_no"] for t in child["origin_chain"]] == ["flow-1"]
    assert stack.snapshot()[1] == (0, 5_900)
    assert trial_balance(stack.core.db).ok


def test_signed_callbacks_settle_once_and_bad_ones_are_refused(stack):
    stack.knobs("SANDBOX_B", callback_delay_ms=600_000)  # we play the channel ourselves
    stack.trade("cb-1", 700, pay_org_no="SANDBOX_B")
    po = stack.http.post(
        "/v1/trades/cb-1/pay", json={"tools": [{"tool": "channel", "amount": 700}]}
    ).json()
    txn = po["items"][0]["channel_txn_no"]
    body = {
        "pay_org_no": "SANDBOX_B",
        "channel_txn_no": txn,
        "status": "success",
        "amount": 700,
        "currency": "CNY",
        "channel_ref": "ch-1",
    }
    # refused: bad signature, stale timestamp, unknown org, org mismatch, unknown order
    assert stack.callback("SANDBOX_B", body, secret="wrong").status_code == 401
    assert stack.callback("SANDBOX_B", body, now=time.time() - 3600).status_code == 401
    assert stack.callback("SANDBOX_A", body).status_code == 401  # signed for A, names B
    r = stack.callback("SANDBOX_B", body | {"channel_txn_no": "404"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "pay_order_not_found")
    assert stack.http.get("/v1/trades/cb-1").json()["trade"]["status"] == "paying"
    barrier = threading.Barrier(10)

    def send(_):
        barrier.wait()
        return stack.callback("SANDBOX_B", body)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(send, range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    assert sorted(a.json()["result"] for a in answers) == ["duplicate"] * 9 + ["settled"]
    assert stack.snapshot()[1] == (0, 693)
    assert trial_balance(stack.core.db).ok


def test_amount_mismatch_callback_is_recorded_and_never_settles(stack):
    stack.knobs("SANDBOX_A", amount_mismatch_rate=1.0)
    stack.trade("mm-1", 500)
    stack.http.post("/v1/trades/mm-1/pay", json={"tools": [{"tool": "channel", "amount": 500}]})
    detail = stack.wait_for("mm-1", lambda d: d["pay_orders"][0]["status"] != "processing")
    assert detail["trade"]["status"] == "created" and detail["trade"]["paid_amount"] == 0
    with stack.core.db.session() as s:
        rows = s.execute(sa.select(PayException.kind, PayException.amount_taken)).all()
    assert rows == [("amount_mismatch", 501)]
    assert stack.snapshot()[1] == (0, 0)
    assert trial_balance(stack.core.db).ok


def test_channel_declines_and_outages_leave_orders_consistent(stack):
    stack.knobs("SANDBOX_A", fail_rate=1.0)
    stack.trade("fail-1", 300)
    stack.http.post("/v1/trades/fail-1/pay", json={"tools": [{"tool": "channel", "amount": 300}]})
    detail = stack.wait_for("fail-1", lambda d: d["pay_orders"][0]["status"] == "failed")
    assert detail["trade"]["status"] == "created"  # the payer may try again
    stack.knobs("SANDBOX_A", fail_rate=0.0, error_rate=1.0)
    stack.trade("down-1", 300)
    r = stack.http.post(
        "/v1/trades/down-1/pay", json={"tools": [{"tool": "channel", "amount": 300}]}
    )
    assert r.json()["status"] == "processing"  # the channel is down: active query settles later
    with stack.core.db.session() as s:
        assert (
            s.execute(
                sa.select(sa.func.count())
                .select_from(PayItem)
                .where(PayItem.status == "processing")
            ).scalar_one()
            == 1
        )
