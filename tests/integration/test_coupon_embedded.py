"""``paywatch up``'s embedded platform hosts the coupon service in its sandbox and wires the
pay core to it: a coupon issued at the sandbox pays part of a trade through the HTTP API."""

from __future__ import annotations

import time

import httpx

from runtime.embedded import EmbeddedOptions, EmbeddedPlatform
from runtime.settings import Settings


def test_the_embedded_platform_pays_with_a_coupon(tmp_path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'paywatch.db'}",
        var_dir=str(tmp_path / "var"),
        pay_orgs=("SANDBOX_A",),
    )
    stack = EmbeddedPlatform(settings, EmbeddedOptions(proxies=False)).start()
    try:
        s, core = stack.settings, stack.platform.paycore
        assert core.coupons is not None and core.coupons.base_url == s.sandbox_url
        ob = core.merchants.onboard(
            "coupon shop", products=[("goods", "physical")], pay_orgs=["SANDBOX_A"], fee_bps=0
        )
        admin = {"X-Sandbox-Admin": stack.admin_token}
        issued = httpx.post(
            f"{s.sandbox_url}/coupons/admin/issue",
            json={"merchant_id": ob.merchant.merchant_id, "user_id": "u1", "amount": 100}
            | {"currency": "CNY", "code": "WELCOME"},
            headers=admin,
        )
        assert issued.status_code == 200, issued.text
        api = httpx.Client(
            base_url=s.api_url, headers={"Authorization": f"Bearer {ob.token}"}, timeout=10
        )
        trade = {"out_trade_no": "t1", "trade_type": "instant", "amount": 1000}
        trade |= {"currency": "CNY", "user_id": "u1", "order_type": "goods"}
        trade |= {"sub_type": "physical", "pay_org_no": "SANDBOX_A"}
        assert api.post("/v1/trades", json=trade).status_code == 200
        tools = [{"tool": "coupon", "amount": 100, "ref": "WELCOME"}]
        tools.append({"tool": "channel", "amount": 900})
        r = api.post("/v1/trades/t1/pay", json={"tools": tools})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 15
        while api.get("/v1/trades/t1").json()["trade"]["status"] != "paid":
            assert time.monotonic() < deadline, "the pay never settled"
            time.sleep(0.05)
        assert stack.platform.paycore.coupons.coupon("WELCOME").status == "redeemed"
        again = api.post("/v1/trades/t1/pay", json={"tools": tools, "out_pay_no": "p2"})
        assert again.status_code in (409, 422)
        api.close()
    finally:
        stack.stop()
