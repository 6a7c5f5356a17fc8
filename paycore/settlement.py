"""Settling channel results (callbacks and active queries) for pay items.

Every result is applied with compare-and-set on the item, under a row lock on its pay
order, so repeated or concurrent callbacks settle once. Money the channel took that the
order cannot keep (a wrong amount, a success after the item failed, a tool succeeding
after its order failed) is recorded as a classified exception for a full refund.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from . import status as st
from .channels import ChannelResult
from .compensation import item_of_refund_txn, settle_refund_callback
from .context import BizContext, use_context
from .db.schema import PayItem, PayOrder
from .errors import PayOrderNotFound
from .exceptions import record_exception
from .ledger import channel_clearing, platform_transit, user_balance
from .settle_rules import TAKEABLE, Verdict, describe, judge_success

if TYPE_CHECKING:
    from .core import PayCore


# built once, run with parameters (building costs as much CPU as the round trip)
_OF_ITEM = (PayItem.pay_org_no == bindparam("org"), PayItem.channel_txn_no == bindparam("txn"))
_ITEM = select(PayItem).where(*_OF_ITEM)
_ORDER_OF_ITEM = select(PayOrder).where(
    PayOrder.id == select(PayItem.pay_order_id).where(*_OF_ITEM).scalar_subquery()
)
_ORDER_OF_ITEM_LOCKED = _ORDER_OF_ITEM.with_for_update()


class ChannelSettlement:
    """The channel-result half of :class:`paycore.payments.PayService`."""

    core: PayCore

    def _complete(self, s: Session, po: PayOrder) -> None:  # provided by PayService
        raise NotImplementedError

    def _fail(self, s: Session, po: PayOrder, error_code: str, *, reopen: bool = True) -> None:
        raise NotImplementedError  # by PayService

    # -- channel results -------------------------------------------------------------------
    def on_channel_result(self, result: ChannelResult) -> str:
        """Settle a channel's answer for one item; safe to call any number of times.

        Returns what happened: ``settled``, ``failed``, ``duplicate`` (already in that
        state: ignored), or ``exception`` (recorded for a full refund).
        """
        with self.core.metrics.timed("callback", result.pay_org_no) as timed:
            outcome = self.core.db.run(lambda s: self._settle(s, result))
            timed.reason = outcome  # settled | failed | duplicate | exception
            return outcome

    def _settle(self, s: Session, r: ChannelResult) -> str:
        if not r.pay_org_no or not r.channel_txn_no:  # never match a tool without a channel
            raise PayOrderNotFound("no pay item for this channel transaction")
        # lock the order first, then read the item: its status is read under the lock
        of_item = {"org": r.pay_org_no, "txn": r.channel_txn_no}
        lock = _ORDER_OF_ITEM_LOCKED if self.core.db.is_postgres else _ORDER_OF_ITEM
        po = s.execute(lock, of_item).scalar_one_or_none()
        item = s.execute(_ITEM, of_item).scalar_one_or_none()
        if po is None or item is None:
            compensated = item_of_refund_txn(r.channel_txn_no)
            if compensated is not None:  # our own compensation refund's answer
                return settle_refund_callback(self.core, s, r, compensated)
            raise PayOrderNotFound("no pay item for this channel transaction")
        ctx = BizContext(po.merchant_id, po.order_type, po.sub_type, po.pay_org_no)
        with use_context(ctx):
            if po.pay_type == "refund":
                return self.core.refunds.settle_item(s, po, item, r)
            return self._settle_pay_item(s, po, item, r, ctx)

    def _settle_pay_item(
        self, s: Session, po: PayOrder, item: PayItem, r: ChannelResult, ctx: BizContext
    ) -> str:
        if item.status != st.PROCESSING:
            return self._after_final(s, po, item, r, ctx)
        if r.status == st.SUCCESS:
            verdict = judge_success(item.amount, po.currency, r.amount, r.currency)
            if verdict != "match":
                return self._mismatch(s, po, item, r, ctx, verdict)
            return self._succeed(s, po, item, r.amount, ctx)
        return self._item_failed(s, po, item, ctx)

    def _after_final(
        self, s: Session, po: PayOrder, item: PayItem, r: ChannelResult, ctx: BizContext
    ) -> str:
        """A result for an item that is already final: a repeat, a late success, or a
        contradiction for a human."""
        success = r.status == st.SUCCESS
        if item.status == r.status and (not success or r.amount == item.settled_amount):
            return "duplicate"
        if item.status == st.FAILED and success and r.amount == item.settled_amount:
            return "duplicate"  # the amount mismatch again: taken and recorded already
        # a success for an item that failed without the channel having taken anything
        late = item.status == st.FAILED and success and item.settled_amount is None
        plausible = judge_success(item.amount, po.currency, r.amount, r.currency) in TAKEABLE
        if late and plausible and po.pay_type != "withdraw":
            return self._late_success(s, po, item, r, ctx)
        record_exception(
            self.core,
            s,
            "other",
            biz_key=f"conflict:{item.id}",
            po=po,
            item=item,
            amount_taken=0,
            resolution="manual",
            detail=f"channel says {r.status} {r.amount} {r.currency} for an "
            f"item already {item.status}",
        )
        return "exception"

    def _mismatch(
        self,
        s: Session,
        po: PayOrder,
        item: PayItem,
        r: ChannelResult,
        ctx: BizContext,
        verdict: Verdict,
    ) -> str:
        """A success at another amount or currency: nothing settles at the wrong amount.

        A pay or recharge takes what the channel says it took when that is plausible
        (:data:`TAKEABLE`) and refunds it in full; the trade may be paid again. Otherwise
        (and for every withdraw) nothing is posted, the trade closes so the user's money is
        never held twice, and a human decides; a withdraw's hold stays in transit.
        """
        withdraw = po.pay_type == "withdraw"
        plausible = verdict in TAKEABLE
        take = plausible and not withdraw
        st.cas_status(
            s,
            PayItem,
            item.id,
            st.PROCESSING,
            st.FAILED,
            st.PAY_TRANSITIONS,
            finished_at=self.core.clock(),
            settled_amount=r.amount if plausible else None,
        )
        if take:
            self._take(s, po, item, r.amount, ctx)
        detail = describe(verdict, item.amount, po.currency, r.amount, r.currency)
        if withdraw:
            detail += f"; the withdraw hold of {item.amount} stays in transit"
        record_exception(
            self.core,
            s,
            "amount_mismatch",
            biz_key=str(item.id),
            po=po,
            item=item,
            amount_taken=r.amount if take else 0,
            detail=detail,
        )
        self._fail(s, po, "amount_mismatch", reopen=take)
        return "exception"

    def _succeed(
        self, s: Session, po: PayOrder, item: PayItem, amount: int, ctx: BizContext
    ) -> str:
        cur = po.currency
        st.cas_status(
            s,
            PayItem,
            item.id,
            st.PROCESSING,
            st.SUCCESS,
            st.PAY_TRANSITIONS,
            finished_at=self.core.clock(),
            settled_amount=amount,
        )
        if po.pay_type == "withdraw":
            self.core.ledger.move(
                s,
                biz_type="withdraw_out",
                biz_key=str(item.id),
                ctx=ctx,
                currency=cur,
                trade_id=po.trade_id,
                source=platform_transit(cur),
                target=channel_clearing(item.pay_org_no or ctx.pay_org_no, cur),
                amount=amount,
            )
        else:
            self._take(s, po, item, amount, ctx)
        if po.status == st.FAILED:  # another tool failed first: this money is a partial pay
            record_exception(
                self.core,
                s,
                "partial_payment",
                biz_key=f"late:{item.id}",
                po=po,
                item=item,
                amount_taken=amount,
                detail="a tool succeeded after its order had failed",
            )
            return "exception"
        self._complete(s, po)  # only when every item has succeeded
        return "settled"

    def _item_failed(self, s: Session, po: PayOrder, item: PayItem, ctx: BizContext) -> str:
        cur = po.currency
        st.cas_status(
            s,
            PayItem,
            item.id,
            st.PROCESSING,
            st.FAILED,
            st.PAY_TRANSITIONS,
            finished_at=self.core.clock(),
        )
        if po.pay_type == "withdraw":
            self.core.ledger.move(
                s,
                biz_type="withdraw_release",
                biz_key=str(item.id),
                ctx=ctx,
                currency=cur,
                trade_id=po.trade_id,
                source=platform_transit(cur),
                target=user_balance(po.merchant_id, po.user_id, cur),
                amount=item.amount,
            )
        self._fail(s, po, "channel_failed")
        return "failed"

    def _take(self, s: Session, po: PayOrder, item: PayItem, amount: int, ctx: BizContext) -> None:
        """Record money the channel collected: channel clearing → platform transit."""
        cur = po.currency
        self.core.ledger.move(
            s,
            biz_type="pay_item",
            biz_key=str(item.id),
            ctx=ctx,
            currency=cur,
            trade_id=po.trade_id,
            source=channel_clearing(item.pay_org_no or ctx.pay_org_no, cur),
            target=platform_transit(cur),
            amount=amount,
        )

    def _late_success(
        self, s: Session, po: PayOrder, item: PayItem, r: ChannelResult, ctx: BizContext
    ) -> str:
        """The channel took money for an item we had already failed."""
        self._take(s, po, item, r.amount, ctx)
        paid_elsewhere = s.execute(
            select(PayOrder.id).where(
                PayOrder.trade_id == po.trade_id,
                PayOrder.status == st.SUCCESS,
                PayOrder.id != po.id,
            )
        ).first()
        kind = "duplicate_payment" if paid_elsewhere else "other"
        record_exception(
            self.core,
            s,
            kind,
            biz_key=f"late:{item.id}",
            po=po,
            item=item,
            amount_taken=r.amount,
            detail="channel success after the item failed",
        )
        return "exception"
