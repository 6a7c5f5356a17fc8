"""A synchronous HTTP client of the coupon service (the sandbox hosts one).

Requests are signed with the service's secret (:mod:`paycore.channels.signing`, the
gateway's scheme). Transport errors, timeouts, 5xx and malformed answers raise
:class:`CouponUnavailable`; a refusal of the coupon (4xx) raises :class:`CouponRejected`
with the service's reason. urllib3 rather than httpx, as the channel client (cheaper per
request, see :class:`paycore.channels.client.HttpChannelClient`); inside a guarded call
the timeout is the edge's (:func:`stability.guard.call_budget`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from stability.guard import call_budget

from ..channels.signing import signed_headers
from .errors import CouponRejected, CouponUnavailable

__all__ = ["Coupon", "HttpCouponClient"]

_REASONS = frozenset({"unknown", "used", "too_small", "not_yours", "currency", "invalid"})


@dataclass(frozen=True, slots=True)
class Coupon:
    """A coupon as the service shows it."""

    code: str
    amount: int  #: face value, minor units
    currency: str
    min_trade_amount: int = 0
    status: str = "unused"  #: unused | redeemed


class HttpCouponClient:
    """Talks to the coupon service at ``{base_url}/coupons/...``.

    ``timeout`` (seconds) applies outside guarded calls. ``pool`` may be shared.
    """

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        timeout: float = 1.0,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        if not secret:
            raise ValueError("secret must not be empty")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._secret = secret
        self._owns_pool = pool is None
        self._pool = pool if pool is not None else urllib3.PoolManager(maxsize=8)

    def __repr__(self) -> str:
        return f"HttpCouponClient({self.base_url!r})"

    def close(self) -> None:
        """Close the HTTP connections if this object created their pool."""
        if self._owns_pool:
            self._pool.clear()

    # -- operations ------------------------------------------------------------------------
    def redeem(
        self,
        *,
        code: str,
        merchant_id: str,
        user_id: str,
        amount: int,
        currency: str,
        trade_amount: int,
        key: str,
    ) -> Coupon:
        """Reserve ``code`` for ``key`` (the same key again is answered the same)."""
        body = {
            "code": code,
            "merchant_id": merchant_id,
            "user_id": user_id,
            "amount": amount,
            "currency": currency,
            "trade_amount": trade_amount,
            "key": key,
        }
        return _coupon(self._call("POST", "/redeem", "redeem", body), "redeem")

    def release(self, code: str, key: str) -> bool:
        """Give ``code`` back from ``key``; True when this call released it, False when
        it was not held (already released)."""
        data = self._call("POST", "/release", "release", {"code": code, "key": key})
        released = data.get("released")
        if not isinstance(released, bool):
            raise CouponUnavailable("coupon release: malformed answer", op="release")
        return released

    def coupons(self, merchant_id: str, user_id: str, currency: str | None = None) -> list[Coupon]:
        """``user_id``'s unused coupons at ``merchant_id`` (in ``currency`` if given)."""
        path = f"/users/{quote(merchant_id, safe='')}/{quote(user_id, safe='')}"
        params = {"currency": currency} if currency else None
        data = self._call("GET", path, "list", params=params)
        rows = data.get("coupons")
        if not isinstance(rows, list):
            raise CouponUnavailable("coupon list: malformed answer", op="list")
        return [_coupon(row, "list") for row in rows]

    def coupon(self, code: str) -> Coupon:
        """One coupon by code (:class:`CouponRejected` ``unknown`` when none)."""
        return _coupon(self._call("GET", f"/codes/{quote(code, safe='')}", "get"), "get")

    # -- transport -------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        op: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = signed_headers(self._secret, raw)
        if body is not None:
            headers["Content-Type"] = "application/json"
        seconds = call_budget(self.timeout)
        try:
            resp = self._pool.request(
                method,
                f"{self.base_url}/coupons{path}",
                body=raw or None,
                headers=headers,
                fields=params,
                timeout=urllib3.Timeout(connect=seconds, read=seconds),
                retries=False,
                redirect=False,
            )
        except NewConnectionError as exc:  # a refusal: urllib3 files it under connect timeouts
            raise CouponUnavailable(f"coupon {op}: {type(exc).__name__}", op=op) from exc
        except Urllib3Timeout as exc:
            raise CouponUnavailable(f"coupon {op}: timed out after {seconds:g}s", op=op) from exc
        except (HTTPError, OSError) as exc:
            raise CouponUnavailable(f"coupon {op}: {type(exc).__name__}", op=op) from exc
        data = _json(resp.data)
        reason = data.get("reason") if isinstance(data, dict) else None
        # only the service's own reasons blame the coupon; any other 4xx (no service at
        # that URL, our signature refused) is the deployment's problem: unavailable
        if 400 <= resp.status < 500 and reason in _REASONS:
            detail = data.get("detail")
            text = detail[:200] if isinstance(detail, str) else f"HTTP {resp.status}"
            raise CouponRejected(f"coupon {op}: {text}", reason=reason, status=resp.status)
        if not 200 <= resp.status < 300:
            raise CouponUnavailable(f"coupon {op}: HTTP {resp.status}", op=op, status=resp.status)
        if not isinstance(data, dict):
            raise CouponUnavailable(f"coupon {op}: answer is not a JSON object", op=op)
        return data


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _coupon(data: Any, op: str) -> Coupon:
    try:
        code, amount, currency = data["code"], data["amount"], data["currency"]
        minimum, status = data.get("min_trade_amount", 0), data.get("status", "unused")
    except (KeyError, TypeError):
        raise CouponUnavailable(f"coupon {op}: malformed answer", op=op) from None
    if not (
        isinstance(code, str)
        and isinstance(amount, int)
        and isinstance(currency, str)
        and isinstance(minimum, int)
        and isinstance(status, str)
    ):
        raise CouponUnavailable(f"coupon {op}: malformed answer", op=op)
    return Coupon(code, amount, currency, minimum, status)
