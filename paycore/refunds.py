"""Refunds: partial or full, several per trade, never past what was paid.

A refund locks the trade (distributed lock, then the row) and raises the trade's
``refunded_amount`` with a conditional UPDATE that cannot pass ``paid_amount``,
so even without the lock two refunds cannot both take the last of the money
(:mod:`paycore.refund_begin`). Its channel parts are submitted after commit; their
results, completion and failure are :class:`paycore.settlement.SettlementService`'s.
"""

from __future__ import annotations

from .deps import CoreDeps
from .errors import DuplicateKey, IdempotencyConflict
from .models import RefundRequest, TradeDetail
from .pay_rules import check_refundable
from .refund_begin import begin_refund
from .settlement import SettlementService
from .trade_reads import TradeReader
from .views import find_trade


class RefundService:
    """Refunds paid trades, each refund a trade of its own."""

    def __init__(self, deps: CoreDeps, trades: TradeReader, settlement: SettlementService) -> None:
        self.deps = deps
        self.trades = trades
        self.settlement = settlement

    def refund(self, merchant_id: str, req: RefundRequest) -> TradeDetail:
        """Refund ``req.amount`` of a paid trade; returns the refund trade's detail.

        Idempotent on ``out_refund_no``. Raises :class:`RefundExceedsPaid` when the
        refund would take the total past the paid amount.
        """
        with self.deps.metrics.timed("refund"):
            return self._refund(merchant_id, req)

    def _refund(self, merchant_id: str, req: RefundRequest) -> TradeDetail:
        fingerprint = req.fingerprint()
        replay = self._replay(merchant_id, req.out_refund_no, fingerprint)
        if replay:
            return replay
        original = self.trades.get(merchant_id, req.out_trade_no)
        check_refundable(original.trade_type)
        with self.deps.trade_lock(original.id, link="link.refund"):
            replay = self._replay(merchant_id, req.out_refund_no, fingerprint)
            if replay:
                return replay
            try:
                requests = self.deps.db.run(
                    lambda s: begin_refund(
                        self.deps, self.settlement, s, original.id, req, fingerprint
                    )
                )
            except DuplicateKey:
                replay = self._replay(merchant_id, req.out_refund_no, fingerprint)
                if replay is None:
                    raise
                return replay
        self.deps.channel.submit(requests)
        return self.trades.detail(merchant_id, req.out_refund_no)

    def _replay(self, merchant_id: str, out_refund_no: str, fingerprint: str) -> TradeDetail | None:
        with self.deps.db.session() as s:
            t = find_trade(s, merchant_id, out_refund_no)
            if t is None:
                return None
            if t.trade_type != "refund" or t.request_hash != fingerprint:
                raise IdempotencyConflict("out_refund_no was used with a different request")
        return self.trades.detail(merchant_id, out_refund_no)
