"""PayRequest, PayTool and RefundRequest validate at construction; their fingerprints."""

from __future__ import annotations

from typing import Any

import pytest
from trade_requests import raises_exactly

from paycore.errors import (
    InvalidAmount,
    InvalidCharacters,
    InvalidContext,
    InvalidPayTools,
    InvalidRequest,
)
from paycore.models import PayRequest, PayTool, RefundRequest


def test_pay_request_accepts_one_to_four_tools_and_stores_a_tuple() -> None:
    for n in range(1, 5):
        req = PayRequest("T-1", [PayTool("balance", 1)] * n)  # type: ignore[arg-type]
        assert isinstance(req.tools, tuple)
        assert len(req.tools) == n


@pytest.mark.parametrize("n", [0, 5, 8])
def test_pay_request_rejects_tool_counts(n: int) -> None:
    raises_exactly(InvalidPayTools, PayRequest, "T-1", (PayTool("balance", 1),) * n)


@pytest.mark.parametrize("tool", ["gift card", "Balance", "", None, "a" * 17, "1x"])
def test_pay_tool_rejects_malformed_tool_names(tool: Any) -> None:
    # which names exist is the tool registry's business (tests/unit/test_tool_registry.py)
    raises_exactly(InvalidPayTools, PayTool, tool, 100)


@pytest.mark.parametrize("amount", [0, -1, 1.5, "1", True, None])
def test_pay_tool_rejects_bad_amounts(amount: Any) -> None:
    exc = raises_exactly(InvalidAmount, PayTool, "channel", amount)
    assert exc.details == {"field": "tools.amount"}


def test_pay_tool_accepts_known_tools() -> None:
    assert PayTool("balance", 1).tool == "balance"
    assert PayTool("channel", 2).amount == 2


def test_pay_no_defaults_to_out_trade_no() -> None:
    tools = (PayTool("channel", 100),)
    assert PayRequest("T-1", tools).pay_no == "T-1"
    assert PayRequest("T-1", tools, out_pay_no="P-9").pay_no == "P-9"


def test_pay_request_fingerprint() -> None:
    tools = (PayTool("channel", 100),)
    implicit = PayRequest("T-1", tools)
    # an explicit out_pay_no equal to the default is the same request
    assert implicit.fingerprint() == PayRequest("T-1", tools, out_pay_no="T-1").fingerprint()
    as_list = PayRequest("T-1", list(tools))  # type: ignore[arg-type]
    assert implicit.fingerprint() == as_list.fingerprint()
    assert implicit.fingerprint() != PayRequest("T-1", tools, out_pay_no="P-2").fingerprint()
    assert implicit.fingerprint() != PayRequest("T-1", (PayTool("channel", 101),)).fingerprint()
    assert implicit.fingerprint() != PayRequest("T-1", (PayTool("balance", 100),)).fingerprint()
    assert implicit.fingerprint() != PayRequest("T-1", tools, pay_org_no="ORG2").fingerprint()
    assert implicit.fingerprint() != PayRequest("T-2", tools).fingerprint()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"out_trade_no": ""}, InvalidRequest),
        ({"out_trade_no": "x" * 65}, InvalidRequest),
        ({"out_pay_no": ""}, InvalidRequest),
        ({"out_pay_no": "x" * 65}, InvalidRequest),
        ({"out_pay_no": "refund:R1"}, InvalidRequest),  # the refunds' generated namespace
        ({"out_pay_no": "p\x00"}, InvalidCharacters),
        ({"out_trade_no": "a/b"}, InvalidRequest),
        ({"pay_org_no": "bad org"}, InvalidContext),
        ({"pay_org_no": ""}, InvalidContext),
    ],
)
def test_pay_request_rejects_fields(kwargs: dict[str, Any], error: type) -> None:
    args: dict[str, Any] = {"out_trade_no": "T-1", "tools": (PayTool("channel", 1),)} | kwargs
    raises_exactly(error, PayRequest, **args)


# -- RefundRequest -------------------------------------------------------------------------


def test_refund_request_valid() -> None:
    req = RefundRequest("T-1", "R-1", 500, reason="r" * 256)
    assert (req.out_trade_no, req.out_refund_no, req.amount) == ("T-1", "R-1", 500)


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"out_trade_no": ""}, InvalidRequest, "out_trade_no"),
        ({"out_trade_no": "x" * 65}, InvalidRequest, "out_trade_no"),
        ({"out_refund_no": ""}, InvalidRequest, "out_refund_no"),
        ({"out_refund_no": None}, InvalidRequest, "out_refund_no"),
        ({"out_refund_no": "r:1"}, InvalidRequest, "out_refund_no"),
        ({"reason": "oops\x00"}, InvalidCharacters, "reason"),
        ({"amount": 0}, InvalidAmount, "amount"),
        ({"amount": -100}, InvalidAmount, "amount"),
        ({"amount": 5.0}, InvalidAmount, "amount"),
        ({"amount": "5"}, InvalidAmount, "amount"),
        ({"reason": "r" * 257}, InvalidRequest, "reason"),
        ({"reason": None}, InvalidRequest, "reason"),
    ],
)
def test_refund_request_rejects(kwargs: dict[str, Any], error: type, field: str) -> None:
    args: dict[str, Any] = {"out_trade_no": "T-1", "out_refund_no": "R-1", "amount": 1} | kwargs
    exc = raises_exactly(error, RefundRequest, **args)
    assert exc.details.get("field") == field


def test_refund_fingerprint() -> None:
    a = RefundRequest("T-1", "R-1", 500, reason="x")
    assert a.fingerprint() == RefundRequest("T-1", "R-1", 500, reason="x").fingerprint()
    assert a.fingerprint() != RefundRequest("T-1", "R-1", 501, reason="x").fingerprint()
    assert a.fingerprint() != RefundRequest("T-1", "R-2", 500, reason="x").fingerprint()
    assert a.fingerprint() != RefundRequest("T-1", "R-1", 500, reason="y").fingerprint()
