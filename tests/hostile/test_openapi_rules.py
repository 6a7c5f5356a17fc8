"""The OpenAPI document states the real rules of the API edge, and numbers drawn from its
published pattern are accepted (over real HTTP on PostgreSQL).
"""

from __future__ import annotations

import re

import httpx
from edge_requests import error_of
from hostile_stack import hostile  # noqa: F401 - the fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paycore.models import NUMBER_MAX, NUMBER_PATTERN
from paycore.money import CURRENCIES, MAX_AMOUNT

# -- 9. the OpenAPI document states the real rules -----------------------------------------


def _resolve(doc: dict, node: dict) -> dict:
    while "$ref" in node:
        node = doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _string_branch(node: dict) -> dict:
    """The string schema of ``node`` (``anyOf [string, null]`` for optional fields)."""
    for branch in node.get("anyOf", [node]):
        if branch.get("type") == "string":
            return branch
    raise AssertionError(f"no string branch in {node}")


def _body(doc: dict, path: str, method: str = "post") -> dict:
    op = doc["paths"][path][method]
    return _resolve(doc, op["requestBody"]["content"]["application/json"]["schema"])


def test_openapi_states_the_real_rules(hostile):
    """Old code: numbers had no pattern, amounts no range, the shadow header no enum, the
    callback no body at all; a fuzzer spent its examples on validation errors."""
    doc = httpx.get(f"{hostile.api.url}/openapi.json").json()
    trade = _body(doc, "/v1/trades")["properties"]
    for name in ("out_trade_no", "user_id", "payee_user_id", "origin_out_trade_no"):
        s = _string_branch(trade[name])
        assert (s["pattern"], s["maxLength"]) == (NUMBER_PATTERN, NUMBER_MAX), name
    assert (trade["amount"]["minimum"], trade["amount"]["maximum"]) == (1, MAX_AMOUNT)
    assert set(trade["currency"]["enum"]) == set(CURRENCIES)
    for name in ("order_type", "sub_type", "pay_org_no"):
        assert trade[name]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$", name
    pay = _body(doc, "/v1/trades/{out_trade_no}/pay")["properties"]
    assert (pay["tools"]["minItems"], pay["tools"]["maxItems"]) == (1, 4)
    tool = _resolve(doc, pay["tools"]["items"])["properties"]
    assert (tool["amount"]["minimum"], tool["amount"]["maximum"]) == (1, MAX_AMOUNT)
    assert _string_branch(pay["out_pay_no"])["pattern"] == NUMBER_PATTERN
    refund = _body(doc, "/v1/trades/{out_trade_no}/refunds")["properties"]
    assert refund["out_refund_no"]["pattern"] == NUMBER_PATTERN
    assert (refund["amount"]["minimum"], refund["amount"]["maximum"]) == (1, MAX_AMOUNT)
    assert refund["reason"]["maxLength"] == 256
    callback = _body(doc, "/v1/channels/{pay_org_no}/callback")["properties"]
    assert callback["channel_txn_no"]["pattern"] == NUMBER_PATTERN
    assert (callback["amount"]["minimum"], callback["amount"]["maximum"]) == (0, 2**63 - 1)
    assert callback["currency"]["pattern"] == "^[A-Z]{3}$"
    assert set(callback["status"]["enum"]) == {"success", "failed"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = {p["name"]: p for p in op.get("parameters", [])}
            if "out_trade_no" in params:
                schema = params["out_trade_no"]["schema"]
                assert (schema["pattern"], schema["maxLength"]) == (NUMBER_PATTERN, NUMBER_MAX)
            if "X-Paywatch-Shadow" in params:
                shadow = _string_branch(params["X-Paywatch-Shadow"]["schema"])
                assert shadow["enum"] == ["0", "1"], (path, method)
            if path.startswith("/v1/") and method in ("post", "put", "patch"):
                assert "413" in op["responses"], (path, method)


def test_numbers_generated_from_the_published_pattern_are_accepted(hostile):
    """What the schema promises is what the API takes: numbers drawn from the published
    pattern create trades that can then be queried by path; numbers outside it cannot."""
    doc = httpx.get(f"{hostile.api.url}/openapi.json").json()
    schema = _body(doc, "/v1/trades")["properties"]["out_trade_no"]
    pattern, max_len = schema["pattern"], schema["maxLength"]
    a, seen = hostile.a, set()

    @settings(
        max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(st.from_regex(pattern, fullmatch=True).filter(lambda s: len(s) <= max_len))
    def accepted(no: str) -> None:
        if no in seen:
            return
        seen.add(no)
        r = a.trade(no, 10)
        assert r.status_code == 200, (no, r.text)
        d = a.detail(no)
        assert d["trade"]["out_trade_no"] == no, (no, d)

    accepted()
    assert len(seen) >= 10
    for bad in ("a/b", "..", "x:y"):
        assert not re.fullmatch(pattern, bad)
        assert error_of(a.trade(bad, 10)) == (422, "invalid_request")
