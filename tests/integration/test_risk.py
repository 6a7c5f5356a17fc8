"""The risk engine on the pay link, on SQLite and PostgreSQL: limits per merchant and
user that count only attempts that began, the blocklist, the review log of unchecked
payments, Redis shared between replicas and Redis down, settings and the CLI."""

from __future__ import annotations

import socket
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import Shop, table_counts

from paycore import PayCore, PayRequest, PayTool
from paycore.errors import (
    InsufficientBalance,
    InvalidRequest,
    LockBackendError,
    RiskRejected,
    UnknownMerchant,
    WrongState,
)
from paycore.locks import MemoryLock, RedisLock
from paycore.risk import (
    BLOCKED,
    RedisRiskCounters,
    RiskEngine,
    RiskPolicy,
    block,
    blocked,
    close_review,
    list_reviews,
    record_review,
    scope_key,
    unblock,
    windows_at,
)

MIDNIGHT = datetime(2026, 12, 7, tzinfo=UTC).timestamp()


class EpochClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"


def pay(shop: Shop, trade_no: str, *tools: tuple[str, int], pay_no: str | None = None):
    request = PayRequest(trade_no, tuple(PayTool(t, a) for t, a in tools), out_pay_no=pay_no)
    return shop.core.payments.pay(shop.mid, request)


def new_paid(shop: Shop, user: str = "u1", amount: int = 1000):
    """Create a trade for ``user`` and pay it with the channel (answered *processing*)."""
    t = shop.trade("instant", amount, user)
    return pay(shop, t.out_trade_no, ("channel", amount))


def engine(core: PayCore, **limits: Any) -> RiskEngine:
    core.risk.policy = RiskPolicy(**limits)
    return core.risk


def usage(risk: RiskEngine, mid: str, user: str, kind: str = "day") -> tuple[int, int]:
    window = next(w for w in windows_at(risk.policy, risk.clock()) if w.kind == kind)
    return risk.counters.usage(scope_key(mid, user, "CNY"), window)


# -- limits and what counts ---------------------------------------------------------------
def test_daily_limits_hold_per_merchant_and_reset_at_utc_midnight(shop, core):
    risk = engine(core, daily_max_count=2, daily_max_amount=10_000)
    risk.clock = clock = EpochClock(MIDNIGHT - 120)
    other = Shop(core)
    new_paid(shop)
    new_paid(shop)
    before = table_counts(core.db)
    with pytest.raises(RiskRejected, match="daily limit on payments"):
        new_paid(shop)
    after = table_counts(core.db)
    assert after["pay_orders"] == before["pay_orders"] and after["risk_reviews"] == 0
    new_paid(other)  # another merchant's u1 has its own counters
    clock.now = MIDNIGHT + 1  # a new UTC day
    new_paid(shop)
    assert usage(risk, shop.mid, "u1") == (1, 1000)


def test_refused_attempts_are_not_counted(shop, core):
    risk = engine(core, max_per_user_per_minute=2)
    first = shop.trade("instant", 1000, "u1")
    pay(shop, first.out_trade_no, ("channel", 1000))
    for i in range(5):  # the trade is already being paid: refused before the risk check
        with pytest.raises(WrongState):
            pay(shop, first.out_trade_no, ("channel", 1000), pay_no=f"again{i}")
    for _ in range(5):  # begun, then refused inside the transaction: the reservation goes back
        poor = shop.trade("instant", 1000, "u1")
        with pytest.raises(InsufficientBalance):
            pay(shop, poor.out_trade_no, ("balance", 1000))
    assert usage(risk, shop.mid, "u1", "minute") == (1, 1000)
    new_paid(shop)
    with pytest.raises(RiskRejected, match="last minute"):
        new_paid(shop)


def test_attempts_failing_on_an_unreachable_lock_are_not_counted(migrated_db):
    core = PayCore(migrated_db, lock=RedisLock(closed_port_url(), socket_timeout=0.2))
    try:
        shop = Shop(core)
        risk = engine(core, max_per_user_per_minute=2)
        for _ in range(4):
            with pytest.raises(LockBackendError):
                new_paid(shop)
        assert usage(risk, shop.mid, "u1", "minute") == (0, 0)
        core.lock.close()
        core.lock = MemoryLock()  # the lock backend is back
        new_paid(shop)
        new_paid(shop)
        with pytest.raises(RiskRejected):
            new_paid(shop)
    finally:
        core.close()


def test_attempts_refused_by_a_closed_channel_are_not_counted(migrated_db):
    from runtime.wiring import build_stability
    from stability.errors import StabilityError

    runtime = build_stability(migrated_db.engine, pay_orgs=(Shop.ORG,), redis_url=None)
    core = PayCore(
        migrated_db,
        guard=runtime.guard,
        risk=RiskEngine(RiskPolicy(max_per_user_per_minute=1), db=migrated_db),
    )
    try:
        shop = Shop(core)
        channel = runtime.guard.breaker(f"channel.{Shop.ORG}")
        channel.force("forced_open", "channel outage drill")
        for _ in range(3):
            with pytest.raises(StabilityError):
                new_paid(shop)
        channel.force(None, "drill over")
        new_paid(shop)  # the refused attempts gave their reservations back
        with pytest.raises(RiskRejected):
            new_paid(shop)
    finally:
        core.close()
        runtime.close()


def test_concurrent_pays_never_pass_the_daily_count(shop, core):
    engine(core, daily_max_count=5)
    trades = [shop.trade("instant", 100, "u7") for _ in range(16)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(no: str) -> None:
        try:
            pay(shop, no, ("channel", 100))
            result = "paid"
        except RiskRejected:
            result = "rejected"
        except Exception as exc:  # noqa: BLE001 - named in the assertion below
            result = type(exc).__name__
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(t.out_trade_no,)) for t in trades]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["paid"] * 5 + ["rejected"] * 11
    assert usage(core.risk, shop.mid, "u7") == (5, 500)


# -- Redis: shared by replicas, and down ---------------------------------------------------
def test_replicas_share_the_limits_through_redis(migrated_db, redis_server):
    ns = f"t:{uuid.uuid4().hex}:"
    policy = RiskPolicy(daily_max_count=3)
    cores = [
        PayCore(
            migrated_db,
            risk=RiskEngine(
                policy, db=migrated_db, counters=RedisRiskCounters(redis_server, namespace=ns)
            ),
        )
        for _ in range(2)
    ]
    try:
        shop = Shop(cores[0])
        replicas = [shop, Shop.__new__(Shop)]
        replicas[1].__dict__.update(shop.__dict__, core=cores[1])
        new_paid(replicas[0])
        new_paid(replicas[1])
        new_paid(replicas[0])
        for replica in replicas:
            with pytest.raises(RiskRejected):
                new_paid(replica)
    finally:
        for c in cores:
            c.risk.close()
            c.lock.close()


def _guarded_core(db, counters_url: str, **limits: Any):
    from runtime.wiring import build_stability

    runtime = build_stability(db.engine, pay_orgs=(Shop.ORG, "SANDBOX_B"), redis_url=None)
    risk = RiskEngine(
        RiskPolicy(**limits), db=db, counters=RedisRiskCounters(counters_url, namespace="t:down:")
    )
    return runtime, PayCore(db, guard=runtime.guard, risk=risk)


def test_redis_down_allows_small_payments_unchecked_and_records_each(migrated_db):
    runtime, core = _guarded_core(
        migrated_db, closed_port_url(), fallback_max_amount=5_000, max_per_user_per_minute=1
    )
    try:
        shop = Shop(core)
        core.risk.block(shop.mid, "u-bad", reason="fraud", actor="ops")
        paid = [new_paid(shop, "u1", 1_000) for _ in range(12)]  # above the minute limit, too
        with pytest.raises(RiskRejected, match="fallback threshold"):
            new_paid(shop, "u1", 5_001)
        with pytest.raises(RiskRejected) as refused:
            new_paid(shop, "u-bad", 100)  # the blocklist holds while counters are down
        assert refused.value.message == BLOCKED
        reviews = list_reviews(core.db)
        assert sorted(r.trade_id for r in reviews) == sorted(p.trade_id for p in paid)
        assert {(r.merchant_id, r.user_id, r.amount, r.status) for r in reviews} == {
            (shop.mid, "u1", 1_000, "open")
        }
        reasons = {r.reason for r in reviews}
        assert "risk counters unreachable: ConnectionError" in reasons
        assert runtime.guard.breaker("risk").state == "open"  # the guard stopped asking
        assert any("breaker" in r for r in reasons)
    finally:
        core.risk.close()
        runtime.close()


def test_redis_down_without_a_guard_still_falls_back(shop, core):
    core.risk.counters = RedisRiskCounters(closed_port_url(), namespace="t:down:")
    new_paid(shop, "u1", 2_000)
    [review] = list_reviews(core.db)
    assert (review.user_id, review.amount) == ("u1", 2_000)
    with pytest.raises(RiskRejected):
        new_paid(shop, "u1", core.risk.policy.fallback_max_amount + 1)


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
