"""Attacks on the API edge: hostile characters and bodies that outgrow the cap while they
stream.

Each test sends what a hostile merchant (or a faulty channel) would, over real HTTP on
PostgreSQL; each failed on the code before the fix (the commit note says how).
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from edge_requests import CAP, callback_body, error_of, link_errors, paid_trade, trade_body
from hostile_stack import hostile  # noqa: F401 - the fixture

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
