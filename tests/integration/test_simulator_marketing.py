"""The simulator pays with coupons and points too: demo users hold points, coupons are
issued at the sandbox's coupon service (only with its admin access), and the client-side
audit stays right (nothing lost or doubled) with refunds of such trades."""

from __future__ import annotations

import random
import time

import pytest
import sqlalchemy as sa

from simulator.marketing import CouponIssuer
from simulator.merchants import (
    POINTS_FLOOR,
    ensure_demo_marketing,
    ensure_demo_merchants,
    sim_users,
)
from simulator.traffic import ACTIONS, DEFAULT_MIX, Mix, marketing_part

ORGS = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")


def test_marketing_part_leaves_the_channel_a_unit_and_respects_the_cap():
    rng = random.Random(3)
    for _ in range(2_000):
        total, ratio = rng.randint(2, 500_000), rng.random()
        part = marketing_part(total, ratio)
        assert 1 <= part <= total - 1 and part <= int(total * 0.3) + 1
        assert marketing_part(total, ratio, cap=0) == 0
        assert marketing_part(total, ratio, cap=7) <= 7
    assert marketing_part(1, 0.5) == 0  # nothing left for the channel: no part
    assert ACTIONS["instant_coupon"] == ("instant", "coupon")
    assert ACTIONS["instant_points"] == ("instant", "points")
    mix = Mix(DEFAULT_MIX)
    assert 0 < mix.share("instant_coupon") < 0.05 and 0 < mix.share("instant_points") < 0.05


def test_without_sandbox_admin_access_no_coupon_is_issued():
    issuer = CouponIssuer(None, None)
    assert not issuer.enabled and issuer.issue("M", "u", 100) is None
    # a sandbox that does not answer: no coupon, the flow pays by channel
    dead = CouponIssuer("http://127.0.0.1:9", "token", timeout=0.5)
    assert dead.enabled and dead.issue("M", "u", 100) is None
    dead.close()
    assert "token" not in repr(dead)


def test_demo_users_get_points_once_and_coupon_outages_are_tolerated(core, tmp_path):
    merchants = ensure_demo_merchants(
        core, str(tmp_path / "var"), "http://127.0.0.1:1", ORGS, users=3
    )
    users = sim_users(3)
    instant = [m for m in merchants if "instant" in m.trade_types]
    assert instant and len(instant) < len(merchants)  # the wallet merchant has no instant pays
    for m in instant:
        assert core.merchants.get(m.merchant_id).pay_without_coupon is True
        for u in users:
            assert core.points.balance(m.merchant_id, u) == POINTS_FLOOR
    assert ensure_demo_marketing(core, merchants, users) == 0  # still enough: no new grant
    assert ensure_demo_marketing(core, merchants, [*users, "sim-u999"]) == len(instant)


@pytest.mark.redis
def test_coupon_and_points_traffic_keeps_the_books(pg_url, tmp_path):
    from runtime.drill_cli import audit_simulator
    from runtime.embedded import EmbeddedOptions, EmbeddedPlatform
    from runtime.settings import Settings

    settings = Settings(
        database_url=pg_url, var_dir=str(tmp_path / "var"), notify_secret_value="mkt-secret"
    )
    stack = EmbeddedPlatform(settings, EmbeddedOptions(proxies=False)).start()
    try:
        sim = audit_simulator(settings, stack, 12.0, 21)
        mix = {"instant_coupon": 0.45, "instant_points": 0.35, "refund": 0.2}
        sim.mix = Mix(mix)
        sim.start()
        try:
            time.sleep(6)
            sim.stop_traffic()
            left = sim.settle(60)
            result = sim.audit()
        finally:
            sim.stop()
        stats = sim.stats.as_dict()
        engine = stack.platform.paycore.db.engine
        with engine.connect() as c:
            rows = c.execute(
                sa.text(
                    "SELECT i.tool, o.status, count(*) FROM pay_items i "
                    "JOIN pay_orders o ON o.id = i.pay_order_id "
                    "WHERE o.pay_type <> 'refund' GROUP BY i.tool, o.status"
                )
            ).all()
    finally:
        stack.stop()
    got = {(t, s): n for t, s, n in rows}
    assert left == 0, result.as_dict()
    assert (result.lost, result.doubled) == (0, 0), result.as_dict()
    assert stats.get("coupon_pays", 0) > 0 and stats.get("points_pays", 0) > 0, stats
    assert got.get(("coupon", "success"), 0) > 0 and got.get(("points", "success"), 0) > 0, got
    assert stats.get("refunds_succeeded", 0) > 0, stats
