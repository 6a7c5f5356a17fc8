"""The simulated marketing side: coupons issued at the sandbox's coupon service.

The simulator pays with coupons only when it has the sandbox's admin access
(``SimConfig.sandbox_url`` and ``sandbox_admin_token``): it issues a coupon for the
payer just before the pay (``POST /coupons/admin/issue``), as a merchant's campaign
would have. Without that access, or once the sandbox answers that it has no coupon
service or refuses the token, :meth:`CouponIssuer.issue` answers None and the flow
pays without a coupon.
"""

from __future__ import annotations

import logging
import threading

from backends.errors import HttpUnavailable
from backends.http import JsonHttp

log = logging.getLogger(__name__)
ADMIN_HEADER = "X-Sandbox-Admin"


class CouponIssuer:
    """Issues coupons at the sandbox's coupon service (thread-safe)."""

    def __init__(
        self, sandbox_url: str | None, admin_token: str | None, *, timeout: float = 5.0
    ) -> None:
        self._http: JsonHttp | None = None
        if sandbox_url and admin_token:
            self._http = JsonHttp(
                sandbox_url,
                timeout=timeout,
                headers={ADMIN_HEADER: admin_token},
            )
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the token
        return f"CouponIssuer(enabled={self.enabled})"

    @property
    def enabled(self) -> bool:
        """Whether coupons can (still) be issued."""
        return self._http is not None

    def issue(
        self, merchant_id: str, user_id: str, amount: int, currency: str = "CNY"
    ) -> str | None:
        """A new coupon's code for ``user_id`` of ``merchant_id`` worth ``amount``; None when
        no coupon could be issued (no access, the service down or refusing)."""
        http = self._http
        if http is None or amount <= 0:
            return None
        body = {
            "merchant_id": merchant_id,
            "user_id": user_id,
            "amount": amount,
            "currency": currency,
        }
        try:
            resp = http.post("/coupons/admin/issue", json=body)
        except HttpUnavailable as exc:
            log.debug("coupon issue failed: %s", type(exc).__name__)
            return None
        if resp.status in (401, 403, 404):  # no coupon service here, or not ours to run
            log.warning(
                "sandbox coupon service refused issuing (%s): paying without coupons",
                resp.status,
            )
            self.close()
            return None
        if resp.status != 200:
            return None
        try:
            code = resp.json().get("code")
        except ValueError:
            return None
        return str(code) if code else None

    def close(self) -> None:
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()
