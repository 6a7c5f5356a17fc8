"""The money rules of paying and refunding, before anything is written: pure functions.

Which tools a trade type may be paid with (and the pay type its order gets), which
trades can be refunded, how a refund is spread over the items that paid, and what a
failed order had already taken. Ledger legs: :mod:`paycore.postings`; status
transitions: :mod:`paycore.status`; a channel's result: :mod:`paycore.settle_rules`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from .errors import InvalidPayTools, RefundExceedsPaid, WrongState
from .status import SUCCESS

#: which built-in tools each trade type may use (each tool states its own trade types,
#: :attr:`paycore.tools.ToolPlugin.trade_types`; the registry passes what it holds)
ALLOWED_TOOLS: dict[str, frozenset[str]] = {
    "instant": frozenset({"balance", "channel", "points"}),
    "guaranteed": frozenset({"balance", "channel", "points"}),
    "recharge": frozenset({"channel"}),
    "withdraw": frozenset({"channel"}),
    "transfer": frozenset({"balance"}),
}
#: the pay type of the order that pays each trade type
PAY_TYPE: dict[str, str] = {
    "instant": "pay",
    "guaranteed": "pay",
    "recharge": "recharge",
    "withdraw": "withdraw",
    "transfer": "transfer",
}
#: the trade types a refund can be asked for
REFUNDABLE = ("instant", "guaranteed")


def check_tools(
    trade_type: str,
    tools: Sequence[tuple[str, int]],
    trade_amount: int,
    allowed_tools: Mapping[str, frozenset[str]] | None = None,
) -> None:
    """Raise unless ``tools`` (``(tool, amount)`` pairs) may pay a ``trade_type`` trade of
    ``trade_amount``: each allowed tool at most once, adding up to the trade's amount.
    ``allowed_tools``: trade type -> tool names (default :data:`ALLOWED_TOOLS`)."""
    if trade_type not in PAY_TYPE:
        raise WrongState(f"a {trade_type} trade is not paid directly")
    allowed = (ALLOWED_TOOLS if allowed_tools is None else allowed_tools).get(
        trade_type, frozenset()
    )
    kinds = [tool for tool, _ in tools]
    if len(set(kinds)) != len(kinds) or not set(kinds) <= allowed:
        raise InvalidPayTools(f"a {trade_type} trade takes each of {sorted(allowed)} at most once")
    if sum(amount for _, amount in tools) != trade_amount:
        raise InvalidPayTools("pay tool amounts must add up to the trade amount")


def check_refundable(trade_type: str) -> None:
    """Raise :class:`WrongState` unless a ``trade_type`` trade can be refunded."""
    if trade_type not in REFUNDABLE:
        raise WrongState(f"a {trade_type} trade cannot be refunded")


class RefundShare(NamedTuple):
    """One paying item's share of a refund: the item's place among the order's items
    (in ``seq`` order) and the amount it returns."""

    position: int
    amount: int


def split_refund(amount: int, items: Iterable[tuple[int, int]]) -> list[RefundShare]:
    """Spread a refund of ``amount`` over the items that paid (``(amount, refunded)``
    pairs, in ``seq`` order): each returns what it has left, first items first.

    Raises :class:`RefundExceedsPaid` when the items cannot return all of it.
    """
    remaining = amount
    shares: list[RefundShare] = []
    for position, (paid, refunded) in enumerate(items):
        take = min(remaining, paid - refunded)
        if take <= 0:
            continue
        shares.append(RefundShare(position, take))
        remaining -= take
        if remaining == 0:
            break
    if remaining:
        raise RefundExceedsPaid("refund exceeds what the pay tools can return")
    return shares


def taken_before_failure(pay_type: str, items: Iterable[tuple[str, int | None]]) -> int:
    """What a failed order's successful items (``(status, settled_amount)`` pairs) had
    taken from the payer, to be refunded in full; a withdraw takes nothing (its held
    parts are released, not refunded)."""
    if pay_type == "withdraw":
        return 0
    return sum(settled or 0 for status, settled in items if status == SUCCESS)
