"""The coupon tool: a coupon redeemed at the coupon service pays its part at once.

The coupon's money is the platform's marketing expense (``coupon_funding(currency)``):
the pay moves it into transit like any instant part; a refund share or a failed order's
part goes back there, and the coupon is given back to the user at the service
(:meth:`CouponTool.release`). The service is a weak dependency (resource ``coupon``):
every call goes through ``guard.call("coupon", ...)``; an outage is :class:`ToolSkipped`
(the registry decides whether the pay goes on without the coupon), a refusal of the
coupon itself (unknown, used, too small, another user's) is
:class:`~paycore.coupons.CouponRejected` (4xx, nothing written).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from stability.errors import StabilityError
from stability.guard import current_caller

from ..coupons import CouponRejected, CouponUnavailable
from ..db.schema import PayItem, PayOrder
from ..errors import InvalidPayTools
from ..ledger import AccountRef, coupon_funding
from ..models import PayTool, TradeView
from .base import ToolEnv, ToolPlugin
from .errors import ToolSkipped

__all__ = ["CouponTool"]

log = logging.getLogger(__name__)
T = TypeVar("T")
RESOURCE = "coupon"
#: who a call is attributed to when the current caller has no ``coupon`` edge: a
#: redemption (and the cashier's listing) is the pay's; a release the refund's, or the
#: compensation's (a failed order's money going back)
_PAY, _REFUND, _COMPENSATION = "link.pay", "link.refund", "job.compensation"
_MEMO_SIZE = 4096


class _Refused:
    """What a guarded call answers when the guard fell back (the service is out)."""


_OUT = _Refused()


class CouponTool(ToolPlugin):
    """A coupon part ``{"tool": "coupon", "amount": N, "ref": "<code>"}``."""

    name: ClassVar[str] = "coupon"
    trade_types: ClassVar[frozenset[str]] = frozenset({"instant", "guaranteed"})

    def __init__(self) -> None:
        # redemption keys of parts prepared here, for giving back a pay order that was
        # never begun (its items were never stored, so the key cannot be read back)
        self._keys: OrderedDict[tuple[str, int, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def resource(self, pay_org_no: str | None) -> str | None:
        return RESOURCE

    def validate(self, trade: TradeView, part: PayTool) -> None:
        if not part.ref:
            raise InvalidPayTools("a coupon part needs ref: the coupon code", field="tools.ref")

    def source(
        self, merchant_id: str, user_id: str, currency: str, item: PayItem | None
    ) -> AccountRef:
        return coupon_funding(currency)

    # -- the coupon service ----------------------------------------------------------------
    def prepare(self, env: ToolEnv, trade: TradeView, part: PayTool, key: str) -> PayTool:
        """Redeem (reserve) ``part.ref`` for ``key`` at the service."""
        self.validate(trade, part)
        code = str(part.ref)
        client = env.coupons
        if client is None:
            raise ToolSkipped("no coupon service is configured", resource=RESOURCE)
        answer = _guarded(
            env.guard,
            _caller(env.guard, _PAY),
            lambda: client.redeem(
                code=code,
                merchant_id=trade.merchant_id,
                user_id=trade.user_id,
                amount=part.amount,
                currency=trade.currency,
                trade_amount=trade.amount,
                key=key,
            ),
        )
        if isinstance(answer, _Refused):
            # a redeem that timed out may have gone through: give it back (idempotent)
            self._give_back(env.guard, client, code, key)
            raise ToolSkipped("the coupon service is unavailable", resource=RESOURCE)
        seq = key.rsplit(":", 1)[-1]
        if not seq.isdigit():  # not the registry's "<merchant>:<pay no>:<seq>": no memo
            return part
        with self._lock:
            self._keys[(trade.merchant_id, int(seq), code)] = key
            while len(self._keys) > _MEMO_SIZE:
                self._keys.popitem(last=False)
        return part

    @staticmethod
    def _give_back(guard: Any, client: Any, code: str, key: str) -> None:
        # unknown, or held by another pay: nothing of ours to give back
        with contextlib.suppress(CouponRejected):
            _guarded(guard, _caller(guard, _PAY), lambda: client.release(code, key))

    def release(self, env: ToolEnv, item: PayItem) -> None:
        """Give the coupon of ``item`` (a pay item, a refund's item, or a part of a pay
        order never begun) back to its user, once its whole amount went back; never
        raises."""
        try:
            self._release(env, item)
        except Exception:  # noqa: BLE001 - weak by contract: logged, never a failed refund
            log.exception("coupon release of pay item %s failed", item.id)

    def _release(self, env: ToolEnv, item: PayItem) -> None:
        client = env.coupons
        if client is None or not item.tool_ref:
            return
        found = self._redemption(env, item)
        if found is None:
            return
        code, key = found
        default = _REFUND if item.origin_item_id is not None else _COMPENSATION
        if item.pay_order_id is None:
            default = _PAY  # a pay order never begun: the pay gives it back
        answer = _guarded(env.guard, _caller(env.guard, default), lambda: client.release(code, key))
        if isinstance(answer, _Refused):
            log.warning("coupon %s not released: the coupon service is unavailable", code)

    def _redemption(self, env: ToolEnv, item: PayItem) -> tuple[str, str] | None:
        """(code, redemption key) of ``item``'s coupon, or None when it must stay
        redeemed (a refund that gave back only part of it)."""
        code = str(item.tool_ref)
        if item.id is None or item.pay_order_id is None:  # never stored: prepared here
            with self._lock:
                key = self._keys.pop((item.merchant_id, item.seq, code), None)
            if key is None:
                log.warning("coupon %s not released: its redemption is unknown here", code)
            return None if key is None else (code, key)
        with env.db.reading() as s:
            paid = s.get(PayItem, item.origin_item_id or item.id)
            if paid is None:
                return None
            if item.origin_item_id is not None and paid.refunded_amount < paid.amount:
                return None  # a partial refund: the coupon stays used
            order = s.get(PayOrder, paid.pay_order_id)
            if order is None:
                return None
            key = f"{paid.merchant_id}:{order.out_pay_no}:{paid.seq}"
            code = paid.tool_ref or code
        with self._lock:
            self._keys.pop((paid.merchant_id, paid.seq, code), None)
        return code, key

    def offer(self, env: ToolEnv, trade: TradeView) -> dict[str, Any] | None:
        """The payer's unused coupons in the trade's currency that this trade may use."""
        if trade.trade_type not in self.trade_types:
            return None
        client = env.coupons
        down = {"tool": self.name, "available": False, "reason": "unavailable", "coupons": []}
        if client is None:
            return down
        try:
            answer = _guarded(
                env.guard,
                _caller(env.guard, _PAY),
                lambda: client.coupons(trade.merchant_id, trade.user_id, trade.currency),
            )
        except CouponRejected:
            return down
        if isinstance(answer, _Refused):
            return down
        usable = [
            {
                "code": c.code,
                "amount": min(c.amount, trade.amount),
                "face_value": c.amount,
                "currency": c.currency,
            }
            for c in answer
            if c.currency == trade.currency and c.min_trade_amount <= trade.amount
        ]
        return {"tool": self.name, "available": bool(usable), "coupons": usable}


def _caller(guard: Any, default: str) -> str:
    """The current caller when the map has its ``coupon`` edge, else ``default``."""
    caller = current_caller()
    dmap = getattr(guard, "map", None)
    if caller and dmap is not None and dmap.edge(caller, RESOURCE) is not None:
        return caller
    return default


def _guarded(guard: Any, caller: str, fn: Callable[[], T]) -> T | _Refused:
    """``fn()`` through the guard's weak ``coupon`` edge as ``caller``: its answer, or
    :data:`_OUT` when the service is out (refused, failed, timed out). A refusal of the
    coupon itself is an answer (the service works), raised after the guard recorded it."""

    def attempt() -> T | CouponRejected:
        try:
            return fn()
        except CouponRejected as exc:
            return exc

    try:
        if guard is None:
            answer: Any = attempt()
        else:
            answer = guard.call(RESOURCE, attempt, caller=caller, fallback=lambda: _OUT)
    except CouponUnavailable:
        return _OUT
    except StabilityError as exc:  # no coupon edge in an edited map, a full bulkhead
        log.warning("coupon service call refused: %s", exc)
        return _OUT
    if isinstance(answer, CouponRejected):
        raise answer
    return answer
