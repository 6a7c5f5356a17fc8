"""The coupon service's client: the pay core redeems (reserves) a coupon before a pay and
releases it when the coupon's money goes back. The service is a weak dependency
(resource ``coupon`` of the map); :mod:`paycore.tools.coupon` is the pay tool over it."""

from .client import Coupon, HttpCouponClient
from .errors import CouponRejected, CouponUnavailable

__all__ = ["Coupon", "CouponRejected", "CouponUnavailable", "HttpCouponClient"]
