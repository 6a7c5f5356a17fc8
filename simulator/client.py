"""The merchants' side of the pay core HTTP API: one small client per merchant token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backends.errors import HttpUnavailable
from backends.http import JsonHttp


@dataclass(frozen=True)
class ApiAnswer:
    """One API answer: the HTTP status, the JSON body and the error code if any."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def code(self) -> str:
        """The error code (``""`` on success; ``transport`` when no answer came)."""
        if self.ok:
            return ""
        err = self.body.get("error")
        return str(err.get("code", "")) if isinstance(err, dict) else f"http_{self.status}"


class MerchantClient:
    """Calls ``/v1`` as one merchant; transport errors become status 0 answers."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 10.0) -> None:
        self._http = JsonHttp(
            api_url,
            maxsize=16,  # the simulator calls from many threads
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
        )

    def __repr__(self) -> str:  # never show the token
        return f"MerchantClient({self._http.base_url})"

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> ApiAnswer:
        try:
            resp = self._http.request(method, path, json=body)
        except HttpUnavailable as exc:
            return ApiAnswer(
                0, {"error": {"code": "transport", "message": type(exc.__cause__ or exc).__name__}}
            )
        try:
            data = resp.json()
        except ValueError:
            data = {}
        return ApiAnswer(resp.status, data if isinstance(data, dict) else {})

    def create_trade(self, **fields: Any) -> ApiAnswer:
        """``POST /v1/trades`` with the given body fields."""
        return self._call("POST", "/v1/trades", fields)

    def pay(
        self,
        out_trade_no: str,
        tools: list[dict[str, Any]],
        *,
        out_pay_no: str | None = None,
        pay_org_no: str | None = None,
    ) -> ApiAnswer:
        """``POST /v1/trades/{no}/pay``."""
        body: dict[str, Any] = {"tools": tools}
        if out_pay_no:
            body["out_pay_no"] = out_pay_no
        if pay_org_no:
            body["pay_org_no"] = pay_org_no
        return self._call("POST", f"/v1/trades/{out_trade_no}/pay", body)

    def cashier(self, out_trade_no: str) -> ApiAnswer:
        """``GET /v1/trades/{no}/cashier``: the pay methods this trade may use now."""
        return self._call("GET", f"/v1/trades/{out_trade_no}/cashier")

    def refund(self, out_trade_no: str, out_refund_no: str, amount: int) -> ApiAnswer:
        """``POST /v1/trades/{no}/refunds``."""
        body = {"out_refund_no": out_refund_no, "amount": amount, "reason": "simulated"}
        return self._call("POST", f"/v1/trades/{out_trade_no}/refunds", body)

    def close_trade(self, out_trade_no: str) -> ApiAnswer:
        return self._call("POST", f"/v1/trades/{out_trade_no}/close")

    def confirm(self, out_trade_no: str) -> ApiAnswer:
        return self._call("POST", f"/v1/trades/{out_trade_no}/confirm")

    def detail(self, out_trade_no: str) -> ApiAnswer:
        """``GET /v1/trades/{no}``: the trade, its pay orders and its refunds."""
        return self._call("GET", f"/v1/trades/{out_trade_no}")
