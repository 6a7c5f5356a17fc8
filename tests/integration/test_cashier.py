"""The cashier through the real API on SQLite and PostgreSQL: what a trade's payer can pay
with now (the tools' offers, the channel's granted orgs in routing order with the guard's
availability), and that a pay can then name a listed org or leave it to the rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import httpx
import pytest
from api_stack import stack  # noqa: F401 - fixture
from conftest import LiveServer, Shop
from fastapi.testclient import TestClient

from paycore import Database, PayCore
from paycore.api import ApiConfig, create_app
from paycore.coupons import HttpCouponClient
from paycore.errors import InvalidPayTools
from paycore.ledger import AccountRef, trial_balance, user_balance
from paycore.routing import Router, RouteTarget, RoutingRule, RoutingStore
from paycore.tools import BalanceTool, ChannelTool, ToolEnv, ToolPlugin, ToolRegistry, ToolSkipped
from runtime.wiring import BUSINESS_ERRORS
from stability.depmap_seed import default_map
from stability.errors import DependencyFailed
from stability.guard import Guard
from stability.switch_records import SwitchSnapshot

A, B = "SANDBOX_A", "SANDBOX_B"


@pytest.fixture
def guard(core) -> Guard:
    g = Guard(default_map((A, B), redis_lock=False))
    core.guard = g  # rewires the services: the cashier asks this guard
    return g


@pytest.fixture
def http(shop, guard):
    with TestClient(create_app(shop.core, ApiConfig())) as client:
        client.headers["Authorization"] = f"Bearer {shop.token}"
        yield client


def method(body: dict, tool: str) -> dict:
    found = [m for m in body["methods"] if m["tool"] == tool]
    assert len(found) == 1, body["methods"]
    return found[0]


def orgs(channel: dict) -> list[tuple[str, bool, str | None]]:
    return [(o["pay_org_no"], o["available"], o["reason"]) for o in channel["orgs"]]


def cashier(http, no: str, **params):
    return http.get(f"/v1/trades/{no}/cashier", params=params)


def test_the_cashier_shows_the_real_balance_and_follows_the_guard(shop, guard, http) -> None:
    shop.fund("u1", 900)
    t = shop.trade(amount=1_200)
    r = cashier(http, t.out_trade_no)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["out_trade_no"], body["status"], body["amount"], body["currency"]) == (
        t.out_trade_no,
        "created",
        1_200,
        "CNY",
    )
    assert body["payable"] is True
    balance = method(body, "balance")
    assert balance["available"] is True and balance["max_amount"] == 900  # all it holds
    points = method(body, "points")  # none granted
    assert points["available"] is False and points["max_amount"] == 0
    channel = method(body, "channel")
    # no router: a pay naming no org takes the trade's own org; the other granted one may be named
    assert orgs(channel) == [(A, True, None), (B, True, None)]
    assert [o["routed"] for o in channel["orgs"]] == [True, False]
    assert (channel["available"], channel["recommended"], channel["rule"]) == (True, A, None)

    guard.apply(SwitchSnapshot(version=1, degraded=frozenset({f"channel.{A}"})))
    channel = method(cashier(http, t.out_trade_no).json(), "channel")
    assert orgs(channel) == [(A, False, "degraded"), (B, True, None)]
    assert channel["recommended"] == B and channel["available"] is True

    guard.apply(SwitchSnapshot(version=2, forced={f"channel.{A}": "forced_open"}))
    channel = method(cashier(http, t.out_trade_no).json(), "channel")
    assert orgs(channel)[0] == (A, False, "breaker_open")

    guard.apply(SwitchSnapshot(version=3, degraded=frozenset({f"channel.{A}", f"channel.{B}"})))
    channel = method(cashier(http, t.out_trade_no).json(), "channel")
    assert channel["available"] is False and channel["recommended"] is None

    guard.apply(SwitchSnapshot(version=4, degraded=frozenset({f"channel.{A}"})))
    assert shop.balance("u1") == 900  # the cashier took nothing
    # the payer takes the recommended org: the pay names it and goes there
    pay = {"tools": [{"tool": "channel", "amount": 1_200}], "pay_org_no": B}
    r = http.post(f"/v1/trades/{t.out_trade_no}/pay", json=pay)
    assert r.status_code == 200, r.text
    po = r.json()
    assert po["pay_org_no"] == B and po["items"][0]["pay_org_no"] == B
    after = cashier(http, t.out_trade_no).json()
    assert (after["status"], after["payable"], after["methods"]) == ("paying", False, [])


def test_a_paid_trade_is_not_payable(shop, http) -> None:
    shop.fund("u1", 800)
    t = shop.trade(amount=800)
    r = http.post(
        f"/v1/trades/{t.out_trade_no}/pay", json={"tools": [{"tool": "balance", "amount": 800}]}
    )
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    body = cashier(http, t.out_trade_no).json()
    assert (body["status"], body["payable"], body["methods"]) == ("paid", False, [])


def test_a_recharge_offers_only_what_may_pay_it(shop, http) -> None:
    t = shop.trade("recharge", 500)
    body = cashier(http, t.out_trade_no).json()
    assert [m["tool"] for m in body["methods"]] == ["channel"]


def test_the_rules_order_the_orgs_and_name_the_rule(shop, guard, http) -> None:
    store = RoutingStore(shop.core.db)
    store.publish(
        [
            RoutingRule(
                name="vip-to-b",
                priority=1,
                user_segment="vip",
                targets=(RouteTarget(B, 100),),
                fallback=(A,),
            )
        ],
        author="test",
        reason="vip payers go to B",
    )
    shop.core.router = Router(store)
    t = shop.trade(amount=700)
    vip = method(cashier(http, t.out_trade_no, user_segment="vip").json(), "channel")
    assert orgs(vip) == [(B, True, None), (A, True, None)]
    assert [o["routed"] for o in vip["orgs"]] == [True, True]
    assert (vip["recommended"], vip["rule"]) == (B, "vip-to-b")
    plain = method(cashier(http, t.out_trade_no).json(), "channel")
    assert [o["pay_org_no"] for o in plain["orgs"]] == [A, B]
    assert (plain["recommended"], plain["rule"]) == (A, "default")

    guard.apply(SwitchSnapshot(version=1, degraded=frozenset({f"channel.{B}"})))
    vip = method(cashier(http, t.out_trade_no, user_segment="vip").json(), "channel")
    assert orgs(vip) == [(B, False, "degraded"), (A, True, None)]
    assert vip["recommended"] == A
    # a pay naming no org is routed by the same rules: B refuses, A takes it
    pay = {"tools": [{"tool": "channel", "amount": 700}], "user_segment": "vip"}
    r = http.post(f"/v1/trades/{t.out_trade_no}/pay", json=pay)
    assert r.status_code == 200, r.text
    assert r.json()["pay_org_no"] == A


def test_bad_requests_are_refused(shop, http) -> None:
    t = shop.trade(amount=100)
    r = http.get(
        f"/v1/trades/{t.out_trade_no}/cashier", headers={"Authorization": "Bearer pwk_nope"}
    )
    assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthenticated")
    r = cashier(http, "nobody-has-it")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "trade_not_found")
    for bad in ("a b", "-lead", "x" * 33, ""):
        r = cashier(http, t.out_trade_no, user_segment=bad)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_user_segment"), bad


def test_another_merchants_trade_is_not_found(shop, http) -> None:
    other = shop.core.merchants.onboard("other", products=[("goods", "physical")], pay_orgs=[A])
    t = shop.trade(amount=100)
    r = http.get(
        f"/v1/trades/{t.out_trade_no}/cashier",
        headers={"Authorization": f"Bearer {other.token}"},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (404, "trade_not_found")


class Voucher(ToolPlugin):
    """A tool registered by the test: the cashier lists it without any change of its own,
    and shows it unavailable while its (weak) service is down."""

    name: ClassVar[str] = "voucher"
    trade_types: ClassVar[frozenset[str]] = frozenset({"instant"})
    failure: Exception | None = None

    def source(self, merchant_id: str, user_id: str, currency: str, item: Any) -> AccountRef:
        return user_balance(merchant_id, user_id, currency)

    def offer(self, env: ToolEnv, trade: Any) -> dict[str, Any] | None:
        if self.failure is not None:
            raise self.failure
        return {"tool": self.name, "available": True, "vouchers": [f"V-{trade.user_id}"]}


def test_a_registered_tool_is_offered_and_a_failing_one_shown_unavailable(shop, http) -> None:
    voucher = Voucher()
    shop.core.tools = ToolRegistry([BalanceTool(), ChannelTool(), voucher])
    t = shop.trade(amount=400)
    body = cashier(http, t.out_trade_no).json()
    assert [m["tool"] for m in body["methods"]] == ["balance", "channel", "voucher"]
    assert method(body, "voucher") == {"tool": "voucher", "available": True, "vouchers": ["V-u1"]}
    failures = {
        ToolSkipped("voucher service down", resource="voucher"): "unavailable",
        DependencyFailed("voucher degraded", resource="voucher", reason="degraded"): "degraded",
    }
    for failure, reason in failures.items():
        voucher.failure = failure
        r = cashier(http, t.out_trade_no)
        assert r.status_code == 200, r.text
        assert method(r.json(), "voucher") == {
            "tool": "voucher",
            "available": False,
            "reason": reason,
        }
        assert method(r.json(), "channel")["recommended"] == A  # the rest still answers
    voucher.failure = InvalidPayTools("a bug is not an outage")
    assert cashier(http, t.out_trade_no).status_code == 422


COUPON_SECRET, SANDBOX_ADMIN = "coupon-secret-for-cashier", "adm"


@pytest.fixture
def coupon_shop(db_url: str) -> Iterator[tuple[Shop, str]]:
    """A merchant on a pay core with the guard and the sandbox's coupon service."""
    from simulator.sandbox import create_sandbox_app
    from simulator.sandbox_config import SandboxConfig

    app = create_sandbox_app(
        SandboxConfig(
            secrets={A: "s", B: "s"}, admin_token=SANDBOX_ADMIN, coupon_secret=COUPON_SECRET
        )
    )
    with LiveServer(app) as server:
        coupons = HttpCouponClient(server.url, COUPON_SECRET, timeout=2.0)
        guard = Guard(default_map((A, B), redis_lock=False), ignore=BUSINESS_ERRORS)
        core = PayCore(Database(db_url), guard=guard, coupons=coupons)
        try:
            yield Shop(core), server.url
        finally:
            coupons.close()
            core.close()


def test_the_payer_pays_with_what_the_cashier_offered(coupon_shop) -> None:
    shop, coupon_url = coupon_shop
    shop.fund("u1", 400)
    shop.core.points.grant(shop.mid, "u1", 250, "CNY", "welcome")
    issue = {"merchant_id": shop.mid, "user_id": "u1", "amount": 300, "currency": "CNY"}
    r = httpx.post(
        f"{coupon_url}/coupons/admin/issue",
        json=issue | {"code": "SPRING"},
        headers={"X-Sandbox-Admin": SANDBOX_ADMIN},
    )
    assert r.status_code == 200, r.text
    t = shop.trade(amount=2_000)
    with TestClient(create_app(shop.core, ApiConfig())) as http:
        http.headers["Authorization"] = f"Bearer {shop.token}"
        body = cashier(http, t.out_trade_no).json()
        assert [m["tool"] for m in body["methods"]] == ["balance", "channel", "coupon", "points"]
        assert method(body, "balance")["max_amount"] == 400
        assert method(body, "points")["max_amount"] == 250
        coupon = method(body, "coupon")
        assert [(c["code"], c["amount"]) for c in coupon["coupons"]] == [("SPRING", 300)]
        org = method(body, "channel")["recommended"]
        assert org == A

        tools = [
            {"tool": "balance", "amount": 400},
            {"tool": "points", "amount": 250},
            {"tool": "coupon", "amount": 300, "ref": "SPRING"},
            {"tool": "channel", "amount": 2_000 - 400 - 250 - 300},
        ]
        r = http.post(f"/v1/trades/{t.out_trade_no}/pay", json={"tools": tools, "pay_org_no": org})
        assert r.status_code == 200, r.text
        po = r.json()
        assert po["status"] == "processing" and po["pay_org_no"] == org
        channel_item = next(i for i in po["items"] if i["tool"] == "channel")
        assert shop.settle(SimpleNamespace(**channel_item)) == "settled"
        after = cashier(http, t.out_trade_no).json()
        assert (after["status"], after["payable"]) == ("paid", False)
        # a new trade's cashier shows what the pay took: no balance, no points, no coupon left
        t2 = shop.trade(amount=100)
        left = cashier(http, t2.out_trade_no).json()
    assert method(left, "balance") == {"tool": "balance", "available": False, "max_amount": 0}
    assert method(left, "points") == {"tool": "points", "available": False, "max_amount": 0}
    assert method(left, "coupon") == {"tool": "coupon", "available": False, "coupons": []}
    assert trial_balance(shop.core.db).ok


def _documented_cashier() -> dict:
    """The cashier example in docs/api.md."""
    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    section = text.split("## The cashier", 1)[1]
    return json.loads(section.split("```json", 1)[1].split("```", 1)[0])


def test_the_documented_example_has_the_real_shape(shop, guard, http) -> None:
    doc = _documented_cashier()
    shop.fund("u1", 900)
    guard.apply(SwitchSnapshot(version=1, degraded=frozenset({f"channel.{A}"})))
    real = cashier(http, shop.trade(amount=1_200).out_trade_no).json()
    assert set(doc) == set(real)
    assert [m["tool"] for m in doc["methods"]] == [m["tool"] for m in real["methods"]]
    for documented in doc["methods"]:
        got = method(real, documented["tool"])
        assert set(documented) <= set(got) | {"coupons"}, documented["tool"]
    doc_channel, real_channel = method(doc, "channel"), method(real, "channel")
    assert [set(o) for o in doc_channel["orgs"]] == [set(o) for o in real_channel["orgs"]]
    assert orgs(doc_channel) == orgs(real_channel)  # A degraded, B recommended
    assert doc_channel["recommended"] == real_channel["recommended"] == B


def test_the_platform_as_built_serves_the_cashier(stack) -> None:  # noqa: F811
    """The runtime's own wiring (router, guard, tools) over real HTTP on PostgreSQL."""
    stack.trade("cashier-1", 1_000)
    r = stack.http.get("/v1/trades/cashier-1/cashier", params={"user_segment": "vip"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [m["tool"] for m in body["methods"]] == ["balance", "channel", "coupon", "points"]
    channel = method(body, "channel")
    assert (channel["rule"], channel["recommended"]) == ("default", A)  # no rules published
    assert orgs(channel) == [(A, True, None), (B, True, None)]
