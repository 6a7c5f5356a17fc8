"""What the API-edge attack tests share: the body cap, request bodies to vary, a paid trade,
the error code of a response and the link-error samples from /metrics."""

from __future__ import annotations

from typing import Any

import httpx
from hostile_stack import hostile  # noqa: F401 - the fixture

CAP = 64 * 1024


def error_of(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def link_errors(stack) -> dict[str, float]:
    """``paywatch_link_requests_total`` samples with ``outcome="error"``, from /metrics."""
    r = httpx.get(f"{stack.api.url}/metrics")
    assert r.status_code == 200
    found: dict[str, float] = {}
    for line in r.text.splitlines():
        if line.startswith("paywatch_link_requests_total{") and 'outcome="error"' in line:
            labels, value = line.rsplit(" ", 1)
            found[labels] = float(value)
    return found


def paid_trade(m, no: str, amount: int = 1000) -> None:
    """A trade of ``m`` paid through the sandbox channel."""
    assert m.trade(no, amount).status_code == 200
    assert m.pay(no, [{"tool": "channel", "amount": amount}]).status_code == 200
    done = m.wait_for(no, lambda d: d["trade"]["status"] == "paid")
    assert done["trade"]["status"] == "paid", done


def trade_body(no: str, **kw: Any) -> dict[str, Any]:
    return {
        "out_trade_no": no,
        "trade_type": "instant",
        "amount": 100,
        "currency": "CNY",
        "user_id": "u1",
        "order_type": "goods",
        "sub_type": "physical",
        "pay_org_no": "SANDBOX_A",
    } | kw


def callback_body(**kw: Any) -> dict[str, Any]:
    return {
        "pay_org_no": "SANDBOX_A",
        "channel_txn_no": "1",
        "status": "success",
        "amount": 100,
        "currency": "CNY",
        "channel_ref": "ref-1",
    } | kw
