"""The pay tool plug-in interface: what each way of paying (balance, channel, points,
coupon, ...) must tell the pay core.

The services never branch on a tool's name: they ask the tool (through
:class:`paycore.tools.registry.ToolRegistry`) whether its part settles by a channel
result, which ledger legs take its money, where its money goes back to, and whether an
external reservation must be released.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from ..db.engine import Database
from ..db.schema import PayItem
from ..deps import MerchantDirectory
from ..ledger import Ledger
from ..ledger.accounts import AccountRef, platform_transit
from ..ledger.journal import Leg
from ..models import PayTool, TradeView
from ..postings import move
from .errors import ToolSkipped, UnknownTool

__all__ = ["ToolEnv", "ToolPlugin", "ToolSkipped", "UnknownTool"]


@dataclass(frozen=True)
class ToolEnv:
    """What tools may use; built by :class:`paycore.core.PayCore`.

    ``guard``: the ``stability.Guard`` (or None); ``coupons``: a coupon service client
    (``paycore.coupons`` client) or None when none is wired.
    """

    db: Database
    ledger: Ledger
    guard: Any
    merchants: MerchantDirectory
    coupons: Any = None


class ToolPlugin(ABC):
    """One way of paying a part of a trade.

    Instant tools (everything but the channel) take their part in the pay transaction
    through :meth:`take_legs` (payer's source -> platform transit); a tool with
    ``settles_by_channel`` is settled by the channel's result instead.
    """

    name: ClassVar[str]
    #: the trade types this tool may pay
    trade_types: ClassVar[frozenset[str]]
    #: True only for the channel: the part settles by the channel's result
    settles_by_channel: ClassVar[bool] = False
    #: may take over a skipped (weak, unavailable) part's amount
    absorbs: ClassVar[bool] = False

    def resource(self, pay_org_no: str | None) -> str | None:
        """The dependency-map resource this tool calls (``"channel.<org>"``,
        ``"coupon"``), or None when it calls none."""
        return None

    def validate(self, trade: TradeView, part: PayTool) -> None:
        """Raise :class:`paycore.errors.InvalidPayTools` (400) when ``part`` cannot pay
        ``trade`` (e.g. a coupon part without ``ref``). Default: anything goes."""
        return None

    def prepare(self, env: ToolEnv, trade: TradeView, part: PayTool, key: str) -> PayTool:
        """Reserve at an external service, outside and before the pay transaction,
        idempotent on ``key`` (``"<merchant_id>:<out_pay_no>:<seq>"``); returns the part
        to pay with. Raise :class:`ToolSkipped` for a weak outage, any
        :class:`paycore.errors.PayCoreError` (4xx) for a client error. Default: ``part``."""
        return part

    def take_legs(self, trade: TradeView, part: PayTool) -> list[Leg]:
        """Instant tools only: the ledger legs that take ``part`` from the payer's
        source into platform transit. Default: :meth:`source` (with no item) -> transit."""
        cur = trade.currency
        src = self.source(trade.merchant_id, trade.user_id, cur, None)
        return move(src, platform_transit(cur), part.amount)

    @abstractmethod
    def source(
        self, merchant_id: str, user_id: str, currency: str, item: PayItem | None
    ) -> AccountRef:
        """Where this tool's money comes from and goes back to (refund share, exception
        refund of a failed order). ``item`` is the pay item, or None when the part is
        being taken (the default :meth:`take_legs`); the channel needs the item (its
        clearing account is the item's pay org)."""

    def release(self, env: ToolEnv, item: PayItem) -> None:
        """Give back an external reservation (a coupon) once its money went back.
        Idempotent; never raises (a weak call: log and go on). Default: nothing."""
        return None

    def offer(self, env: ToolEnv, trade: TradeView) -> dict[str, Any] | None:
        """What this tool can offer the trade's payer now, for the cashier, e.g.
        ``{"tool": "balance", "available": True, "max_amount": 1234}``; None when it
        does not apply to this trade."""
        return None
