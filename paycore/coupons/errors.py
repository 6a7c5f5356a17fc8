"""Errors of the coupon service client (see :mod:`paycore.errors` for the tree they join).

Messages name the coupon's operation and, where it helps, its code; never the secret or
a signature.
"""

from __future__ import annotations

from ..errors import DependencyUnavailable, InvalidPayTools

__all__ = ["CouponRejected", "CouponUnavailable"]


class CouponUnavailable(DependencyUnavailable):
    """The coupon service did not answer in time, answered 5xx, or answered garbage.

    A weak dependency: the pay may go on without the coupon (the registry decides)."""

    code = "coupon_unavailable"

    def __init__(self, message: str = "", **details: object) -> None:
        super().__init__(message, resource="coupon", **details)


class CouponRejected(InvalidPayTools):
    """The coupon service refused the coupon: nothing was reserved.

    ``details["reason"]``: ``unknown`` (no such coupon), ``used`` (redeemed by another
    pay), ``too_small`` (worth less than the part, or the trade below its threshold),
    ``not_yours`` (another user's or merchant's), ``currency`` (another currency) or
    ``invalid`` (the request did not fit the service)."""

    code = "coupon_rejected"
