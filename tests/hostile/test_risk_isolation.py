"""Attacks on the risk check through shared state: one merchant's traffic must never lock
another merchant's user out of paying, and the risk policy must hold over HTTP.

Each test is what a hostile merchant would send over real HTTP on PostgreSQL. The
policy is tightened on the running engine (``core.risk.policy``) so a burst of a few
requests reaches a limit.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import replace

from hostile_stack import hostile  # noqa: F401 - the fixture

CHANNEL = "channel"


def channel(amount: int) -> list[dict]:
    return [{"tool": CHANNEL, "amount": amount}]


def tighten(stack, **limits) -> None:
    """Set risk limits on the running API's engine (the same object serves every request)."""
    stack.core.risk.policy = replace(stack.core.risk.policy, **limits)


def error_of(response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def paid_through(merchant, no: str, user: str, amount: int = 1000):
    """Create a trade for ``user`` and pay it with the channel; the pay's response."""
    created = merchant.trade(no, amount, user=user)
    assert created.status_code == 200, created.text
    return merchant.pay(no, channel(amount))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


def test_a_burst_of_refused_attempts_by_b_does_not_lock_out_a_user(hostile):
    a, b = hostile.a, hostile.b
    tighten(hostile, max_per_user_per_minute=5)
    assert a.trade("a-1", 1000, user="u1").status_code == 200
    assert paid_through(b, "b-paid", "u1").status_code == 200
    refused = []
    for i in range(8):  # the trade is being paid (or paid): a state refusal every time
        refused.append(b.pay("b-paid", channel(1000), out_pay_no=f"again-{i}"))
        assert b.trade(f"b-poor-{i}", 1000, user="u1").status_code == 200
        refused.append(b.pay(f"b-poor-{i}", [{"tool": "balance", "amount": 1000}]))
        refused.append(b.pay("a-1", channel(1000)))  # A's trade: B does not have it
    assert all(400 <= r.status_code < 500 for r in refused), [r.text for r in refused]
    assert not [r.text for r in refused if error_of(r)[1] == "risk_rejected"]

    answer = a.pay("a-1", channel(1000))
    assert answer.status_code == 200, answer.text  # was 403 risk_rejected
    # refused attempts count for nobody: B's own u1 can still pay (4 more in the window)
    assert paid_through(b, "b-fresh", "u1").status_code == 200


def test_b_successful_payments_do_not_count_against_a_user(hostile):
    a, b = hostile.a, hostile.b
    tighten(hostile, max_per_user_per_minute=5)
    for i in range(5):
        r = paid_through(b, f"b-{i}", "u1")
        assert r.status_code == 200, r.text
    over = paid_through(b, "b-over", "u1")
    assert error_of(over)[:2] == (403, "risk_rejected")  # B's own limit holds for B
    assert a.mid not in over.text

    answer = paid_through(a, "a-1", "u1")
    assert answer.status_code == 200, answer.text  # was 403 risk_rejected
    assert b.mid not in answer.text


def test_daily_count_and_amount_limits_hold_over_http(hostile):
    a, b = hostile.a, hostile.b
    tighten(hostile, daily_max_count=3, daily_max_amount=2_500)
    for i in range(2):
        assert paid_through(a, f"a-{i}", "u2").status_code == 200
    for i in range(2):  # their callbacks post journal entries: let them land first
        done = a.wait_for(f"a-{i}", lambda d: d["trade"]["status"] == "paid")
        assert done["trade"]["status"] == "paid", done
    before = hostile.counts()
    over_amount = paid_through(a, "a-big", "u2", amount=1_000)  # 2 000 + 1 000 > 2 500
    status, code, message = error_of(over_amount)
    assert (status, code) == (403, "risk_rejected")
    assert "daily" in message and "amount" in message
    counts = hostile.counts()
    assert (
        counts["pay_orders"] == before["pay_orders"]
        and counts["pay_items"] == before["pay_items"]
        and counts["journal_entries"] == before["journal_entries"]
    )
    assert paid_through(a, "a-small", "u2", amount=500).status_code == 200  # fits: 2 500
    over_count = paid_through(a, "a-4th", "u2", amount=1)
    assert error_of(over_count)[:2] == (403, "risk_rejected")
    assert "daily" in error_of(over_count)[2] and "payments" in error_of(over_count)[2]
    # the limits are per merchant and user: B's u2 and A's other users are untouched
    assert paid_through(b, "b-1", "u2", amount=2_000).status_code == 200
    assert paid_through(a, "a-u3", "u3", amount=2_000).status_code == 200


def test_blocklist_holds_over_http_and_is_per_merchant(hostile):
    a, b = hostile.a, hostile.b
    risk = hostile.core.risk
    risk.block(a.mid, "u9", reason="chargeback ring", actor="risk-ops")
    risk.block("*", "u8", reason="sanctions list", actor="risk-ops")
    before = hostile.counts()

    blocked = paid_through(a, "a-u9", "u9")
    assert error_of(blocked) == (403, "risk_rejected", "payment refused by risk policy")
    assert "chargeback" not in blocked.text and "risk-ops" not in blocked.text
    for merchant in (a, b):  # a platform-wide entry blocks the user at every merchant
        r = paid_through(merchant, f"{merchant.mid}-u8", "u8")
        assert error_of(r) == (403, "risk_rejected", "payment refused by risk policy")
    after = hostile.counts()
    assert after["pay_orders"] == before["pay_orders"]
    # A's entry is A's: B's user of the same name pays
    assert paid_through(b, "b-u9", "u9").status_code == 200
    assert {(e.merchant_id, e.user_id) for e in risk.blocked()} == {(a.mid, "u9"), ("*", "u8")}

    assert risk.unblock(a.mid, "u9") is True
    assert a.pay("a-u9", channel(1000)).status_code == 200


def test_an_unchecked_fallback_allowance_is_recorded_for_review(hostile):
    from paycore.risk import RedisRiskCounters, list_reviews

    a = hostile.a
    risk = hostile.core.risk
    # a real Redis client on a port nobody listens on: every counter call fails fast
    risk.counters = RedisRiskCounters(
        f"redis://127.0.0.1:{closed_port()}/0", namespace=f"t:{uuid.uuid4().hex}:"
    )
    small = paid_through(a, "a-small", "u5", amount=1_000)
    assert small.status_code == 200, small.text
    reviews = list_reviews(hostile.core.db)
    assert [(r.merchant_id, r.user_id, r.amount, r.currency, r.status) for r in reviews] == [
        (a.mid, "u5", 1_000, "CNY", "open")
    ]
    assert str(reviews[0].trade_id) == small.json()["trade_id"]
    assert reviews[0].reason and reviews[0].created_at is not None

    before = hostile.counts()
    big = paid_through(a, "a-big", "u5", amount=risk.policy.fallback_max_amount + 1)
    assert error_of(big)[:2] == (403, "risk_rejected")
    after = hostile.counts()
    assert after["risk_reviews"] == before["risk_reviews"]  # refused: nothing to review
    assert after["pay_orders"] == before["pay_orders"]
    assert list_reviews(hostile.core.db, merchant_id=hostile.b.mid) == []
