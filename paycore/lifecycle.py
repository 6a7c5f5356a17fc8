"""Trades that end on their own: unpaid trades expire, guaranteed trades confirm.

**Expiry.** A trade still ``created`` (never paid, or reopened by a failed pay)
``trade_expiry_s`` seconds after its creation (a merchant setting, 30 minutes by default)
is closed with one compare-and-set ``created -> closed`` and a ``trade.closed``
notification in the same transaction. A pay racing the expiry runs the pay's own
compare-and-set ``created -> paying``: one of the two moves the row, the other finds it
moved (the pay answers :class:`~paycore.errors.WrongState` and writes nothing), so a
trade is never both paid and closed.

**Auto-confirm.** A guaranteed trade ``paid`` for ``confirm_hold_s`` seconds (counted
from its pay order's success, 7 days by default) is confirmed through
:meth:`paycore.trades.TradeService.confirm`, as if the buyer had confirmed: the escrow
goes to the merchant's payable, net of the fee. A trade with a refund in flight waits
for the next run (the refund's hold was taken from the escrow; it must end there).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Protocol

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased

from . import status as st
from .db.schema import Merchant, PayOrder, Trade
from .deps import CoreDeps
from .errors import PayCoreError
from .notify.outbox import notify_trade_closed

log = logging.getLogger(__name__)


class Confirmer(Protocol):
    """What confirms a guaranteed trade (:class:`paycore.trades.TradeService`)."""

    def confirm(self, merchant_id: str, out_trade_no: str) -> object: ...


class TradeLifecycle:
    """Closes expired unpaid trades and confirms guaranteed trades whose hold ended.

    Safe to run on several workers at once (every change is a compare-and-set, a
    confirmation is repeatable); the worker runs each as a singleton job anyway.
    """

    def __init__(self, deps: CoreDeps, trades: Confirmer) -> None:
        self.deps = deps
        self.trades = trades

    # -- expiry ------------------------------------------------------------------------------
    def expire_due(self, limit: int = 200) -> int:
        """Close up to ``limit`` trades past their merchant's expiry; how many this call
        closed (a trade a pay took meanwhile is left to the pay)."""
        closed = 0
        for trade_id in self._expired(limit):
            if self.deps.db.run(partial(self._close, trade_id=trade_id)):
                closed += 1
        if closed:
            log.info("trade expiry: %d unpaid trade(s) closed", closed)
        return closed

    def _expired(self, limit: int) -> list[int]:
        """Ids of created trades older than their merchant's ``trade_expiry_s``, oldest
        first: one query per distinct expiry setting (a handful), so the cut-off is a
        plain timestamp on every database."""
        now = self.deps.clock()
        with self.deps.db.reading() as s:
            expiries = s.execute(select(Merchant.trade_expiry_s).distinct()).scalars().all()
            found: list[tuple[object, int]] = []
            for expiry in expiries:
                rows = s.execute(
                    select(Trade.created_at, Trade.id)
                    .join(Merchant, Merchant.merchant_id == Trade.merchant_id)
                    .where(
                        Trade.status == st.CREATED,
                        Trade.trade_type != "refund",
                        Merchant.trade_expiry_s == expiry,
                        Trade.created_at <= now - timedelta(seconds=int(expiry)),
                    )
                    .order_by(Trade.created_at)
                    .limit(limit)
                ).all()
                found += [(r.created_at, r.id) for r in rows]
        found.sort()
        return [tid for _, tid in found[:limit]]

    def _close(self, s: Session, trade_id: int) -> bool:
        """``created -> closed`` and its notification, or nothing if the trade moved."""
        if not st.cas_status(
            s,
            Trade,
            trade_id,
            st.CREATED,
            st.CLOSED,
            st.TRADE_TRANSITIONS,
            updated_at=self.deps.clock(),
        ):
            return False
        notify_trade_closed(s, self.deps, trade_id, "expired")
        return True

    # -- auto-confirm ------------------------------------------------------------------------
    def confirm_due(self, limit: int = 200) -> int:
        """Confirm up to ``limit`` guaranteed trades whose hold has ended; how many were
        confirmed (one the buyer confirmed meanwhile counts: the call is repeatable)."""
        confirmed = 0
        for merchant_id, out_trade_no in self._held_out(limit):
            try:
                self.trades.confirm(merchant_id, out_trade_no)
            except PayCoreError as exc:  # refunded in full meanwhile, lock busy: next run
                log.info("auto-confirm %s/%s skipped: %s", merchant_id, out_trade_no, exc.code)
                continue
            confirmed += 1
        if confirmed:
            log.info("auto-confirm: %d guaranteed trade(s) confirmed", confirmed)
        return confirmed

    def _held_out(self, limit: int) -> list[tuple[str, str]]:
        """(merchant, out_trade_no) of paid guaranteed trades whose pay succeeded more than
        their merchant's ``confirm_hold_s`` ago and that have no refund in flight."""
        now = self.deps.clock()
        refund = aliased(Trade)
        in_flight = exists().where(refund.origin_trade_id == Trade.id, refund.status == st.PAYING)
        with self.deps.db.reading() as s:
            holds = s.execute(select(Merchant.confirm_hold_s).distinct()).scalars().all()
            found: list[tuple[object, str, str]] = []
            for hold in holds:
                rows = s.execute(
                    select(PayOrder.finished_at, Trade.merchant_id, Trade.out_trade_no)
                    .join(PayOrder, PayOrder.trade_id == Trade.id)
                    .join(Merchant, Merchant.merchant_id == Trade.merchant_id)
                    .where(
                        Trade.status == st.PAID,
                        Trade.trade_type == "guaranteed",
                        PayOrder.pay_type == "pay",
                        PayOrder.status == st.SUCCESS,
                        Merchant.confirm_hold_s == hold,
                        PayOrder.finished_at <= now - timedelta(seconds=int(hold)),
                        ~in_flight,
                    )
                    .order_by(PayOrder.finished_at)
                    .limit(limit)
                ).all()
                found += [(r.finished_at, r.merchant_id, r.out_trade_no) for r in rows]
        found.sort()
        return [(mid, no) for _, mid, no in found[:limit]]
