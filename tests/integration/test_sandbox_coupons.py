"""The sandbox's coupon service over real HTTP, through the pay core's coupon client:
issue, list, redeem (idempotent on key; unknown, used, too small, another user's,
another currency refused), release (idempotent), signatures, the outage knob."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import LiveServer

from paycore.coupons import CouponRejected, CouponUnavailable, HttpCouponClient

SECRET, ADMIN = "coupon-secret-for-tests", "adm"


@pytest.fixture
def service() -> Iterator[LiveServer]:
    from simulator.sandbox import create_sandbox_app
    from simulator.sandbox_config import SandboxConfig

    app = create_sandbox_app(
        SandboxConfig(secrets={"SANDBOX_A": "s"}, admin_token=ADMIN, coupon_secret=SECRET)
    )
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def coupons(service: LiveServer) -> Iterator[HttpCouponClient]:
    client = HttpCouponClient(service.url, SECRET, timeout=2.0)
    yield client
    client.close()


def issue(service: LiveServer, **body) -> dict:
    body = {"merchant_id": "M1", "user_id": "u1", "amount": 100, "currency": "CNY", **body}
    r = httpx.post(
        f"{service.url}/coupons/admin/issue", json=body, headers={"X-Sandbox-Admin": ADMIN}
    )
    assert r.status_code == 200, r.text
    return r.json()


def redeem(client: HttpCouponClient, code: str, key: str, **kw):
    args = {"merchant_id": "M1", "user_id": "u1", "amount": 100, "currency": "CNY"}
    args |= {"trade_amount": 500, **kw}
    return client.redeem(code=code, key=key, **args)


def test_issue_list_redeem_release(service: LiveServer, coupons: HttpCouponClient) -> None:
    a = issue(service, code="C-A")
    issue(service, code="C-USD", currency="USD")
    issue(service, code="C-OTHER", user_id="u2")
    assert a == {
        "code": "C-A",
        "amount": 100,
        "currency": "CNY",
        "min_trade_amount": 0,
        "status": "unused",
    }
    assert [c.code for c in coupons.coupons("M1", "u1", "CNY")] == ["C-A"]
    assert sorted(c.code for c in coupons.coupons("M1", "u1")) == ["C-A", "C-USD"]

    first = redeem(coupons, "C-A", "M1:P1:0")
    assert first.status == "redeemed" and first.amount == 100
    assert redeem(coupons, "C-A", "M1:P1:0") == first  # the same key: the same answer
    assert coupons.coupons("M1", "u1", "CNY") == []
    with pytest.raises(CouponRejected) as used:
        redeem(coupons, "C-A", "M1:P2:0")
    assert used.value.details["reason"] == "used" and used.value.http_status == 422
    with pytest.raises(CouponRejected) as not_holder:
        coupons.release("C-A", "M1:P2:0")  # another pay cannot give it back
    assert not_holder.value.details["reason"] == "used"
    assert coupons.coupon("C-A").status == "redeemed"

    assert coupons.release("C-A", "M1:P1:0") is True
    assert coupons.release("C-A", "M1:P1:0") is False  # idempotent
    assert coupons.coupon("C-A").status == "unused"
    assert redeem(coupons, "C-A", "M1:P2:0").status == "redeemed"  # usable again


@pytest.mark.parametrize(
    ("code", "kw", "reason"),
    [
        ("NOPE", {}, "unknown"),
        ("C-OTHER", {}, "not_yours"),
        ("C-A", {"merchant_id": "M2"}, "not_yours"),
        ("C-USD", {}, "currency"),
        ("C-A", {"amount": 101}, "too_small"),
        ("C-MIN", {"trade_amount": 299}, "too_small"),
    ],
)
def test_refusals_name_their_reason_and_reserve_nothing(
    service: LiveServer, coupons: HttpCouponClient, code: str, kw: dict, reason: str
) -> None:
    issue(service, code="C-A")
    issue(service, code="C-USD", currency="USD")
    issue(service, code="C-OTHER", user_id="u2")
    issue(service, code="C-MIN", min_trade_amount=300)
    with pytest.raises(CouponRejected) as err:
        redeem(coupons, code, "M1:P1:0", **kw)
    assert err.value.details["reason"] == reason
    assert err.value.code == "coupon_rejected"
    book = service.server.config.app.state.coupons
    assert book.redeemed == 0
    assert all(c.status == "unused" for c in book.unused("M1", "u1", None))


def test_unsigned_or_wrongly_signed_calls_are_refused(
    service: LiveServer, coupons: HttpCouponClient
) -> None:
    issue(service, code="C-A")
    assert httpx.get(f"{service.url}/coupons/codes/C-A").status_code == 401
    wrong = HttpCouponClient(service.url, "not-the-secret")
    with pytest.raises(CouponUnavailable):  # our misconfiguration, not the user's coupon
        wrong.coupon("C-A")
    wrong.close()
    r = httpx.post(f"{service.url}/coupons/admin/issue", json={}, headers={"X-Sandbox-Admin": "x"})
    assert r.status_code == 401


def test_the_outage_knob_fails_every_call_and_heals(
    service: LiveServer, coupons: HttpCouponClient
) -> None:
    issue(service, code="C-A")
    knobs = f"{service.url}/coupons/admin/knobs"
    r = httpx.put(knobs, json={"outage_rate": 1.0}, headers={"X-Sandbox-Admin": ADMIN})
    assert r.status_code == 200 and r.json()["outage_rate"] == 1.0
    with pytest.raises(CouponUnavailable):
        redeem(coupons, "C-A", "M1:P1:0")
    with pytest.raises(CouponUnavailable):
        coupons.coupons("M1", "u1")
    assert service.server.config.app.state.coupons.get("C-A").status == "unused"
    bad = httpx.put(knobs, json={"outage_rate": 2}, headers={"X-Sandbox-Admin": ADMIN})
    assert bad.status_code == 422
    httpx.put(knobs, json={"outage_rate": 0.0}, headers={"X-Sandbox-Admin": ADMIN})
    assert redeem(coupons, "C-A", "M1:P1:0").status == "redeemed"


def test_a_dead_service_is_unavailable_within_the_timeout() -> None:
    from conftest import free_port

    client = HttpCouponClient(f"http://127.0.0.1:{free_port()}", SECRET, timeout=0.5)
    with pytest.raises(CouponUnavailable) as err:
        client.coupons("M1", "u1")
    assert err.value.details["resource"] == "coupon"
    client.close()


def test_no_coupon_secret_no_coupon_service() -> None:
    from simulator.sandbox import create_sandbox_app
    from simulator.sandbox_config import SandboxConfig

    app = create_sandbox_app(SandboxConfig(secrets={"SANDBOX_A": "s"}, admin_token=ADMIN))
    assert app.state.coupons is None
    assert not [r for r in app.routes if getattr(r, "path", "").startswith("/coupons")]


def test_a_sandbox_without_the_coupon_service_is_unavailable_not_a_refusal() -> None:
    from simulator.sandbox import create_sandbox_app
    from simulator.sandbox_config import SandboxConfig

    app = create_sandbox_app(SandboxConfig(secrets={"SANDBOX_A": "s"}, admin_token=ADMIN))
    with LiveServer(app) as server:
        client = HttpCouponClient(server.url, SECRET)
        with pytest.raises(CouponUnavailable):  # a 404 of no service, not of the coupon
            redeem(client, "C-A", "M1:P1:0")
        client.close()


def test_a_refused_connection_is_unavailable_and_not_called_a_timeout() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = HttpCouponClient(f"http://127.0.0.1:{port}", SECRET, timeout=2.0)
    with pytest.raises(CouponUnavailable) as refused:
        client.release("C-1", "k-1")
    assert "timed out" not in str(refused.value) and "NewConnectionError" in str(refused.value)
