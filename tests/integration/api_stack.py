"""What the HTTP API tests share: the pay core's API and the sandbox channel on 127.0.0.1 with
PostgreSQL behind, an onboarded merchant, and helpers to trade, wait and call back."""

from __future__ import annotations

import json
import secrets
import time

import httpx
import pytest
from conftest import LiveServer, free_port, table_counts

from paycore.channels.signing import signed_headers
from paycore.ledger import merchant_payable, user_balance

ORGS = ("SANDBOX_A", "SANDBOX_B")
ADMIN = "admin-token-for-tests"


class Stack:
    def __init__(self, db_url: str) -> None:
        from runtime.bootstrap import build_platform
        from runtime.settings import Settings
        from simulator.sandbox import create_sandbox_app
        from simulator.sandbox_config import SandboxConfig

        self.secrets = {o: secrets.token_urlsafe(24) for o in ORGS}
        self.sandbox = LiveServer(
            create_sandbox_app(SandboxConfig(secrets=dict(self.secrets), admin_token=ADMIN, seed=7))
        )
        api_port = free_port()
        settings = Settings(
            database_url=db_url,
            api_url=f"http://127.0.0.1:{api_port}",
            sandbox_url=self.sandbox.url,
            pay_orgs=ORGS,
            channel_secrets=dict(self.secrets),
        )
        self.platform = build_platform(settings)
        self.core = self.platform.paycore
        self.api = LiveServer(self.platform.api_app(), port=api_port)
        ob = self.core.merchants.onboard(
            "api shop", products=[("goods", "physical")], pay_orgs=list(ORGS), fee_bps=100
        )
        self.mid, self.token = ob.merchant.merchant_id, ob.token

    def __enter__(self) -> Stack:
        self.sandbox.__enter__()
        self.api.__enter__()
        self.http = httpx.Client(
            base_url=self.api.url, timeout=10, headers={"Authorization": f"Bearer {self.token}"}
        )
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()
        self.api.__exit__(*exc)
        self.sandbox.__exit__(*exc)
        self.platform.close()

    def knobs(self, org: str, **changes) -> None:
        r = httpx.put(
            f"{self.sandbox.url}/admin/knobs/{org}",
            json=changes,
            headers={"X-Sandbox-Admin": ADMIN},
        )
        assert r.status_code == 200, r.text

    def trade(self, no: str, amount: int = 1000, trade_type: str = "instant", **kw) -> dict:
        body = {
            "out_trade_no": no,
            "trade_type": trade_type,
            "amount": amount,
            "currency": "CNY",
            "user_id": "u1",
            "order_type": "goods",
            "sub_type": "physical",
            "pay_org_no": "SANDBOX_A",
            **kw,
        }
        r = self.http.post("/v1/trades", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_for(self, no: str, pred, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            detail = self.http.get(f"/v1/trades/{no}").json()
            if pred(detail) or time.monotonic() > deadline:
                return detail
            time.sleep(0.05)

    def callback(self, org: str, body: dict, *, secret: str | None = None, now=None):
        raw = json.dumps(body).encode()
        headers = signed_headers(secret or self.secrets[org], raw, now=now)
        return httpx.post(
            f"{self.api.url}/v1/channels/{org}/callback",
            content=raw,
            headers=headers | {"content-type": "application/json"},
        )

    def snapshot(self) -> tuple:
        with self.core.db.session() as s:
            from paycore.ledger import balance_of

            bal = (
                balance_of(s, user_balance(self.mid, "u1", "CNY")),
                balance_of(s, merchant_payable(self.mid, "CNY")),
            )
        return table_counts(self.core.db), bal


@pytest.fixture
def stack(pg_url):
    with Stack(pg_url) as st:
        yield st
