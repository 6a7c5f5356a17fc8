"""Which ledger legs each money event posts: pure functions of amounts and accounts.

Money taken from a payer lands in the platform transit account first and moves on
only when its order is settled; a refund or a payout is held in transit until the
channel has answered. Each function below returns the legs of one journal entry
(debit positive, credit negative; they sum to zero in the entry's one currency); the
services post them under their ``(biz_type, biz_key)``.

=====================  =========================  =======================================
event (biz_type)       debited                    credited
=====================  =========================  =======================================
pay_item (instant)     the tool's source: the     transit
                       payer's balance or points,
                       coupon funding (each
                       tool's ``take_legs``)
withdraw_hold          the payer's balance        transit
pay_item (channel)     channel clearing           transit
pay_complete           transit                    pay: merchant payable (net) + fee
                                                  income; guaranteed: escrow;
                                                  recharge: the user's balance;
                                                  transfer: the payee's balance
withdraw_out           transit                    channel clearing
withdraw_release       transit                    the payer's balance
confirm                escrow                     merchant payable (net) + fee income
refund_hold            the merchant side          transit
refund_item            transit                    the tool's source (balance, points,
                                                  coupon funding), or channel clearing
refund_release         transit                    the merchant side
exception_refund       transit                    where the money came from
=====================  =========================  =======================================

The merchant side of a refund is the guaranteed trade's escrow until it is confirmed,
else the merchant's payable (:func:`merchant_side`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .ledger.accounts import (
    AccountRef,
    channel_clearing,
    fee_income,
    guarantee_escrow,
    merchant_payable,
    platform_transit,
    user_balance,
)
from .ledger.journal import Leg, credit, debit
from .money import fee_for
from .status import PAID

__all__ = [
    "PayCompletion",
    "balance_part",
    "channel_part",
    "confirm",
    "exception_refund",
    "merchant_side",
    "move",
    "pay_completion",
    "refund_hold",
    "refund_release",
    "refund_to_balance",
    "refund_to_channel",
    "refund_to_source",
    "withdraw_hold",
    "withdraw_out",
    "withdraw_release",
]


def move(source: AccountRef, target: AccountRef, amount: int) -> list[Leg]:
    """The two legs that move ``amount`` out of ``source`` (debited) into ``target``."""
    return [debit(source, amount), credit(target, amount)]


# -- pay, recharge, transfer, withdraw ---------------------------------------------------


def balance_part(merchant_id: str, user_id: str, currency: str, amount: int) -> list[Leg]:
    """A pay's balance part: taken from the payer's balance into transit."""
    return move(user_balance(merchant_id, user_id, currency), platform_transit(currency), amount)


def withdraw_hold(merchant_id: str, user_id: str, currency: str, amount: int) -> list[Leg]:
    """A payout held from the payer's balance in transit until the channel answers."""
    return balance_part(merchant_id, user_id, currency, amount)


def channel_part(pay_org_no: str, currency: str, amount: int) -> list[Leg]:
    """Money a channel collected for a pay item: channel clearing → transit."""
    return move(channel_clearing(pay_org_no, currency), platform_transit(currency), amount)


@dataclass(frozen=True, slots=True)
class PayCompletion:
    """What a completed pay order's posting depends on."""

    pay_type: str  # pay | recharge | transfer | withdraw
    trade_type: str
    merchant_id: str
    user_id: str
    payee_user_id: str | None
    currency: str
    amount: int
    fee_bps: int


def pay_completion(c: PayCompletion) -> list[Leg]:
    """Move a completed order's money on from transit (no legs: a withdraw, whose money
    left through the channel item by item)."""
    cur, amount, transit = c.currency, c.amount, platform_transit(c.currency)
    if c.pay_type == "pay" and c.trade_type == "guaranteed":
        return move(transit, guarantee_escrow(c.merchant_id, cur), amount)
    if c.pay_type == "pay":
        fee = fee_for(amount, c.fee_bps)
        return [
            debit(transit, amount),
            credit(merchant_payable(c.merchant_id, cur), amount - fee),
            credit(fee_income(cur), fee),
        ]
    if c.pay_type == "recharge":
        return move(transit, user_balance(c.merchant_id, c.user_id, cur), amount)
    if c.pay_type == "transfer":
        if c.payee_user_id is None:
            raise ValueError("a transfer needs a payee")
        return move(transit, user_balance(c.merchant_id, c.payee_user_id, cur), amount)
    return []


def withdraw_out(pay_org_no: str, currency: str, amount: int) -> list[Leg]:
    """A payout the channel made: transit → channel clearing."""
    return move(platform_transit(currency), channel_clearing(pay_org_no, currency), amount)


def withdraw_release(merchant_id: str, user_id: str, currency: str, amount: int) -> list[Leg]:
    """A payout the channel refused: the hold goes back to the payer's balance."""
    return move(platform_transit(currency), user_balance(merchant_id, user_id, currency), amount)


def confirm(merchant_id: str, currency: str, amount: int, fee_bps: int) -> list[Leg]:
    """A guaranteed trade confirmed: escrow → merchant payable, net of the fee."""
    fee = fee_for(amount, fee_bps)
    return [
        debit(guarantee_escrow(merchant_id, currency), amount),
        credit(merchant_payable(merchant_id, currency), amount - fee),
        credit(fee_income(currency), fee),
    ]


# -- refunds -----------------------------------------------------------------------------


def merchant_side(trade_type: str, status: str, merchant_id: str, currency: str) -> AccountRef:
    """Where refunded money is taken from: a guaranteed trade's escrow while it is paid
    and not yet confirmed, else the merchant's payable."""
    if trade_type == "guaranteed" and status == PAID:
        return guarantee_escrow(merchant_id, currency)
    return merchant_payable(merchant_id, currency)


def refund_hold(side: AccountRef, amount: int) -> list[Leg]:
    """A refund begun: its whole amount is held from the merchant side in transit."""
    return move(side, platform_transit(side.currency), amount)


def refund_to_balance(merchant_id: str, user_id: str, currency: str, amount: int) -> list[Leg]:
    """A refund's balance part returned: transit → the payer's balance."""
    return move(platform_transit(currency), user_balance(merchant_id, user_id, currency), amount)


def refund_to_source(to_account: AccountRef, amount: int) -> list[Leg]:
    """A refund's instant part returned: transit → where the tool took it from."""
    return move(platform_transit(to_account.currency), to_account, amount)


def refund_to_channel(pay_org_no: str, currency: str, amount: int) -> list[Leg]:
    """A refund's channel part done: transit → channel clearing."""
    return move(platform_transit(currency), channel_clearing(pay_org_no, currency), amount)


def refund_release(side: AccountRef, amount: int) -> list[Leg]:
    """A refund failed: a held part goes back from transit to the merchant side."""
    return move(platform_transit(side.currency), side, amount)


def exception_refund(to_account: AccountRef, amount: int) -> list[Leg]:
    """A pay exception's money returned from transit to where it came from."""
    return move(platform_transit(to_account.currency), to_account, amount)
