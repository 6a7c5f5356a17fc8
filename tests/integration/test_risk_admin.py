"""The risk engine's administration, on SQLite and PostgreSQL: the blocklist and the review
log, the policy's validation, settings, the platform's wiring and the CLI."""

from __future__ import annotations

import uuid

import pytest
from conftest import Shop
from risk_shop import new_paid

from paycore import PayCore
from paycore.errors import InvalidRequest, RiskRejected, UnknownMerchant
from paycore.risk import (
    RedisRiskCounters,
    RiskEngine,
    RiskPolicy,
    block,
    blocked,
    close_review,
    list_reviews,
    record_review,
    unblock,
)


# -- the blocklist and the review log -------------------------------------------------------
def test_blocklist_validates_and_other_replicas_see_changes(shop, core, counts):
    before = counts(core.db)
    for merchant, user, reason in (
        (shop.mid, "", "x"),
        (shop.mid, "u\x00", "x"),
        (shop.mid, "u" * 65, "x"),
        ("bad|id", "u1", "x"),
        (shop.mid, "u1", ""),
    ):
        with pytest.raises(InvalidRequest):
            block(core.db, merchant, user, reason=reason, actor="ops")
    with pytest.raises(UnknownMerchant):
        block(core.db, "m-nobody", "u1", reason="x", actor="ops")
    assert counts(core.db) == before

    replica = RiskEngine(RiskPolicy(blocklist_refresh_s=0.2), db=core.db)
    assert replica.reserve(shop.mid, "u1", 100)  # loads the (empty) blocklist
    entry = core.risk.block(shop.mid, "u1", reason="stolen card", actor="ops")
    assert (entry.merchant_id, entry.created_by) == (shop.mid, "ops")
    with pytest.raises(RiskRejected):
        new_paid(shop)  # this process: at once
    import time

    time.sleep(0.3)
    with pytest.raises(RiskRejected):
        replica.reserve(shop.mid, "u1", 100)  # another replica: after its refresh
    block(core.db, "*", "u2", reason="sanctions", actor="ops")
    assert [(e.merchant_id, e.user_id) for e in blocked(core.db, shop.mid)] == [
        (shop.mid, "u1"),
        ("*", "u2"),
    ]
    assert blocked(core.db, "m-other") == [blocked(core.db)[1]]
    assert unblock(core.db, shop.mid, "u1") and not unblock(core.db, shop.mid, "u1")
    time.sleep(0.3)
    assert replica.reserve(shop.mid, "u1", 100)


def test_reviews_are_listed_newest_first_and_closed_once(shop, core):
    ids = [
        record_review(
            core.db,
            merchant_id=m,
            user_id="u1",
            trade_id=i,
            amount=100 * i,
            currency="CNY",
            reason="risk degraded by switch",
        )
        for i, m in enumerate((shop.mid, "m-other", shop.mid), start=1)
    ]
    assert [r.id for r in list_reviews(core.db)] == ids[::-1]
    assert [r.trade_id for r in list_reviews(core.db, merchant_id=shop.mid)] == [3, 1]
    assert close_review(core.db, ids[0], actor="reviewer", note="customer confirmed")
    assert not close_review(core.db, ids[0], actor="reviewer")
    assert [r.id for r in list_reviews(core.db, status="open")] == ids[:0:-1]
    [done] = list_reviews(core.db, status="reviewed")
    assert (done.reviewed_by, done.note) == ("reviewer", "customer confirmed")
    with pytest.raises(InvalidRequest):
        list_reviews(core.db, status="closed")


# -- policy, settings, wiring, CLI ---------------------------------------------------------
@pytest.mark.parametrize(
    "limits",
    [
        {"daily_max_count": 0},
        {"max_amount": True},
        {"daily_max_amount": 1.5},
        {"blocklist_refresh_s": 0},
        {"max_amount": 100, "fallback_max_amount": 101},
    ],
)
def test_policy_refuses_nonsense(limits):
    with pytest.raises(ValueError):
        RiskPolicy(**limits)


def test_settings_read_the_risk_policy_and_refuse_bad_values():
    from runtime.settings import Settings

    s = Settings.from_env(
        {
            "PAYWATCH_RISK_DAILY_MAX_COUNT": "50",
            "PAYWATCH_RISK_DAILY_MAX_AMOUNT": "900000",
            "PAYWATCH_RISK_MAX_PER_MINUTE": "7",
            "PAYWATCH_RISK_MAX_AMOUNT": "80000",
            "PAYWATCH_RISK_FALLBACK_MAX_AMOUNT": "2000",
            "PAYWATCH_RISK_BLOCKLIST_REFRESH_S": "0.5",
            "PAYWATCH_RISK_NAMESPACE": "pw:eu:risk:",
        }
    )
    assert s.risk_policy == RiskPolicy(
        max_amount=80_000,
        max_per_user_per_minute=7,
        daily_max_count=50,
        daily_max_amount=900_000,
        fallback_max_amount=2_000,
        blocklist_refresh_s=0.5,
    )
    assert s.risk_namespace == "pw:eu:risk:"
    assert Settings.from_env({}).risk_policy == RiskPolicy()
    for env, name in (
        (("DAILY_MAX_COUNT", "0"), "PAYWATCH_RISK_DAILY_MAX_COUNT"),
        (("MAX_AMOUNT", "lots"), "PAYWATCH_RISK_MAX_AMOUNT"),
        (("MAX_AMOUNT", "1000"), "PAYWATCH_RISK_FALLBACK_MAX_AMOUNT"),
        (("BLOCKLIST_REFRESH_S", "-1"), "PAYWATCH_RISK_BLOCKLIST_REFRESH_S"),
    ):
        with pytest.raises(ValueError, match=name):
            Settings.from_env({f"PAYWATCH_RISK_{env[0]}": env[1]})


def test_platform_builds_the_engine_from_settings(tmp_path, redis_server):
    from runtime.bootstrap import build_platform
    from runtime.settings import Settings

    ns = f"t:{uuid.uuid4().hex}:"
    policy = RiskPolicy(daily_max_count=1)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/p.db",
        redis_url=redis_server,
        var_dir=str(tmp_path),
        risk_policy=policy,
        risk_namespace=ns,
    )
    platform = build_platform(settings, channels=False)
    try:
        risk = platform.paycore.risk
        assert risk.policy is policy and risk.db is platform.db
        assert isinstance(risk.counters, RedisRiskCounters) and risk.counters.namespace == ns
        assert risk.reserve("m1", "u1", 10)
        with pytest.raises(RiskRejected):
            risk.reserve("m1", "u1", 10)
    finally:
        platform.close()


def test_cli_blocks_lists_unblocks_and_lists_reviews(sqlite_url, monkeypatch, capsys):
    from console.audit import recent
    from runtime.cli import main

    url = sqlite_url
    monkeypatch.setenv("PAYWATCH_DATABASE_URL", url)
    monkeypatch.setenv("PAYWATCH_ACTOR", "ops-anna")
    core = PayCore(url)
    shop = Shop(core)
    record_review(
        core.db,
        merchant_id=shop.mid,
        user_id="u3",
        trade_id=42,
        amount=900,
        currency="CNY",
        reason="risk degraded by switch",
    )
    try:
        assert (
            main(
                ["risk", "block", "--merchant", shop.mid, "--user", "u1", "--reason", "chargebacks"]
            )
            == 0
        )
        assert main(["risk", "list"]) == 0
        out = capsys.readouterr().out
        assert f"{shop.mid}\tu1\t" in out and "ops-anna\tchargebacks" in out
        assert main(["risk", "unblock", "--merchant", shop.mid, "--user", "u1"]) == 0
        assert main(["risk", "unblock", "--merchant", shop.mid, "--user", "u1"]) == 2
        assert (
            main(["risk", "block", "--merchant", shop.mid, "--user", "u\x01", "--reason", "x"]) == 2
        )
        capsys.readouterr()
        assert main(["risk", "reviews", "--status", "open"]) == 0
        assert "\tu3\t42\t900 CNY\trisk degraded by switch" in capsys.readouterr().out
        [review] = list_reviews(core.db)
        assert main(["risk", "review", str(review.id), "--note", "ok", "--actor", "rev"]) == 0
        assert list_reviews(core.db, status="open") == []
        actions = [(a["actor"], a["action"]) for a in recent(core.db.engine)]
        assert actions[::-1] == [
            ("ops-anna", "risk.block"),
            ("ops-anna", "risk.unblock"),
            ("rev", "risk.review"),
        ]
        assert blocked(core.db) == []
    finally:
        core.close()
