"""What a channel's result for one item means, before anything is posted: pure rules.

Every result — pay, recharge, withdraw, refund, or a compensation refund — is judged
against the item it names, by the same table:

=============  ==========================================  ==============================
verdict        the channel reports ``success`` with…       what settlement does
=============  ==========================================  ==============================
``match``      the item's amount and currency              settle
``short``      less than the item, more than zero          record ``amount_mismatch``;
``over``       more than the item, at most twice it        a pay or recharge takes what the
                                                           channel says it took and refunds
                                                           it in full; a withdraw or a
                                                           refund keeps its hold for a human
``absurd``     zero, or more than twice the item           record ``amount_mismatch`` for a
``currency``   another currency                            human; nothing is posted
=============  ==========================================  ==============================

A channel that took more than twice what was asked is not "a little off": posting its
figure would put money in the books that nobody can explain (a 2^62 posting into
transit), so a human decides. A failed result carries no amount worth checking.
"""

from __future__ import annotations

from typing import Literal

Verdict = Literal["match", "short", "over", "absurd", "currency"]
#: a result the books may record as money taken (and refund in full)
TAKEABLE: frozenset[str] = frozenset({"match", "short", "over"})


def judge_success(item_amount: int, item_currency: str, amount: int, currency: str) -> Verdict:
    """The verdict on a channel's ``success`` of ``amount currency`` for an item of
    ``item_amount item_currency``."""
    if currency != item_currency:
        return "currency"
    if amount == item_amount:
        return "match"
    if amount <= 0 or amount > 2 * item_amount:
        return "absurd"
    return "short" if amount < item_amount else "over"


def describe(
    verdict: Verdict, item_amount: int, item_currency: str, amount: int, currency: str
) -> str:
    """A line for the exception record: what the channel said against what we asked."""
    return (
        f"channel settled {amount} {currency} ({verdict}), "
        f"the item is {item_amount} {item_currency}"
    )
