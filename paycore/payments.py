"""Pay core: pay a trade with one or more tools.

A pay order is begun under the trade's lock (:mod:`paycore.pay_begin`); its channel
parts are submitted after commit, and their results are settled by
:class:`paycore.settlement.SettlementService`. Money taken from a payer first lands in
the platform transit account and moves on only when the whole order has succeeded.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy import bindparam, select

from . import status as st
from .channels import ChannelRequest, ChannelResult
from .context import BizContext, use_context
from .db.schema import PayItem, PayOrder
from .deps import CoreDeps
from .errors import DuplicateKey, IdempotencyConflict, WrongState
from .models import PayOrderView, PayRequest, TradeView
from .pay_begin import begin_pay
from .pay_routing import Routed, route_pay
from .risk import RiskHold
from .settlement import SettlementService
from .tools import env_of, tools_of
from .trade_reads import TradeReader
from .views import pay_order_view

# hot statements are built once and run with parameters: building one costs as much CPU
# as the round trip
_PAY_ORDER_BY_NO = select(PayOrder).where(
    PayOrder.merchant_id == bindparam("mid"), PayOrder.out_pay_no == bindparam("no")
)
_ITEMS_OF = select(PayItem).where(PayItem.pay_order_id == bindparam("po_id"))


class PayService:
    """Pays trades: checks, risk, the channel's admission, then the pay order."""

    def __init__(self, deps: CoreDeps, trades: TradeReader, settlement: SettlementService) -> None:
        self.deps = deps
        self.trades = trades
        self.settlement = settlement

    def pay(self, merchant_id: str, req: PayRequest) -> PayOrderView:
        """Pay a trade. Balance parts settle at once; channel parts answer *processing*.

        Idempotent on ``out_pay_no``: the same request returns the same pay order; a
        different request with that number raises :class:`IdempotencyConflict`.
        Two concurrent pays of one trade: one wins, the other gets :class:`WrongState`.
        """
        with self.deps.metrics.timed("pay", req.pay_org_no or "") as timed:
            view = self._pay(merchant_id, req, timed)
            timed.pay_org = view.pay_org_no or timed.pay_org  # the pay order's org
            if view.status == "processing":
                timed.outcome = "pending"  # the channel answers later, by callback
            return view

    def on_channel_result(self, result: ChannelResult) -> str:
        """Settle a channel's answer for one item (see
        :meth:`SettlementService.on_channel_result`)."""
        return self.settlement.on_channel_result(result)

    def _pay(self, merchant_id: str, req: PayRequest, timed: Any = None) -> PayOrderView:
        fingerprint = req.fingerprint()
        replay = self._replay(merchant_id, req.pay_no, fingerprint)
        if replay:
            return replay
        trade = self.trades.get(merchant_id, req.out_trade_no)
        ctx = BizContext(
            merchant_id, trade.order_type, trade.sub_type, req.pay_org_no or trade.pay_org_no
        )
        if timed is not None and ctx.pay_org_no:  # a pay that fails is the trade's org's too
            timed.pay_org = ctx.pay_org_no
        info = self.deps.merchants.authorize(merchant_id, ctx)
        tools_of(self.deps).check(trade.trade_type, req.tools, trade.amount, trade=trade)
        if trade.status != st.CREATED:  # hopeless: never counted by risk. A concurrent
            # twin of this request may have won since the first replay check: its answer
            replay = self._replay(merchant_id, req.pay_no, fingerprint)
            if replay:
                return replay
            raise WrongState(f"trade is {trade.status}; it cannot be paid now")
        hold, routed = self._preflight(trade, req, ctx)
        ctx = routed.ctx  # the routed pay org (authorised: routing offers granted orgs only)
        with use_context(ctx), hold:  # the risk reservation goes back if not begun
            view, requests = self._begin(trade, req, ctx, fingerprint, info, routed.alternatives)
        self.deps.channel.submit(requests)
        return view

    def _begin(
        self,
        trade: TradeView,
        req: PayRequest,
        ctx: BizContext,
        fingerprint: str,
        info: Any,
        alternatives: tuple[str, ...],
    ) -> tuple[PayOrderView, list[ChannelRequest]]:
        """Prepare the tools' parts (external reservations, a coupon: before the
        transaction and off the lock), then begin the pay order under the trade's lock.
        The reservations are given back unless this order, or its replayed twin (same
        keys), holds them. The order stores (and its view names) the weak tools the pay
        went on without."""
        tools, env, merchant_id = tools_of(self.deps), env_of(self.deps), trade.merchant_id
        parts, skipped = tools.prepare_parts(
            env,
            trade,
            req.tools,
            key_prefix=f"{merchant_id}:{req.pay_no}",
            allow_skip=bool(getattr(info, "pay_without_coupon", False)),
        )
        begin = partial(
            begin_pay,
            self.deps,
            self.settlement,
            parts=parts,
            alternatives=alternatives,
            skipped=skipped,
        )
        kept = False
        try:
            # no second replay check under the lock: a pay that won meanwhile shows up as
            # the trade's compare-and-set failing, or as its out_pay_no taken
            with self.deps.trade_lock(trade.id, link="link.pay"):
                view, requests = self.deps.db.run(lambda s: begin(s, trade, req, ctx, fingerprint))
            kept = True
        except (WrongState, DuplicateKey):
            replay = self._replay(merchant_id, req.pay_no, fingerprint)
            if replay is None:
                raise
            kept = True
            return replay, []
        finally:
            if not kept:
                tools.release_parts(env, trade, parts)
        return view, requests

    def _preflight(
        self, trade: TradeView, req: PayRequest, ctx: BizContext
    ) -> tuple[RiskHold, Routed]:
        """Checks before anything is written, for a trade that can be paid: risk (weak:
        falls back), and the channel's switch, limit and breaker (strong: fail fast,
        naming the channel) for the org the pay names, or the first org of the routing
        rules' candidates the guard admits (:func:`paycore.pay_routing.route_pay`).

        Returns the risk reservation (counted per merchant and user; the caller holds it
        around beginning the pay order, which gives it back if the order is not begun) and
        the routed context with the candidates left."""
        guard = self.deps.guard
        labels = ctx.as_labels() if guard is not None else None
        hold = self.deps.risk.decide(
            trade.merchant_id,
            trade.user_id,
            trade.amount,
            currency=trade.currency,
            trade_id=trade.id,
            guard=guard,
            caller="link.pay",
            labels=labels,
        )
        with hold:  # every org refusing gives the reservation back
            routed = route_pay(self.deps, trade, req, ctx)
        return hold, routed

    def _replay(self, merchant_id: str, pay_no: str, fingerprint: str) -> PayOrderView | None:
        with self.deps.db.reading() as s:
            found = s.execute(_PAY_ORDER_BY_NO, {"mid": merchant_id, "no": pay_no})
            po = found.scalar_one_or_none()
            if po is None:
                return None
            if po.request_hash != fingerprint:
                raise IdempotencyConflict("out_pay_no was used with a different request")
            items = s.execute(_ITEMS_OF, {"po_id": po.id}).scalars().all()
            return pay_order_view(po, list(items))
