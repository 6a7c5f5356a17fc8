"""The sandbox coupon service's books: coupons, their redemptions and its knobs.

Plain Python, thread-safe (one lock); :mod:`simulator.sandbox_coupons` serves it over HTTP.
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Protocol

__all__ = ["CouponBook", "CouponKnobs", "CouponRejection", "Redemption", "SandboxCoupon"]


class Redemption(Protocol):
    """What a redeem request names."""

    code: str
    merchant_id: str
    user_id: str
    amount: int
    currency: str
    trade_amount: int
    key: str


@dataclass(frozen=True, slots=True)
class CouponKnobs:
    """How the coupon service behaves; the defaults are a healthy service."""

    latency_ms: float = 0.0  #: added to every answer
    outage_rate: float = 0.0  #: answer 503 to any (non-admin) call
    timeout_rate: float = 0.0  #: do the work, but answer only after ``timeout_ms``
    timeout_ms: float = 10_000.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{f.name} must be a number")
            if f.name.endswith("_rate") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be in [0, 1]")
            if f.name.endswith("_ms") and not 0.0 <= value <= 600_000:
                raise ValueError(f"{f.name} must be in [0, 600000] ms")

    def updated(self, changes: dict[str, Any]) -> CouponKnobs:
        """A copy with ``changes``; unknown names or bad values raise ValueError."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        return replace(self, **changes)


@dataclass(slots=True)
class SandboxCoupon:
    """One coupon as the service books it."""

    code: str
    merchant_id: str
    user_id: str
    amount: int  #: face value, minor units
    currency: str
    min_trade_amount: int = 0  #: the trade must be at least this much
    status: str = "unused"  #: unused | redeemed
    key: str | None = None  #: the redemption holding it

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CouponRejection(Exception):
    """A client error: ``status`` and ``reason`` go back to the caller."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


class CouponBook:
    """The coupons and their redemptions, thread-safe (one lock)."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._coupons: dict[str, SandboxCoupon] = {}
        self._numbers = itertools.count(1)
        self.knobs = CouponKnobs()
        self.redeemed = 0
        self.released = 0

    def chance(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def issue(
        self,
        merchant_id: str,
        user_id: str,
        amount: int,
        currency: str,
        *,
        code: str | None = None,
        min_trade_amount: int = 0,
    ) -> SandboxCoupon:
        """A new unused coupon (409 ``exists`` when ``code`` is taken)."""
        with self._lock:
            code = code or f"CPN{next(self._numbers):06d}{self._rng.randrange(16**4):04x}"
            if code in self._coupons:
                raise CouponRejection(409, "exists", f"coupon {code} exists")
            c = SandboxCoupon(code, merchant_id, user_id, amount, currency, min_trade_amount)
            self._coupons[code] = c
            return replace(c)

    def get(self, code: str) -> SandboxCoupon | None:
        with self._lock:
            c = self._coupons.get(code)
            return None if c is None else replace(c)

    def unused(self, merchant_id: str, user_id: str, currency: str | None) -> list[SandboxCoupon]:
        with self._lock:
            return [
                replace(c)
                for c in self._coupons.values()
                if c.merchant_id == merchant_id
                and c.user_id == user_id
                and c.status == "unused"
                and (currency is None or c.currency == currency)
            ]

    def redeem(self, req: Redemption) -> SandboxCoupon:
        """Reserve the coupon for ``req.key``; the same key again answers the same."""
        with self._lock:
            c = self._coupons.get(req.code)
            if c is None:
                raise CouponRejection(404, "unknown", f"no coupon {req.code}")
            if (c.merchant_id, c.user_id) != (req.merchant_id, req.user_id):
                raise CouponRejection(403, "not_yours", f"coupon {req.code} is another user's")
            if c.status == "redeemed":
                if c.key == req.key:
                    return replace(c)
                raise CouponRejection(409, "used", f"coupon {req.code} is used")
            if c.currency != req.currency:
                raise CouponRejection(400, "currency", f"coupon {req.code} is in {c.currency}")
            if req.amount > c.amount:
                raise CouponRejection(400, "too_small", f"coupon {req.code} is worth {c.amount}")
            if req.trade_amount < c.min_trade_amount:
                raise CouponRejection(
                    400, "too_small", f"coupon {req.code} needs a trade of {c.min_trade_amount}"
                )
            c.status, c.key = "redeemed", req.key
            self.redeemed += 1
            return replace(c)

    def release(self, code: str, key: str) -> tuple[SandboxCoupon, bool]:
        """Give the coupon back from ``key``; (coupon, whether this call released it)."""
        with self._lock:
            c = self._coupons.get(code)
            if c is None:
                raise CouponRejection(404, "unknown", f"no coupon {code}")
            if c.status == "unused":
                return replace(c), False
            if c.key != key:
                raise CouponRejection(409, "used", f"coupon {code} is held by another pay")
            c.status, c.key = "unused", None
            self.released += 1
            return replace(c), True
