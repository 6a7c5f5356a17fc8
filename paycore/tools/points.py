"""The points tool: a user's loyalty points (platform-held, granted by
:class:`paycore.points.PointsService`) pay their part at once."""

from __future__ import annotations

from typing import Any, ClassVar

from ..db.schema import PayItem
from ..ledger import AccountRef, user_points
from ..models import TradeView
from .balance import account_offer
from .base import ToolEnv, ToolPlugin


class PointsTool(ToolPlugin):
    """Takes the payer's points (``user_points``) into transit; a refund share or a failed
    order's part goes back to them. Spending more points than held is refused like an
    insufficient balance (a user account never goes below zero)."""

    name: ClassVar[str] = "points"
    trade_types: ClassVar[frozenset[str]] = frozenset({"instant", "guaranteed"})

    def source(
        self, merchant_id: str, user_id: str, currency: str, item: PayItem | None
    ) -> AccountRef:
        return user_points(merchant_id, user_id, currency)

    def offer(self, env: ToolEnv, trade: TradeView) -> dict[str, Any] | None:
        if trade.trade_type not in self.trade_types:
            return None
        ref = self.source(trade.merchant_id, trade.user_id, trade.currency, None)
        return account_offer(env, self.name, ref, trade.amount)
