"""AppTest of the admin Merchants page: gating, token rotation and revocation, secret
rotation, disabling and enabling; every action audited, no secret in the audit log."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from console.audit import recent  # noqa: E402
from paycore.errors import AuthenticationFailed, MerchantDisabled  # noqa: E402


def _page(platform, user: str, role: str) -> None:
    from console.pages.admin_merchants import render
    from console.reports.context import PageContext

    render(PageContext(platform, user, role))


@pytest.fixture
def platform(sqlite_url):
    from paycore import Database, PayCore

    db = Database(sqlite_url)
    core = PayCore(db)
    core.merchants.cache_ttl = 0  # the API replica of this test reads every change at once
    yield SimpleNamespace(paycore=core)
    core.lock.close()
    db.dispose()


@pytest.fixture
def shop(platform):
    return platform.paycore.merchants.onboard(
        "page shop", products=[("goods", "physical")], pay_orgs=["SANDBOX_A"]
    )


def _app(platform, user: str, role: str) -> AppTest:
    return AppTest.from_function(_page, args=(platform, user, role), default_timeout=60).run()


def _button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def test_only_admins_manage_merchants(platform, shop):
    at = _app(platform, "mia", "manager")
    assert not at.exception
    assert any("Only admins" in e.value for e in at.error)
    assert not at.button and not at.dataframe and not at.code
    assert len(platform.paycore.merchants.tokens(shop.merchant.merchant_id)) == 1


def test_admin_rotates_revokes_and_disables(platform, shop):
    service, mid = platform.paycore.merchants, shop.merchant.merchant_id
    at = _app(platform, "ann", "admin")
    assert not at.exception

    at.number_input(key="merchant_grace_h").set_value(2.0)
    _button(at, "merchant_rotate_token").click().run()
    assert not at.exception
    new_token = at.code[0].value.strip()
    assert new_token.startswith("pwk_") and any("shown once" in w.value for w in at.warning)
    assert service.authenticate(new_token).merchant_id == mid
    assert service.authenticate(shop.token).merchant_id == mid  # in its 2 h grace

    at.selectbox(key="merchant_revoke_prefix").select(shop.token[:10])
    _button(at, "merchant_revoke_token").click().run()  # not confirmed: nothing happens
    assert any("confirm" in e.value for e in at.error)
    assert service.authenticate(shop.token).merchant_id == mid
    at.checkbox(key="merchant_revoke_confirm").check()
    _button(at, "merchant_revoke_token").click().run()
    assert not at.code  # shown once: the token is gone from the page
    with pytest.raises(AuthenticationFailed):
        service.authenticate(shop.token)

    _button(at, "merchant_rotate_secret").click().run()
    secret = at.code[0].value.strip()
    assert secret.startswith("whsec_") and secret != shop.notify_secret
    assert [n.prefix for n in service.notify_secrets(mid)] == [secret[:12], shop.notify_secret[:12]]

    _button(at, "merchant_disable").click().run()
    with pytest.raises(MerchantDisabled):
        service.authenticate(new_token)
    at.run()
    _button(at, "merchant_enable").click().run()
    assert service.authenticate(new_token).status == "active"

    audit = recent(platform.paycore.db.engine)
    assert [r["action"] for r in reversed(audit)] == [
        "merchant.token.rotate",
        "merchant.token.revoke",
        "merchant.notify_secret.rotate",
        "merchant.disable",
        "merchant.enable",
    ]
    assert all(
        r["actor"] == "ann" and r["target"] == f"merchant:{mid}" and r["detail"]["ok"]
        for r in audit
    )
    assert audit[-1]["detail"]["grace_s"] == 7200
    kept = json.dumps([r["detail"] for r in audit])
    assert new_token not in kept and secret not in kept and shop.token not in kept


def test_admin_sets_how_trades_end(platform, shop):
    service, mid = platform.paycore.merchants, shop.merchant.merchant_id
    before = service.get(mid)
    assert (before.trade_expiry_s, before.confirm_hold_s, before.pay_without_coupon) == (
        1800,
        604_800,
        False,
    )
    at = _app(platform, "ann", "admin")
    assert not at.exception
    _button(at, "merchant_configure").click().run()  # nothing changed: nothing written
    assert any("Nothing changed" in i.value for i in at.info)
    assert recent(platform.paycore.db.engine) == []

    at.number_input(key=f"merchant_trade_expiry_s_{mid}").set_value(600)
    at.number_input(key=f"merchant_confirm_hold_s_{mid}").set_value(3600)
    at.checkbox(key=f"merchant_pay_without_coupon_{mid}").check()
    _button(at, "merchant_configure").click().run()
    assert not at.exception and at.success, [e.value for e in at.error]
    after = service.get(mid)
    assert (after.trade_expiry_s, after.confirm_hold_s, after.pay_without_coupon) == (
        600,
        3600,
        True,
    )
    [row] = recent(platform.paycore.db.engine)
    assert (row["action"], row["actor"], row["target"]) == (
        "merchant.configure",
        "ann",
        f"merchant:{mid}",
    )
    assert row["detail"]["ok"] and row["detail"]["changes"] == {
        "trade_expiry_s": 600,
        "confirm_hold_s": 3600,
        "pay_without_coupon": True,
    }
    assert row["detail"]["before"]["trade_expiry_s"] == 1800

    at.run()  # the page now shows the stored values; turning one back changes only it
    assert any("close after 600 s" in c.value for c in at.caption)
    at.checkbox(key=f"merchant_pay_without_coupon_{mid}").uncheck()
    _button(at, "merchant_configure").click().run()
    assert service.get(mid).pay_without_coupon is False
    last = recent(platform.paycore.db.engine)[0]
    assert last["detail"]["changes"] == {"pay_without_coupon": False}
