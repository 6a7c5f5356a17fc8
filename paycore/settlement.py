"""Settlement: where every pay order ends, pays and refunds alike.

:class:`SettlementService` owns completion and failure: the pay and refund services call
it when an order finishes at once (balance only), and channel results (callbacks and
active queries) come to it through :meth:`SettlementService.on_channel_result`. Every
result is applied with compare-and-set on the item, under a row lock on its pay order,
so repeated or concurrent callbacks settle once. The rules live in
:mod:`paycore.pay_settlement`, :mod:`paycore.pay_results` and
:mod:`paycore.refund_settlement`; what a result means in :mod:`paycore.settle_rules`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from .channels import ChannelResult
from .compensation import item_of_refund_txn, settle_refund_callback
from .context import BizContext, use_context
from .db.schema import PayItem, PayOrder
from .deps import CoreDeps
from .errors import PayOrderNotFound
from .pay_reroute_late import settle_rerouted
from .pay_results import settle_pay_item
from .pay_settlement import complete_pay
from .refund_settlement import finish_refund, settle_refund_item
from .views import order_context

# built once, run with parameters (building costs as much CPU as the round trip)
_OF_ITEM = (PayItem.pay_org_no == bindparam("org"), PayItem.channel_txn_no == bindparam("txn"))
_ITEM = select(PayItem).where(*_OF_ITEM)
_ORDER_OF_ITEM = select(PayOrder).where(
    PayOrder.id == select(PayItem.pay_order_id).where(*_OF_ITEM).scalar_subquery()
)
_ORDER_OF_ITEM_LOCKED = _ORDER_OF_ITEM.with_for_update()


class SettlementService:
    """Completes and fails pay orders (pays and refunds), and settles channel results."""

    def __init__(self, deps: CoreDeps) -> None:
        self.deps = deps

    # -- orders finished by their own service -------------------------------------------
    def complete_pay(self, s: Session, po: PayOrder) -> None:
        """Complete ``po`` if every item has succeeded (see :func:`complete_pay`)."""
        complete_pay(self.deps, s, po)

    def finish_refund(
        self,
        s: Session,
        po: PayOrder,
        held: Sequence[PayItem],
        origin_id: int | None,
        ctx: BizContext,
    ) -> None:
        """Return a refund's ``held`` balance parts to the user and complete it."""
        finish_refund(self.deps, s, po, held, origin_id, ctx)

    # -- channel results -----------------------------------------------------------------
    def on_channel_result(self, result: ChannelResult) -> str:
        """Settle a channel's answer for one item; safe to call any number of times.

        Returns what happened: ``settled``, ``failed``, ``duplicate`` (already in that
        state: ignored), or ``exception`` (recorded for a full refund).
        """
        with self.deps.metrics.timed("callback", result.pay_org_no) as timed:
            outcome = self.deps.db.run(lambda s: self._settle(s, result))
            timed.reason = outcome  # settled | failed | duplicate | exception
            return outcome

    def _settle(self, s: Session, r: ChannelResult) -> str:
        if not r.pay_org_no or not r.channel_txn_no:  # never match a tool without a channel
            raise PayOrderNotFound("no pay item for this channel transaction")
        # lock the order first, then read the item: its status is read under the lock
        of_item = {"org": r.pay_org_no, "txn": r.channel_txn_no}
        lock = _ORDER_OF_ITEM_LOCKED if self.deps.db.is_postgres else _ORDER_OF_ITEM
        po = s.execute(lock, of_item).scalar_one_or_none()
        item = s.execute(_ITEM, of_item).scalar_one_or_none()
        if po is None or item is None:
            rerouted = settle_rerouted(self.deps, s, r)  # the old org of a moved item
            if rerouted is not None:
                return rerouted
            compensated = item_of_refund_txn(r.channel_txn_no)
            if compensated is not None:  # our own compensation refund's answer
                return settle_refund_callback(self.deps.ledger, self.deps, s, r, compensated)
            raise PayOrderNotFound("no pay item for this channel transaction")
        ctx = order_context(po)
        with use_context(ctx):
            if po.pay_type == "refund":
                return settle_refund_item(self.deps, s, po, item, r)
            return settle_pay_item(self.deps, s, po, item, r, ctx)
