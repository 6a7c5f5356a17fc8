"""The balance tool: a user's balance at the merchant pays its part at once."""

from __future__ import annotations

from typing import Any, ClassVar

from ..db.schema import PayItem
from ..ledger import AccountRef, balance_of, user_balance
from ..models import TradeView
from .base import ToolEnv, ToolPlugin


class BalanceTool(ToolPlugin):
    """Takes the payer's balance into transit in the pay transaction; a refund share or a
    failed order's part goes back to that balance."""

    name: ClassVar[str] = "balance"
    trade_types: ClassVar[frozenset[str]] = frozenset({"instant", "guaranteed", "transfer"})
    absorbs: ClassVar[bool] = True

    def source(
        self, merchant_id: str, user_id: str, currency: str, item: PayItem | None
    ) -> AccountRef:
        return user_balance(merchant_id, user_id, currency)

    def offer(self, env: ToolEnv, trade: TradeView) -> dict[str, Any] | None:
        if trade.trade_type not in self.trade_types:
            return None
        ref = self.source(trade.merchant_id, trade.user_id, trade.currency, None)
        return account_offer(env, self.name, ref, trade.amount)


def account_offer(env: ToolEnv, tool: str, ref: AccountRef, trade_amount: int) -> dict[str, Any]:
    """A cashier offer of a user account (balance, points): what it holds, at most the
    trade's amount."""
    with env.db.reading() as s:
        held = balance_of(s, ref)
    return {"tool": tool, "available": held > 0, "max_amount": max(0, min(held, trade_amount))}
