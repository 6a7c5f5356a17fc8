"""The pay core over real HTTP: each bad input gets its error and changes nothing."""

from __future__ import annotations

from api_stack import stack  # noqa: F401 - fixture

BAD_CASES = [
    # (name, method, path, body, headers, status, code)
    ("no token", "POST", "/v1/trades", {}, {"Authorization": ""}, 401, "unauthenticated"),
    (
        "wrong token",
        "POST",
        "/v1/trades",
        {},
        {"Authorization": "Bearer pwk_nope"},
        401,
        "unauthenticated",
    ),
    ("malformed json", "POST", "/v1/trades", b"{not json", {}, 400, "malformed_request"),
    ("float amount", "POST", "/v1/trades", {"amount": 10.5}, {}, 422, "invalid_request"),
    ("string amount", "POST", "/v1/trades", {"amount": "100"}, {}, 422, "invalid_request"),
    ("zero amount", "POST", "/v1/trades", {"amount": 0}, {}, 422, "invalid_amount"),
    ("negative amount", "POST", "/v1/trades", {"amount": -5}, {}, 422, "invalid_amount"),
    ("huge amount", "POST", "/v1/trades", {"amount": 10**30}, {}, 422, "invalid_amount"),
    ("unknown currency", "POST", "/v1/trades", {"currency": "XXX"}, {}, 422, "unknown_currency"),
    ("bad trade type", "POST", "/v1/trades", {"trade_type": "loan"}, {}, 422, "invalid_request"),
    ("extra field", "POST", "/v1/trades", {"admin": True}, {}, 422, "invalid_request"),
    (
        "context not granted",
        "POST",
        "/v1/trades",
        {"order_type": "loans"},
        {},
        403,
        "context_not_granted",
    ),
    (
        "pay org not granted",
        "POST",
        "/v1/trades",
        {"pay_org_no": "SANDBOX_Z"},
        {},
        403,
        "context_not_granted",
    ),
    ("bad context chars", "POST", "/v1/trades", {"sub_type": "a b"}, {}, 422, "invalid_context"),
    (
        "idempotency conflict",
        "POST",
        "/v1/trades",
        {"out_trade_no": "seed", "amount": 2},
        {},
        409,
        "idempotency_conflict",
    ),
    ("unknown trade", "GET", "/v1/trades/none", None, {}, 404, "trade_not_found"),
    (
        "pay unknown trade",
        "POST",
        "/v1/trades/none/pay",
        {"tools": [{"tool": "channel", "amount": 1}]},
        {},
        404,
        "trade_not_found",
    ),
    (
        "tools do not add up",
        "POST",
        "/v1/trades/seed/pay",
        {"tools": [{"tool": "channel", "amount": 1}]},
        {},
        422,
        "invalid_pay_tools",
    ),
    (
        "insufficient balance",
        "POST",
        "/v1/trades/seed/pay",
        {"tools": [{"tool": "balance", "amount": 1000}]},
        {},
        409,
        "insufficient_balance",
    ),
    (
        "refund unpaid trade",
        "POST",
        "/v1/trades/seed/refunds",
        {"out_refund_no": "r", "amount": 1},
        {},
        409,
        "wrong_state",
    ),
    ("confirm instant trade", "POST", "/v1/trades/seed/confirm", None, {}, 409, "wrong_state"),
    (
        "oversized body",
        "POST",
        "/v1/trades",
        {"subject": "x" * 70_000},
        {},
        413,
        "request_too_large",
    ),
    (
        "control character",
        "POST",
        "/v1/trades",
        {"subject": "a\x00"},
        {},
        400,
        "invalid_characters",
    ),
    (
        "number outside the alphabet",
        "POST",
        "/v1/trades",
        {"out_trade_no": "a/b"},
        {},
        422,
        "invalid_request",
    ),
    ("path number outside the alphabet", "GET", "/v1/trades/x:y", None, {}, 422, "invalid_request"),
]


def test_bad_input_gets_its_error_and_changes_nothing(stack):
    stack.trade("seed", 1000)
    good = {
        "out_trade_no": "new-1",
        "trade_type": "instant",
        "amount": 100,
        "currency": "CNY",
        "user_id": "u1",
        "order_type": "goods",
        "sub_type": "physical",
        "pay_org_no": "SANDBOX_A",
    }
    before = stack.snapshot()
    for name, method, path, body, headers, status, code in BAD_CASES:
        kwargs: dict = {"headers": headers}
        if isinstance(body, bytes):
            kwargs["content"] = body
            kwargs["headers"] = headers | {"content-type": "application/json"}
        elif body is not None:
            kwargs["json"] = good | body if path == "/v1/trades" else body
        r = stack.http.request(method, path, **kwargs)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (name, r.text)
        err = r.json()["error"]
        assert err["request_id"] == r.headers["x-request-id"]
        assert "Traceback" not in r.text and "SELECT" not in r.text.upper().replace("SELECTED", "")
    assert stack.snapshot() == before
