"""The channel tool: a payment institution (pay org) collects the part; its result,
by callback or active query, settles it."""

from __future__ import annotations

from typing import ClassVar

from ..db.schema import PayItem
from ..ledger import AccountRef, channel_clearing
from ..ledger.journal import Leg
from ..models import PayTool, TradeView
from .base import ToolPlugin


class ChannelTool(ToolPlugin):
    """Settles by the channel's result (``settles_by_channel``): the pay core submits it
    after the pay transaction; its money comes from and goes back to the pay org's
    clearing account. A withdraw's channel part pays out (the pay type's business: the
    payer's balance is held meanwhile)."""

    name: ClassVar[str] = "channel"
    trade_types: ClassVar[frozenset[str]] = frozenset(
        {"instant", "guaranteed", "recharge", "withdraw"}
    )
    settles_by_channel: ClassVar[bool] = True
    absorbs: ClassVar[bool] = True

    def resource(self, pay_org_no: str | None) -> str | None:
        return f"channel.{pay_org_no}" if pay_org_no else None

    def take_legs(self, trade: TradeView, part: PayTool) -> list[Leg]:
        raise TypeError("a channel part is taken by the channel's result, not at once")

    def source(
        self, merchant_id: str, user_id: str, currency: str, item: PayItem | None
    ) -> AccountRef:
        if item is None or not item.pay_org_no:
            raise ValueError("a channel part's money is its item's pay org's")
        return channel_clearing(item.pay_org_no, currency)
