"""The cashier: what a trade's payer can pay with, now.

For a trade that can still be paid (status ``created``) every registered pay tool that
may pay its trade type is asked for its offer (:meth:`paycore.tools.ToolPlugin.offer`:
the balance tool reads the payer's balance, the coupon tool lists the payer's coupons,
...). The channel method is the cashier's own: every pay org the merchant is granted, in
the order the routing rules would try them for this trade, each with whether the guard
would let a payment through now (``guard.availability``) and, when not, why.

A read: nothing is written and no channel, breaker or limit is consumed. The org it
recommends is what the rules and the stability layer say at this moment; a pay that names
no org is routed afresh when it comes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from stability.errors import StabilityError

from . import status as st
from .context import CODE_MAX, CODE_PATTERN, check_code
from .deps import CoreDeps
from .errors import DependencyUnavailable, InvalidContext, InvalidUserSegment
from .models import TradeView
from .routing import RouteQuery
from .tools import ToolSkipped, env_of, tools_of
from .trade_reads import TradeReader

log = logging.getLogger("paycore.cashier")
__all__ = ["CashierService", "CashierView", "check_user_segment"]


def check_user_segment(value: str | None) -> str | None:
    """``value`` when it is None or a code (1-32 of ``[A-Za-z0-9_.-]``);
    :class:`InvalidUserSegment` (400) otherwise."""
    if value is None:
        return None
    try:
        return check_code(value, "user_segment")
    except InvalidContext:
        raise InvalidUserSegment(
            f"user_segment must match {CODE_PATTERN} (at most {CODE_MAX} characters)"
        ) from None


@dataclass(frozen=True, slots=True)
class CashierView:
    """A trade as its cashier shows it: ``payable`` (the trade can be paid now) and the
    methods (tool offers, JSON-ready; empty when the trade cannot be paid)."""

    out_trade_no: str
    status: str
    amount: int
    currency: str
    payable: bool
    methods: tuple[dict[str, Any], ...]


class CashierService:
    """Builds a trade's :class:`CashierView` from the tools, the router and the guard."""

    def __init__(self, deps: CoreDeps, trades: TradeReader) -> None:
        self.deps = deps
        self.trades = trades

    def view(
        self, merchant_id: str, out_trade_no: str, user_segment: str | None = None
    ) -> CashierView:
        """The cashier of the merchant's trade (:class:`TradeNotFound` when it has none);
        ``user_segment`` feeds the routing rules like a pay's."""
        segment = check_user_segment(user_segment)
        trade = self.trades.get(merchant_id, out_trade_no)
        payable = trade.status == st.CREATED
        methods = self._methods(trade, segment) if payable else ()
        return CashierView(
            trade.out_trade_no, trade.status, trade.amount, trade.currency, payable, methods
        )

    def _methods(self, trade: TradeView, segment: str | None) -> tuple[dict[str, Any], ...]:
        out: list[dict[str, Any]] = []
        for tool in tools_of(self.deps):
            if trade.trade_type not in tool.trade_types:
                continue
            if tool.settles_by_channel:
                out.append(self._channel(tool, trade, segment))
                continue
            offer = self._offer(tool, trade)
            if offer is not None:
                out.append(offer)
        return tuple(out)

    def _offer(self, tool: Any, trade: TradeView) -> dict[str, Any] | None:
        """The tool's offer; a weak tool that cannot answer now is shown unavailable
        rather than failing the whole cashier."""
        try:
            return tool.offer(env_of(self.deps), trade)
        except (ToolSkipped, DependencyUnavailable, StabilityError) as exc:
            log.info("cashier: %s cannot offer now (%s)", tool.name, exc)
            # a guard refusal says why (degraded, breaker_open, ...); a service error does not
            reason = getattr(exc, "reason", None) or "unavailable"
            return {"tool": tool.name, "available": False, "reason": reason}

    def _channel(self, tool: Any, trade: TradeView, segment: str | None) -> dict[str, Any]:
        """The channel method: granted orgs in routing order, each with its availability."""
        granted = frozenset(self.deps.merchants.get(trade.merchant_id).pay_orgs)
        rule, routed = self._route(trade, segment, granted)
        order = [*routed, *sorted(granted - set(routed))]
        orgs = []
        for org in order:
            reason = self._unavailable(tool.resource(org))
            orgs.append(
                {
                    "pay_org_no": org,
                    "available": reason is None,
                    "reason": reason,
                    "routed": org in routed,
                }
            )
        recommended = next((o["pay_org_no"] for o in orgs if o["available"]), None)
        return {
            "tool": tool.name,
            "available": recommended is not None,
            "orgs": orgs,
            "recommended": recommended,
            "rule": rule,
        }

    def _route(
        self, trade: TradeView, segment: str | None, granted: frozenset[str]
    ) -> tuple[str | None, tuple[str, ...]]:
        """The rule and the orgs a pay naming no org would try, in order. Without a
        router a pay takes the trade's own org (no rule)."""
        router = self.deps.router
        if router is None:
            return None, tuple(o for o in (trade.pay_org_no,) if o in granted)
        decision = router.decide(
            RouteQuery(
                merchant_id=trade.merchant_id,
                order_type=trade.order_type,
                sub_type=trade.sub_type,
                amount=trade.amount,
                currency=trade.currency,
                user_segment=segment,
                default_org=trade.pay_org_no,
                granted=granted,
            )
        )
        return decision.rule, tuple(o for o in decision.candidates if o in granted)

    def _unavailable(self, resource: str | None) -> str | None:
        """Why the guard would refuse ``resource`` now (None: it looks available; no
        guard, nothing refuses)."""
        guard = self.deps.guard
        if guard is None or resource is None:
            return None
        return guard.availability(resource)
