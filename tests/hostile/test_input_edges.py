"""Attacks on the API edge: hostile characters, bodies that outgrow the cap while they
stream, caller numbers that can never be addressed again or that squat on numbers the
pay core generates, and an OpenAPI document that hides the real rules.

Each test sends what a hostile merchant (or a faulty channel) would, over real HTTP on
PostgreSQL; each failed on the code before the fix (the commit note says how).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest
from hostile_stack import hostile  # noqa: F401 - the fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paycore.models import NUMBER_MAX, NUMBER_PATTERN
from paycore.money import CURRENCIES, MAX_AMOUNT

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


# -- 5. client mistakes are client errors ------------------------------------------------


def test_control_characters_are_refused_as_client_errors_and_never_count_as_link_errors(
    hostile,
):
    """Old code: NUL in subject/payee_user_id/reason/channel_txn_no reached PostgreSQL,
    came back as 503 ``storage_unavailable`` and counted as ``outcome="error"``."""
    a = hostile.a
    paid_trade(a, "nul-paid")
    before_counts, before_errors = hostile.counts(), link_errors(hostile)
    attacks = {
        "subject NUL": lambda: a.trade("nul-1", subject="pen\x00"),
        "subject bidi override": lambda: a.trade("nul-2", subject="abc\u202etxt.exe"),
        "subject lone surrogate": lambda: a.http.post(  # sent escaped, as \\ud800
            "/v1/trades",
            content=json.dumps(trade_body("nul-3", subject="\ud800")).encode(),
            headers={"content-type": "application/json"},
        ),
        "payee NUL on instant": lambda: a.trade("nul-4", payee_user_id="u\x00"),
        "payee NUL on transfer": lambda: a.trade(
            "nul-5", trade_type="transfer", payee_user_id="u2\x00"
        ),
        "out_trade_no ESC": lambda: a.trade("nul\x1b6"),
        "currency NUL": lambda: a.trade("nul-7", currency="CN\x00"),
        "order_type NUL": lambda: a.trade("nul-8", order_type="goods\x00"),
        "refund reason NUL": lambda: a.refund("nul-paid", "nul-r1", 10, reason="oops\x00"),
        "refund no NUL": lambda: a.refund("nul-paid", "nul\x00r2", 10),
        "out_pay_no NUL": lambda: a.pay(
            "nul-paid", [{"tool": "channel", "amount": 1000}], out_pay_no="p\x00"
        ),
        "path NUL": lambda: a.http.get("/v1/trades/nul%00paid"),
        "path NUL on pay": lambda: a.pay("nul%00paid", [{"tool": "channel", "amount": 1}]),
        "query NUL": lambda: a.http.get("/v1/trades/nul-paid?x=%00"),
        "callback txn NUL": lambda: hostile.callback(
            "SANDBOX_A", callback_body(channel_txn_no="1\x00")
        ),
        "callback ref NUL": lambda: hostile.callback(
            "SANDBOX_A", callback_body(channel_ref="r\x00")
        ),
        "callback path NUL": lambda: httpx.post(
            f"{hostile.api.url}/v1/channels/SANDBOX_A%00/callback", json=callback_body()
        ),
    }
    answers = {name: attack() for name, attack in attacks.items()}
    wrong = {
        name: (r.status_code, r.text[:160])
        for name, r in answers.items()
        if error_of(r) != (400, "invalid_characters")
    }
    assert not wrong
    for r in answers.values():
        assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
    assert hostile.counts() == before_counts
    after = link_errors(hostile)
    assert after == before_errors, "a client mistake was counted as a link error"
    assert not any("storage_unavailable" in labels for labels in after)


def test_a_refused_request_is_a_rejection_in_the_link_metrics_not_an_error(hostile):
    """A 4xx from inside the pay link (here: a business refusal) counts as ``rejected``,
    which the SLO error ratio excludes; it never moves ``outcome="error"``."""
    a = hostile.a
    before = link_errors(hostile)
    r = a.pay("no-such-trade", [{"tool": "channel", "amount": 10}])
    assert error_of(r) == (404, "trade_not_found")
    r = a.trade("rej-1", 5)
    assert r.status_code == 200
    r = a.pay("rej-1", [{"tool": "balance", "amount": 5}])
    assert error_of(r) == (409, "insufficient_balance")
    metrics = httpx.get(f"{hostile.api.url}/metrics").text
    assert re.search(
        r'paywatch_link_requests_total\{[^}]*outcome="rejected"[^}]*'
        r'reason="insufficient_balance"',
        metrics,
    )
    assert link_errors(hostile) == before


# -- 6. limits hold for every way a body can arrive ----------------------------------------


class Pulled:
    """A chunked body of ``total`` bytes that counts how much the client was asked for."""

    def __init__(self, total: int = 30 * 1024 * 1024, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.pulled = total, chunk, 0

    def __iter__(self):
        piece = b"x" * self.chunk
        while self.pulled < self.total:
            self.pulled += len(piece)
            yield piece


@pytest.mark.parametrize(
    ("method", "path", "signed"),
    [
        ("POST", "/v1/trades", False),
        ("POST", "/v1/channels/SANDBOX_A/callback", False),
        ("POST", "/v1/channels/SANDBOX_A/callback", True),
        ("GET", "/v1/trades/anything", False),
        ("POST", "/v1/trades/anything/confirm", False),
        ("GET", "/healthz", False),
    ],
)
def test_a_chunked_body_over_the_cap_is_refused_while_it_streams(hostile, method, path, signed):
    """Old code: no Content-Length, no check; the whole 30 MB was read (and parsed) before
    any answer, unauthenticated, on every route."""
    body = Pulled()
    headers = {"content-type": "application/json"}
    if signed:  # a valid-looking signature header changes nothing: the cap comes first
        headers |= {"x-paywatch-timestamp": str(int(time.time())), "x-paywatch-signature": "0"}
    started = time.monotonic()
    r = httpx.request(method, f"{hostile.api.url}{path}", content=body, headers=headers, timeout=30)
    assert error_of(r) == (413, "request_too_large"), r.text[:200]
    assert body.pulled < 12 * 1024 * 1024, f"the server read {body.pulled} bytes"
    assert time.monotonic() - started < 10
    assert hostile.a.detail("anything")["error"]["code"] == "trade_not_found"  # still serving


def test_a_chunked_body_under_the_cap_is_served(hostile):
    body = (
        b'{"out_trade_no": "chunky-1", "trade_type": "instant", "amount": 100, '
        b'"currency": "CNY", "user_id": "u1", "order_type": "goods", '
        b'"sub_type": "physical", "pay_org_no": "SANDBOX_A", "subject": "' + b"s" * 200 + b'"}'
    )
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    r = hostile.a.http.post(
        "/v1/trades", content=iter(pieces), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["out_trade_no"] == "chunky-1"
    just_over = Pulled(total=CAP + 1, chunk=CAP + 1)
    r = hostile.a.http.post(
        "/v1/trades", content=just_over, headers={"content-type": "application/json"}
    )
    assert error_of(r) == (413, "request_too_large")


# -- 7. every accepted number is addressable; generated numbers are out of reach ------------

UNADDRESSABLE = [
    "a/b",
    "..",
    ".",
    "x:y",
    "a b",
    "-lead",
    "_lead",
    "a?b",
    "a#b",
    "a%2Fb",
    "a\\b",
    "ä",
    "x" * (NUMBER_MAX + 1),
    "",
]


@pytest.mark.parametrize("bad", UNADDRESSABLE)
def test_numbers_outside_the_alphabet_are_refused_at_creation(hostile, bad):
    """Old code: ``a/b``, ``..``, ``.`` (and ``:``, spaces, ...) were accepted and the
    trade could never be queried, paid or refunded again."""
    a = hostile.a
    before = hostile.counts()
    cases = {
        "out_trade_no": a.trade(bad),
        "user_id": a.trade("num-1", user=bad),
        "payee_user_id": a.trade("num-2", trade_type="transfer", payee_user_id=bad),
        "origin_out_trade_no": a.trade("num-3", trade_type="refund", origin_out_trade_no=bad),
    }
    for field, r in cases.items():
        assert error_of(r) == (422, "invalid_request"), (field, r.text)
        assert field in r.json()["error"]["message"], (field, r.text)
    assert hostile.counts() == before


def test_user_ids_with_a_colon_are_refused(hostile):
    """The ledger keys user accounts as ``<merchant_id>:<user_id>``: a ``:`` in a user id
    could name another key."""
    r = hostile.b.trade("colon-1", 100, "recharge", user=f"{hostile.a.mid}:u1")
    assert error_of(r) == (422, "invalid_request")
    assert "user_id" in r.json()["error"]["message"]


def test_a_merchant_cannot_squat_on_a_generated_refund_number(hostile):
    """Old code: ``out_pay_no="refund:R1"`` was accepted, and a later refund ``R1`` failed
    forever with 409 ``duplicate``."""
    a = hostile.a
    assert a.trade("squat-1", 1000).status_code == 200
    r = a.pay("squat-1", [{"tool": "channel", "amount": 1000}], out_pay_no="refund:R1")
    assert error_of(r) == (422, "invalid_request")
    assert "out_pay_no" in r.json()["error"]["message"]
    r = a.pay("squat-1", [{"tool": "channel", "amount": 1000}], out_pay_no="pay-1")
    assert r.status_code == 200, r.text
    assert (
        a.wait_for("squat-1", lambda d: d["trade"]["status"] == "paid")["trade"]["status"] == "paid"
    )
    r = a.refund("squat-1", "R1", 400)
    assert r.status_code == 200, r.text
    assert r.json()["trade"]["out_trade_no"] == "R1"
    r = a.refund("squat-1", "refund:R2", 100)
    assert error_of(r) == (422, "invalid_request")
    assert "out_refund_no" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/trades/x:y",
        "/v1/trades/a%20b",
        "/v1/trades/-x",
        "/v1/trades/x:y/pay",
        "/v1/trades/x:y/refunds",
        "/v1/trades/x:y/confirm",
        "/v1/trades/x:y/close",
        f"/v1/trades/{'x' * 65}",
    ],
)
def test_path_numbers_follow_the_same_rule(hostile, path):
    """Old code: 404 ``trade_not_found`` for a number that could never exist (or, for a
    body route, whatever the body said first): now 422 naming the parameter."""
    method = "GET" if path.count("/") == 3 else "POST"
    body = {
        "/pay": {"tools": [{"tool": "channel", "amount": 1}]},
        "/refunds": {"out_refund_no": "r1", "amount": 1},
    }
    json_body = next((b for end, b in body.items() if path.endswith(end)), None)
    r = hostile.a.http.request(method, path, json=json_body)
    assert error_of(r) == (422, "invalid_request"), r.text
    assert "out_trade_no" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "field,value",
    [
        ("channel_txn_no", "a/b"),
        ("channel_txn_no", ""),
        ("channel_txn_no", "x" * 65),
        ("amount", True),
        ("amount", 1.0),
        ("amount", 2**63),
        ("amount", 10**30),
        ("amount", -1),
        ("amount", "100"),
        ("currency", "cny"),
        ("currency", "CNYX"),
        ("currency", 156),
        ("status", "succeeded"),
        ("status", None),
        ("pay_org_no", None),
    ],
)
def test_malformed_callback_bodies_are_refused_cleanly(hostile, field, value):
    """Old code: ``a/b``, an empty number, 2^63, 10^30 and ``cny`` passed the body check
    and went on to the settlement (here: 404 ``pay_order_not_found``). An amount that
    fits the store but not the item (2^62, 10^12+1) is not malformed: settlement records
    it as an exception (tests/hostile/test_money_paths.py)."""
    before, errors = hostile.counts(), link_errors(hostile)
    r = hostile.callback("SANDBOX_A", callback_body(**{field: value}))
    assert error_of(r) == (400, "malformed_request"), r.text
    assert hostile.counts() == before
    assert link_errors(hostile) == errors


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
