"""The pay core's money rules, without a database: postings, transitions, tools, verdicts.

Legs are signed (debit positive, credit negative); every entry must sum to zero in its
one currency, and each money event must debit and credit the accounts the table in
:mod:`paycore.postings` names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import pytest

from paycore import postings
from paycore.errors import InvalidPayTools, RefundExceedsPaid, WrongState
from paycore.ledger import (
    AccountRef,
    Leg,
    channel_clearing,
    fee_income,
    guarantee_escrow,
    merchant_payable,
    platform_transit,
    user_balance,
)
from paycore.pay_rules import (
    ALLOWED_TOOLS,
    PAY_TYPE,
    RefundShare,
    check_refundable,
    check_tools,
    split_refund,
    taken_before_failure,
)
from paycore.settle_rules import TAKEABLE, judge_success
from paycore.status import (
    CLOSED,
    CONFIRMED,
    CREATED,
    FAILED,
    PAID,
    PAY_TRANSITIONS,
    PAYING,
    PROCESSING,
    SUCCESS,
    TRADE_TRANSITIONS,
    check_transition,
    is_legal,
)

M, U, P, ORG, CUR = "M1", "u1", "u2", "SANDBOX_A", "CNY"
TRANSIT = platform_transit(CUR)


def net(legs: Iterable[Leg]) -> dict[tuple[str, str, str, str], int]:
    """Each account's signed total over ``legs`` (zero totals dropped)."""
    totals: Counter[tuple[str, str, str, str]] = Counter()
    for leg in legs:
        totals[leg.account.key] += leg.amount
    return {k: v for k, v in totals.items() if v}


def assert_balanced(legs: list[Leg]) -> None:
    by_currency: Counter[str] = Counter()
    for leg in legs:
        by_currency[leg.account.currency] += leg.amount
    assert set(by_currency.values()) <= {0}, by_currency


def moved(source: AccountRef, target: AccountRef, amount: int) -> dict:
    return net([Leg(source, amount), Leg(target, -amount)])


# -- postings: every event's legs ---------------------------------------------------------


def completion(pay_type: str, trade_type: str) -> Callable[[int], list[Leg]]:
    def legs(amount: int) -> list[Leg]:
        return postings.pay_completion(
            postings.PayCompletion(pay_type, trade_type, M, U, P, CUR, amount, 125)
        )

    return legs


EVENTS: dict[str, Callable[[int], list[Leg]]] = {
    "balance_part": lambda a: postings.balance_part(M, U, CUR, a),
    "withdraw_hold": lambda a: postings.withdraw_hold(M, U, CUR, a),
    "channel_part": lambda a: postings.channel_part(ORG, CUR, a),
    "withdraw_out": lambda a: postings.withdraw_out(ORG, CUR, a),
    "withdraw_release": lambda a: postings.withdraw_release(M, U, CUR, a),
    "confirm": lambda a: postings.confirm(M, CUR, a, 60),
    "refund_hold": lambda a: postings.refund_hold(merchant_payable(M, CUR), a),
    "refund_to_balance": lambda a: postings.refund_to_balance(M, U, CUR, a),
    "refund_to_channel": lambda a: postings.refund_to_channel(ORG, CUR, a),
    "refund_release": lambda a: postings.refund_release(guarantee_escrow(M, CUR), a),
    "exception_refund": lambda a: postings.exception_refund(user_balance(M, U, CUR), a),
    **{
        f"complete_{pay_type}_{trade_type}": completion(pay_type, trade_type)
        for trade_type, pay_type in PAY_TYPE.items()
        if pay_type != "withdraw"
    },
}


@pytest.mark.parametrize("event", sorted(EVENTS))
@pytest.mark.parametrize("amount", [1, 7, 99, 10_000, 123_457, 10**12])
def test_every_entry_sums_to_zero_in_one_currency(event: str, amount: int) -> None:
    legs = EVENTS[event](amount)
    assert len(legs) >= 2
    assert_balanced(legs)
    assert {leg.account.currency for leg in legs} == {CUR}
    assert sum(leg.amount for leg in legs if leg.amount > 0) == amount  # all of it moves


def test_a_pay_part_leaves_the_payer_for_transit() -> None:
    assert net(postings.balance_part(M, U, CUR, 500)) == moved(
        user_balance(M, U, CUR), TRANSIT, 500
    )
    assert net(postings.channel_part(ORG, CUR, 500)) == moved(
        channel_clearing(ORG, CUR), TRANSIT, 500
    )
    assert postings.withdraw_hold(M, U, CUR, 9) == postings.balance_part(M, U, CUR, 9)


def test_an_instant_pay_completes_to_the_merchant_net_of_a_floored_fee() -> None:
    legs = postings.pay_completion(
        postings.PayCompletion("pay", "instant", M, U, None, CUR, 10_001, 30)
    )
    fee = 30  # 10_001 * 30 // 10_000 = 30.003, floored
    assert net(legs) == {
        TRANSIT.key: 10_001,
        merchant_payable(M, CUR).key: -(10_001 - fee),
        fee_income(CUR).key: -fee,
    }


def test_a_guaranteed_pay_completes_into_escrow_without_a_fee() -> None:
    legs = postings.pay_completion(
        postings.PayCompletion("pay", "guaranteed", M, U, None, CUR, 800, 250)
    )
    assert net(legs) == moved(TRANSIT, guarantee_escrow(M, CUR), 800)


def test_a_recharge_completes_to_the_payers_balance() -> None:
    legs = postings.pay_completion(
        postings.PayCompletion("recharge", "recharge", M, U, None, CUR, 300, 250)
    )
    assert net(legs) == moved(TRANSIT, user_balance(M, U, CUR), 300)


def test_a_transfer_completes_to_the_payee_not_the_payer() -> None:
    legs = postings.pay_completion(
        postings.PayCompletion("transfer", "transfer", M, U, P, CUR, 300, 250)
    )
    assert net(legs) == moved(TRANSIT, user_balance(M, P, CUR), 300)
    with pytest.raises(ValueError):
        postings.pay_completion(
            postings.PayCompletion("transfer", "transfer", M, U, None, CUR, 300, 0)
        )


def test_a_withdraw_posts_nothing_at_completion_its_items_did() -> None:
    assert (
        postings.pay_completion(
            postings.PayCompletion("withdraw", "withdraw", M, U, None, CUR, 300, 250)
        )
        == []
    )
    assert net(postings.withdraw_out(ORG, CUR, 300)) == moved(
        TRANSIT, channel_clearing(ORG, CUR), 300
    )
    assert net(postings.withdraw_release(M, U, CUR, 300)) == moved(
        TRANSIT, user_balance(M, U, CUR), 300
    )


def test_confirm_moves_escrow_to_the_merchant_net_of_the_fee() -> None:
    assert net(postings.confirm(M, CUR, 1_000, 125)) == {
        guarantee_escrow(M, CUR).key: 1_000,
        merchant_payable(M, CUR).key: -988,
        fee_income(CUR).key: -12,
    }


@pytest.mark.parametrize(
    ("trade_type", "status", "expected"),
    [
        ("guaranteed", PAID, guarantee_escrow(M, CUR)),
        ("guaranteed", CONFIRMED, merchant_payable(M, CUR)),
        ("instant", PAID, merchant_payable(M, CUR)),
        ("instant", CONFIRMED, merchant_payable(M, CUR)),
    ],
)
def test_a_refund_is_taken_from_escrow_only_until_confirmed(
    trade_type: str, status: str, expected: AccountRef
) -> None:
    assert postings.merchant_side(trade_type, status, M, CUR) == expected


def test_a_refund_hold_and_its_release_cancel_out() -> None:
    side = guarantee_escrow(M, CUR)
    hold = postings.refund_hold(side, 700)
    assert net(hold) == moved(side, TRANSIT, 700)
    assert net(hold + postings.refund_release(side, 700)) == {}


def test_a_refund_returns_to_where_the_money_came_from() -> None:
    assert net(postings.refund_to_balance(M, U, CUR, 5)) == moved(
        TRANSIT, user_balance(M, U, CUR), 5
    )
    assert net(postings.refund_to_channel(ORG, CUR, 5)) == moved(
        TRANSIT, channel_clearing(ORG, CUR), 5
    )
    to = channel_clearing(ORG, CUR)
    assert net(postings.exception_refund(to, 5)) == moved(TRANSIT, to, 5)


def test_a_paid_and_partly_refunded_trade_leaves_transit_empty() -> None:
    """Pay 1000 (400 balance, 600 channel), complete, refund 500 (400 balance back,
    100 to the channel): transit nets to zero and each party holds its share."""
    legs = [
        *postings.balance_part(M, U, CUR, 400),
        *postings.channel_part(ORG, CUR, 600),
        *postings.pay_completion(
            postings.PayCompletion("pay", "instant", M, U, None, CUR, 1_000, 0)
        ),
        *postings.refund_hold(postings.merchant_side("instant", PAID, M, CUR), 500),
        *postings.refund_to_balance(M, U, CUR, 400),
        *postings.refund_to_channel(ORG, CUR, 100),
    ]
    assert_balanced(legs)
    assert net(legs) == {
        channel_clearing(ORG, CUR).key: 600 - 100,
        merchant_payable(M, CUR).key: -(1_000 - 500),
    }


# -- status transitions --------------------------------------------------------------------

LEGAL_TRADE = {
    (CREATED, PAYING),
    (CREATED, CLOSED),
    (PAYING, PAID),
    (PAYING, CREATED),
    (PAYING, CLOSED),
    (PAID, CONFIRMED),
}
LEGAL_PAY = {(PROCESSING, SUCCESS), (PROCESSING, FAILED)}


@pytest.mark.parametrize(
    ("machine", "legal"), [(TRADE_TRANSITIONS, LEGAL_TRADE), (PAY_TRANSITIONS, LEGAL_PAY)]
)
def test_exactly_the_legal_transitions_pass(machine: dict, legal: set) -> None:
    for frm in machine:
        for to in machine:
            assert is_legal(machine, frm, to) is ((frm, to) in legal), (frm, to)
            if (frm, to) in legal:
                check_transition(machine, frm, to)
            else:
                with pytest.raises(ValueError, match=f"illegal transition {frm} -> {to}"):
                    check_transition(machine, frm, to)


def test_an_unknown_state_has_no_transition() -> None:
    assert not is_legal(TRADE_TRANSITIONS, "refunded", CLOSED)
    with pytest.raises(ValueError):
        check_transition(PAY_TRANSITIONS, PROCESSING, "refunded")


# -- pay tools -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trade_type", "tools"),
    [
        ("instant", [("balance", 300), ("channel", 700)]),
        ("guaranteed", [("channel", 1_000)]),
        ("recharge", [("channel", 1_000)]),
        ("withdraw", [("channel", 1_000)]),
        ("transfer", [("balance", 1_000)]),
    ],
)
def test_allowed_tools_that_add_up_pass(trade_type: str, tools: list) -> None:
    check_tools(trade_type, tools, 1_000)
    assert {t for t, _ in tools} <= ALLOWED_TOOLS[trade_type]


@pytest.mark.parametrize(
    ("trade_type", "tools", "error"),
    [
        ("refund", [("balance", 1_000)], WrongState),
        ("instant", [("channel", 500), ("channel", 500)], InvalidPayTools),
        ("recharge", [("balance", 1_000)], InvalidPayTools),
        ("withdraw", [("balance", 1_000)], InvalidPayTools),
        ("transfer", [("channel", 1_000)], InvalidPayTools),
        ("instant", [("balance", 300), ("channel", 600)], InvalidPayTools),
        ("instant", [("balance", 1_001)], InvalidPayTools),
    ],
)
def test_wrong_tools_are_refused(trade_type: str, tools: list, error: type) -> None:
    with pytest.raises(error):
        check_tools(trade_type, tools, 1_000)


def test_only_instant_and_guaranteed_trades_are_refunded() -> None:
    check_refundable("instant")
    check_refundable("guaranteed")
    for trade_type in ("recharge", "withdraw", "transfer", "refund"):
        with pytest.raises(WrongState):
            check_refundable(trade_type)


# -- spreading a refund over the items that paid ---------------------------------------------


def test_a_refund_takes_from_the_first_items_first() -> None:
    assert split_refund(500, [(400, 0), (600, 0)]) == [RefundShare(0, 400), RefundShare(1, 100)]
    assert split_refund(300, [(400, 0), (600, 0)]) == [RefundShare(0, 300)]


def test_a_refund_skips_what_was_refunded_already() -> None:
    assert split_refund(500, [(400, 400), (600, 100)]) == [RefundShare(1, 500)]
    assert split_refund(150, [(400, 300), (600, 0)]) == [RefundShare(0, 100), RefundShare(1, 50)]


def test_a_refund_past_what_is_left_is_refused() -> None:
    split_refund(700, [(400, 100), (600, 200)])  # exactly what is left
    with pytest.raises(RefundExceedsPaid):
        split_refund(701, [(400, 100), (600, 200)])
    with pytest.raises(RefundExceedsPaid):
        split_refund(1, [])


def test_what_a_failed_order_had_taken() -> None:
    items = [(SUCCESS, 300), (FAILED, None), (SUCCESS, None), (PROCESSING, 50)]
    assert taken_before_failure("pay", items) == 300
    assert taken_before_failure("recharge", [(SUCCESS, 7), (SUCCESS, 8)]) == 15
    assert taken_before_failure("withdraw", items) == 0


# -- a channel's success, judged against the item -----------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "verdict"),
    [
        (1_000, "CNY", "match"),
        (999, "CNY", "short"),
        (1, "CNY", "short"),
        (1_001, "CNY", "over"),
        (2_000, "CNY", "over"),
        (2_001, "CNY", "absurd"),
        (0, "CNY", "absurd"),
        (-5, "CNY", "absurd"),
        (1_000, "USD", "currency"),
    ],
)
def test_settle_verdicts(amount: int, currency: str, verdict: str) -> None:
    assert judge_success(1_000, "CNY", amount, currency) == verdict
    assert (verdict in TAKEABLE) is (verdict in ("match", "short", "over"))
