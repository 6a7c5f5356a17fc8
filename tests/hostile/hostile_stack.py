"""The hostile suite's stack (import the fixture: ``from hostile_stack import hostile``;
no conftest.py here: a second module named conftest would shadow tests/conftest.py): the running API and the sandbox channel over real HTTP on
PostgreSQL, with two merchants (A, the victim; B, the attacker) granted the same pay orgs.

Each test attacks one class of defect the way a hostile merchant or a faulty channel
would, and asserts that nothing moved that must not and that the answer is a clean 4xx.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx
import pytest
from conftest import LiveServer, free_port, table_counts

from paycore.channels.signing import signed_headers

ORGS = ("SANDBOX_A", "SANDBOX_B")
ADMIN = "admin-token-for-hostile-tests"


class Merchant:
    """One merchant's HTTP client and the helpers its traffic needs."""

    def __init__(self, stack: HostileStack, mid: str, token: str) -> None:
        self.stack, self.mid, self.token = stack, mid, token
        self.http = httpx.Client(
            base_url=stack.api.url, timeout=15, headers={"Authorization": f"Bearer {token}"}
        )

    def trade(
        self, no: str, amount: int = 1000, trade_type: str = "instant", user: str = "u1", **kw: Any
    ) -> httpx.Response:
        body = {
            "out_trade_no": no,
            "trade_type": trade_type,
            "amount": amount,
            "currency": "CNY",
            "user_id": user,
            "order_type": "goods",
            "sub_type": "physical",
            "pay_org_no": "SANDBOX_A",
            **kw,
        }
        return self.http.post("/v1/trades", json=body)

    def pay(self, no: str, tools: list[dict], **kw: Any) -> httpx.Response:
        return self.http.post(f"/v1/trades/{no}/pay", json={"tools": tools, **kw})

    def refund(self, no: str, refund_no: str, amount: int, **kw: Any) -> httpx.Response:
        return self.http.post(
            f"/v1/trades/{no}/refunds", json={"out_refund_no": refund_no, "amount": amount, **kw}
        )

    def detail(self, no: str) -> dict:
        return self.http.get(f"/v1/trades/{no}").json()

    def wait_for(self, no: str, pred, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            detail = self.detail(no)
            if pred(detail) or time.monotonic() > deadline:
                return detail
            time.sleep(0.05)

    def fund(self, user: str, amount: int, no: str) -> None:
        """Recharge ``user`` through the sandbox channel and wait until it is paid."""
        assert self.trade(no, amount, "recharge", user=user).status_code == 200
        assert self.pay(no, [{"tool": "channel", "amount": amount}]).status_code == 200
        done = self.wait_for(no, lambda d: d["trade"]["status"] == "paid")
        assert done["trade"]["status"] == "paid", done

    def close(self) -> None:
        self.http.close()


class HostileStack:
    def __init__(self, db_url: str) -> None:
        from runtime.bootstrap import build_platform
        from runtime.settings import Settings
        from simulator.sandbox import create_sandbox_app
        from simulator.sandbox_config import SandboxConfig

        self.secrets = {o: secrets.token_urlsafe(24) for o in ORGS}
        self.sandbox = LiveServer(
            create_sandbox_app(
                SandboxConfig(secrets=dict(self.secrets), admin_token=ADMIN, seed=11)
            )
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
        self._onboarded = [
            self.core.merchants.onboard(
                name, products=[("goods", "physical")], pay_orgs=list(ORGS), fee_bps=100
            )
            for name in ("victim shop", "hostile shop")
        ]

    def __enter__(self) -> HostileStack:
        self.sandbox.__enter__()
        self.api.__enter__()
        a, b = self._onboarded
        self.a = Merchant(self, a.merchant.merchant_id, a.token)
        self.b = Merchant(self, b.merchant.merchant_id, b.token)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.a.close()
        self.b.close()
        self.api.__exit__(*exc)
        self.sandbox.__exit__(*exc)
        self.platform.close()

    def knobs(self, org: str, **changes: Any) -> None:
        r = httpx.put(
            f"{self.sandbox.url}/admin/knobs/{org}",
            json=changes,
            headers={"X-Sandbox-Admin": ADMIN},
        )
        assert r.status_code == 200, r.text

    def callback(self, org: str, body: dict | bytes, **kw: Any) -> httpx.Response:
        """A correctly signed callback from ``org`` (a faulty channel's, if the body is)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = signed_headers(self.secrets[org], raw)
        return httpx.post(
            f"{self.api.url}/v1/channels/{org}/callback",
            content=raw,
            headers=headers | {"content-type": "application/json"},
            **kw,
        )

    def counts(self) -> dict[str, int]:
        return table_counts(self.core.db)


@pytest.fixture
def hostile(pg_url):
    with HostileStack(pg_url) as stack:
        yield stack
