"""Shadow traffic (``X-Paywatch-Shadow: 1``): pressure-test requests run the whole pay link
against the shadow tables and never change a real row, balance or link metric."""

from __future__ import annotations

import secrets
import time

import httpx
import pytest
from conftest import LiveServer, free_port, table_counts
from shadow_world import ORGS, SHADOW, body, drop_shadow_of, metric_total, platform_for, real_state

from paycore.ledger import balance_of, merchant_payable, trial_balance


class Stack:
    """API + sandbox channel over real HTTP, so shadow callbacks take the real path."""

    def __init__(self, db_url: str, tmp_path) -> None:
        from simulator.sandbox import create_sandbox_app
        from simulator.sandbox_config import SandboxConfig

        self.db_url = db_url
        secrets_ = {o: secrets.token_urlsafe(24) for o in ORGS}
        self.sandbox = LiveServer(
            create_sandbox_app(SandboxConfig(secrets=dict(secrets_), admin_token="admin", seed=3))
        )
        port = free_port()
        self.platform, self.mid, token = platform_for(
            db_url,
            tmp_path,
            channels=True,
            api_url=f"http://127.0.0.1:{port}",
            sandbox_url=self.sandbox.url,
            channel_secrets=secrets_,
        )
        self.core = self.platform.paycore
        self.registry = self.platform.observability.registry
        self.api = LiveServer(self.platform.api_app(), port=port)
        self.http = httpx.Client(
            base_url=self.api.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
        )

    def __enter__(self) -> Stack:
        self.sandbox.__enter__()
        self.api.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()
        self.api.__exit__(*exc)
        self.sandbox.__exit__(*exc)
        self.platform.close()
        drop_shadow_of(self.db_url)

    def ok(self, method: str, path: str, headers=None, **kw) -> dict:
        r = self.http.request(method, path, headers=headers, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_for(self, no: str, pred, headers=None, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            detail = self.ok("GET", f"/v1/trades/{no}", headers)
            if pred(detail) or time.monotonic() > deadline:
                return detail
            time.sleep(0.05)


@pytest.fixture
def stack(db_url, tmp_path):
    with Stack(db_url, tmp_path) as st:
        yield st


def paid(d: dict) -> bool:
    return d["trade"]["status"] == "paid"


def test_shadow_pay_and_refund_change_no_real_row_balance_or_link_metric(stack):
    reg = stack.registry
    before = real_state(stack.core.db)
    link_before = metric_total(reg, "paywatch_link_requests_total")
    guard_before = metric_total(reg, "paywatch_guard_outcomes_total")

    t = stack.ok("POST", "/v1/trades", SHADOW, json=body("sh-1"))
    assert t["status"] == "created"
    po = stack.ok(
        "POST",
        "/v1/trades/sh-1/pay",
        SHADOW,
        json={"tools": [{"tool": "channel", "amount": 10_000}]},
    )
    assert po["status"] == "processing"
    assert paid(stack.wait_for("sh-1", paid, SHADOW))  # the sandbox called back ?shadow=1
    stack.ok(
        "POST",
        "/v1/trades/sh-1/refunds",
        SHADOW,
        json={"out_refund_no": "sh-rf-1", "amount": 4_000},
    )
    detail = stack.wait_for("sh-1", lambda d: d["refunds"] and paid(d["refunds"][0]), SHADOW)
    assert detail["trade"]["refunded_amount"] == 4_000

    # nothing real changed: rows of every table, balances, link and guard metrics
    assert real_state(stack.core.db) == before
    assert metric_total(reg, "paywatch_link_requests_total") == link_before
    assert metric_total(reg, "paywatch_guard_outcomes_total") == guard_before
    # a real request cannot see the shadow order
    r = stack.http.get("/v1/trades/sh-1")
    assert r.status_code == 404 and r.json()["error"]["code"] == "trade_not_found"

    # the shadow tables hold it all, and balance
    shadow = stack.platform.shadow.built
    counts = table_counts(shadow.db)
    assert counts["trades"] == 2 and counts["pay_orders"] == 2 and counts["pay_items"] == 2
    assert counts["journal_entries"] >= 3 and counts["notifications"] >= 2
    assert counts["merchants"] == 1 and counts["merchant_pay_orgs"] == 2
    with shadow.db.session() as s:
        assert balance_of(s, merchant_payable(stack.mid, "CNY")) == 5_900
    assert trial_balance(shadow.db).ok
    shadow_counts = {
        step: metric_total(reg, "paywatch_shadow_requests_total", step=step)
        for step in ("trade_create", "pay", "channel_call", "callback", "refund")
    }
    assert all(n >= 1 for n in shadow_counts.values()), shadow_counts
    assert shadow_counts["channel_call"] >= 2 and shadow_counts["callback"] >= 2

    # real traffic right after still works, writes the real tables, counts on the link
    stack.ok("POST", "/v1/trades", json=body("real-1"))
    po = stack.ok(
        "POST", "/v1/trades/real-1/pay", json={"tools": [{"tool": "channel", "amount": 10_000}]}
    )
    assert po["status"] == "processing"
    assert paid(stack.wait_for("real-1", paid))
    counts_after, _ = real_state(stack.core.db)
    assert counts_after["trades"] == before[0]["trades"] + 1
    assert counts_after["notifications"] == before[0]["notifications"] + 1
    with stack.core.db.session() as s:
        assert balance_of(s, merchant_payable(stack.mid, "CNY")) == 9_900
    assert metric_total(reg, "paywatch_link_requests_total", step="trade_create") == 1
    assert (
        metric_total(reg, "paywatch_shadow_requests_total", step="trade_create")
        == shadow_counts["trade_create"]
    )
    assert table_counts(shadow.db)["trades"] == 2
    # ... and shadow traffic cannot read the real order
    r = stack.http.get("/v1/trades/real-1", headers=SHADOW)
    assert r.status_code == 404 and r.json()["error"]["code"] == "trade_not_found"
