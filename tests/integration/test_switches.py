"""Switch rules: reason, expiry, approval, audit, version — on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import Clock

from stability.depmap_seed import default_map
from stability.errors import ApprovalError, SwitchConflict, SwitchError
from stability.limits import LimitRule
from stability.policy import approval_policy
from stability.propagation import SwitchWatcher
from stability.schema import AuditEntry, Switch
from stability.switches import SwitchService, SwitchSnapshot


@pytest.fixture
def svc(migrated_db):
    dmap = default_map(("SANDBOX_A",))
    rules = [
        LimitRule("channel.SANDBOX_A.total", "channel.SANDBOX_A", rate=10, burst=10),
        LimitRule("coupon.total", "coupon", rate=10, burst=10),
    ]
    clock = Clock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    service = SwitchService(
        migrated_db.engine, needs_approval=approval_policy(lambda: dmap, lambda: rules), clock=clock
    )
    service.test_clock = clock  # type: ignore[attr-defined]
    return service


def test_reason_and_expiry_are_required(svc):
    for kwargs in (
        {"reason": "", "ttl": timedelta(hours=1)},
        {"reason": "  "},
        {"reason": "x"},
        {"reason": "x", "ttl": timedelta(days=8)},
        {"reason": "x", "ttl": timedelta(seconds=-1)},
    ):
        with pytest.raises(SwitchError):
            svc.propose("degrade", "coupon", actor="alice", **kwargs)
    with pytest.raises(SwitchError):
        svc.propose(
            "force_breaker",
            "coupon",
            actor="alice",
            reason="x",
            ttl=timedelta(hours=1),
            params={"state": "half"},
        )
    with pytest.raises(SwitchError):
        svc.propose(
            "set_limit",
            "coupon.total",
            actor="alice",
            reason="x",
            ttl=timedelta(hours=1),
            params={"rate": -1},
        )
    assert svc.version() == 0 and svc.listing() == []


def test_weak_dependency_switch_applies_at_once_with_audit_and_version(svc):
    sw = svc.propose(
        "degrade", "coupon", actor="alice", reason="coupon p99 at 2s", ttl=timedelta(minutes=30)
    )
    assert sw.status == "active" and not sw.requires_approval
    snap = svc.snapshot()
    assert snap.degraded == {"coupon"} and snap.version == 1
    log = svc.audit_log()
    assert log[0]["actor"] == "alice" and log[0]["action"] == "apply"
    assert log[0]["before"] is None and log[0]["after"]["status"] == "active"
    assert log[0]["reason"] == "coupon p99 at 2s" and log[0]["version"] == 1
    svc.revert(sw.id, actor="bob", reason="recovered")
    assert svc.snapshot().degraded == frozenset() and svc.version() == 2
    assert svc.audit_log()[0]["before"] == {"status": "active"}


def test_strong_dependency_switch_waits_for_a_second_person(svc):
    sw = svc.propose(
        "degrade",
        "channel.SANDBOX_A",
        actor="alice",
        reason="channel down",
        ttl=timedelta(minutes=10),
    )
    assert sw.status == "pending" and sw.requires_approval
    assert svc.snapshot().degraded == frozenset()  # not applied yet
    with pytest.raises(ApprovalError):
        svc.approve(sw.id, approver="alice")
    approved = svc.approve(sw.id, approver="bob")
    assert approved.status == "active" and approved.approved_by == "bob"
    assert svc.snapshot().degraded == {"channel.SANDBOX_A"}
    with pytest.raises(ApprovalError):
        svc.approve(sw.id, approver="carol")  # only once
    # a limit on a strong dependency needs approval too; one on a weak one does not
    lim = svc.propose(
        "set_limit",
        "channel.SANDBOX_A.total",
        actor="alice",
        reason="shed",
        ttl=timedelta(minutes=5),
        params={"rate": 1, "burst": 1},
    )
    assert lim.status == "pending"
    lim2 = svc.propose(
        "set_limit",
        "coupon.total",
        actor="alice",
        reason="shed",
        ttl=timedelta(minutes=5),
        params={"rate": 1},
    )
    assert lim2.status == "active"
    assert svc.snapshot().limits == {"coupon.total": {"rate": 1}}
    rejected = svc.reject(lim.id, approver="bob", reason="not needed")
    assert rejected.status == "rejected"


def test_switches_expire_and_revert_themselves(svc):
    sw = svc.propose(
        "force_breaker",
        "coupon",
        actor="alice",
        reason="drill",
        ttl=timedelta(minutes=5),
        params={"state": "forced_open"},
    )
    assert svc.snapshot().forced == {"coupon": "forced_open"}
    svc.test_clock.now += timedelta(minutes=5, seconds=1)
    assert svc.snapshot().forced == {}  # past expiry it no longer applies, job or not
    assert svc.expire_due() == 1
    assert svc.get(sw.id).status == "expired"
    assert svc.audit_log()[0]["action"] == "expire" and svc.audit_log()[0]["actor"] == "system"
    assert svc.expire_due() == 0


def test_watcher_checks_expiry_only_once_a_switch_can_have_expired(svc):
    calls = []
    expire_due = svc.expire_due
    svc.expire_due = lambda: calls.append(svc.test_clock.now) or expire_due()
    applied = []
    watcher = SwitchWatcher(svc, applied.append)  # not started: the test drives refresh()
    for _ in range(3):
        watcher.refresh()
    assert len(calls) == 1  # the first refresh, before any snapshot; then nothing can expire
    sw = svc.propose("degrade", "coupon", actor="alice", reason="drill", ttl=timedelta(minutes=5))
    pending = svc.propose(
        "set_limit",
        "channel.SANDBOX_A.total",
        actor="alice",
        reason="drill",
        ttl=timedelta(minutes=9),
        params={"rate": 1},
    )
    assert pending.status == "pending"
    assert watcher.refresh() and applied[-1].degraded == {"coupon"}
    assert applied[-1].next_expiry == sw.expires_at
    svc.test_clock.now += timedelta(minutes=4)
    watcher.refresh()
    assert len(calls) == 1  # before the earliest expiry: no expiry transaction
    svc.test_clock.now += timedelta(minutes=1, seconds=1)
    assert watcher.refresh()  # expired and reverted in this refresh
    assert len(calls) == 2 and applied[-1].degraded == frozenset()
    assert svc.get(sw.id).status == "expired"
    assert applied[-1].next_expiry == pending.expires_at  # pending switches expire too
    svc.test_clock.now += timedelta(minutes=4)
    assert watcher.refresh() and svc.get(pending.id).status == "expired"
    assert applied[-1].next_expiry is None
    watcher.refresh()
    assert len(calls) == 3


def test_audit_log_is_append_only_history(svc, migrated_db):
    for i in range(3):
        sw = svc.propose(
            "dry_run_limit", "coupon.total", actor=f"u{i}", reason=f"r{i}", ttl=timedelta(minutes=1)
        )
        svc.revert(sw.id, actor="ops", reason="done")
    with migrated_db.engine.connect() as conn:
        versions = conn.execute(sa.select(AuditEntry.version).order_by(AuditEntry.id)).scalars()
        assert list(versions) == [1, 2, 3, 4, 5, 6]


def test_snapshot_build_later_switch_wins():
    from stability.switches import SwitchRecord

    now = datetime.now(UTC)

    def rec(i, kind, target, params):
        return SwitchRecord(i, kind, target, params, "r", "a", "active", False, None, now, now)

    snap = SwitchSnapshot.build(
        7,
        [
            rec(2, "set_limit", "x", {"rate": 2}),
            rec(1, "set_limit", "x", {"rate": 1}),
            rec(3, "dry_run_limit", "y", {}),
        ],
    )
    assert snap.limits == {"x": {"rate": 2}} and snap.dry_run == {"y"} and snap.version == 7


# -- one live switch per kind and target (issue 18) ------------------------------------------


def test_a_second_apply_of_the_same_switch_is_refused_naming_the_first(svc):
    first = svc.propose(
        "degrade", "risk", actor="olive", reason="risk slow", ttl=timedelta(hours=1)
    )
    with pytest.raises(SwitchConflict) as refused:
        svc.propose(
            "degrade", "risk", actor="otto", reason="risk slow (again)", ttl=timedelta(hours=2)
        )
    msg = str(refused.value)
    assert msg.startswith(
        f"a degrade switch for risk is already active (#{first.id}, by olive, "
        "until 2026-11-23 13:00 UTC)"
    ), msg
    assert refused.value.existing_id == first.id and refused.value.http_status == 409
    assert [s.id for s in svc.listing()] == [first.id] and svc.version() == 1  # nothing written
    # another kind on the same target, and the same kind on another target, are separate
    other = svc.propose(
        "force_breaker",
        "risk",
        actor="olive",
        reason="drill",
        ttl=timedelta(hours=1),
        params={"state": "forced_open"},
    )
    coupon = svc.propose("degrade", "coupon", actor="olive", reason="slow", ttl=timedelta(hours=1))
    assert other.status == coupon.status == "active"
    # once reverted, the single revert ends the degradation, and a new one may be applied
    svc.revert(first.id, actor="otto", reason="recovered")
    assert "risk" not in svc.snapshot().degraded
    again = svc.propose(
        "degrade", "risk", actor="otto", reason="slow again", ttl=timedelta(hours=1)
    )
    assert again.status == "active" and "risk" in svc.snapshot().degraded


def test_a_pending_switch_holds_its_target_until_approved_or_rejected(svc):
    pending = svc.propose(
        "degrade", "channel.SANDBOX_A", actor="olive", reason="down", ttl=timedelta(minutes=30)
    )
    with pytest.raises(SwitchConflict, match=rf"is pending approval \(#{pending.id}, by olive"):
        svc.propose(
            "degrade", "channel.SANDBOX_A", actor="otto", reason="down", ttl=timedelta(minutes=30)
        )
    svc.reject(pending.id, approver="otto", reason="not needed")
    assert (
        svc.propose(
            "degrade", "channel.SANDBOX_A", actor="otto", reason="down", ttl=timedelta(minutes=30)
        ).status
        == "pending"
    )


def test_a_lapsed_switch_not_yet_marked_expired_makes_room(svc):
    first = svc.propose("degrade", "coupon", actor="olive", reason="slow", ttl=timedelta(minutes=5))
    svc.test_clock.now += timedelta(minutes=6)  # past expiry; the expiry job has not run
    second = svc.propose(
        "degrade", "coupon", actor="otto", reason="slow again", ttl=timedelta(minutes=5)
    )
    assert svc.get(first.id).status == "expired" and second.status == "active"
    assert [(e["action"], e["switch_id"]) for e in svc.audit_log()[:2]] == [
        ("apply", second.id),
        ("expire", first.id),
    ]
    assert [s.id for s in svc.live()] == [second.id]


def test_the_database_refuses_a_second_live_row_itself(svc, migrated_db):
    """The partial unique index, not only the service's check (another writer, a bug)."""
    svc.propose("degrade", "coupon", actor="olive", reason="slow", ttl=timedelta(minutes=5))
    row = {
        "kind": "degrade",
        "target": "coupon",
        "params": "{}",
        "reason": "direct",
        "actor": "x",
        "requires_approval": False,
        "created_at": svc.test_clock.now,
        "expires_at": svc.test_clock.now + timedelta(minutes=5),
    }
    with pytest.raises(sa.exc.IntegrityError), migrated_db.engine.begin() as conn:
        conn.execute(sa.insert(Switch).values(**row, status="pending"))
    with migrated_db.engine.begin() as conn:  # ended rows are not covered by the index
        conn.execute(sa.insert(Switch).values(**row, status="reverted"))
        conn.execute(sa.insert(Switch).values(**row, status="expired"))


def test_concurrent_applies_of_one_switch_give_exactly_one(migrated_db):
    """Real threads, each with its own connection, apply the same switch at once."""
    threads_n = 8
    svc = SwitchService(migrated_db.engine)
    barrier = threading.Barrier(threads_n)
    results: list[object] = []

    def apply(i: int) -> None:
        barrier.wait()
        try:
            results.append(
                svc.propose(
                    "degrade", "risk", actor=f"op{i}", reason="race", ttl=timedelta(hours=1)
                )
            )
        except SwitchConflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, SwitchConflict)]
    assert len(won) == 1 and len(lost) == threads_n - 1, results
    assert all(e.existing_id == won[0].id for e in lost)
    assert all("is already active" in str(e) for e in lost)
    with migrated_db.engine.connect() as conn:
        live = conn.execute(sa.select(Switch.id).where(Switch.status == "active")).scalars()
        assert list(live) == [won[0].id]
    assert svc.version() == 1 and len(svc.audit_log()) == 1


def test_migration_ends_live_duplicates_stored_before_the_index(empty_db_url):
    """A database that already holds two live twins (the old bug) migrates: one is kept."""
    from alembic import command

    from paycore import Database
    from runtime.migrate import alembic_config, upgrade_database

    db = Database(empty_db_url)
    try:
        with db.engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0009")
        now = datetime.now(UTC)
        row = {
            "kind": "degrade",
            "target": "risk",
            "params": "{}",
            "reason": "twin",
            "actor": "olive",
            "requires_approval": False,
            "created_at": now,
            "expires_at": now + timedelta(hours=1),
        }
        with db.engine.begin() as conn:
            for status in ("active", "active", "pending", "reverted"):
                conn.execute(sa.insert(Switch).values(**row, status=status))
        upgrade_database(db.engine)
        with db.engine.connect() as conn:
            rows = conn.execute(sa.select(Switch.id, Switch.status).order_by(Switch.id)).all()
            audit = conn.execute(sa.select(AuditEntry.switch_id, AuditEntry.action)).all()
        assert [tuple(r) for r in rows] == [
            (1, "reverted"),
            (2, "active"),
            (3, "reverted"),
            (4, "reverted"),
        ]
        assert sorted(tuple(a) for a in audit) == [(1, "reverted"), (3, "reverted")]
        assert SwitchService(db.engine).snapshot().degraded == {"risk"}
    finally:
        db.dispose()


def test_a_twin_that_slips_past_the_check_is_refused_by_the_index(svc, monkeypatch):
    """The race the index closes on PostgreSQL: both checks saw nothing, the second insert
    meets the unique index and is answered like the check would have."""
    first = svc.propose("degrade", "coupon", actor="olive", reason="slow", ttl=timedelta(minutes=5))
    real = SwitchService._live_of
    calls = []

    def blind_once(conn, kind, target):
        calls.append(kind)
        return None if len(calls) == 1 else real(conn, kind, target)

    monkeypatch.setattr(SwitchService, "_live_of", staticmethod(blind_once))
    with pytest.raises(SwitchConflict, match=rf"already active \(#{first.id}, by olive"):
        svc.propose("degrade", "coupon", actor="otto", reason="slow", ttl=timedelta(minutes=5))
    assert len(calls) == 2 and [s.id for s in svc.live()] == [first.id]


def test_breaker_windows_are_published_for_the_console(migrated_db):
    """Each process writes its breakers' windows; unchanged windows are not rewritten until
    the heartbeat; a stopped process removes its rows."""
    from stability.breaker import BreakerConfig, CircuitBreaker
    from stability.breaker_stats import BreakerStatsPublisher, read_stats

    clock = Clock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    risk = CircuitBreaker("risk", BreakerConfig(window_size=10, min_calls=10))
    idle = CircuitBreaker("coupon")  # no calls: nothing to show
    pub = BreakerStatsPublisher(
        migrated_db.engine,
        lambda: {"risk": risk, "coupon": idle},
        node="api-1",
        heartbeat_s=30,
        clock=clock,
    )
    other = BreakerStatsPublisher(
        migrated_db.engine, lambda: {"risk": risk}, node="api-2", clock=clock
    )
    for ok in (True, False, True):
        risk.record(ok, 0.01)
    risk.record(True, 5.0)  # slow
    assert pub.publish_once() == 1 and other.publish_once() == 1
    rows = read_stats(migrated_db.engine)
    assert [(r.resource, r.node, r.state, r.calls, r.failures, r.slow_calls) for r in rows] == [
        ("risk", "api-1", "closed", 4, 1, 1),
        ("risk", "api-2", "closed", 4, 1, 1),
    ]
    assert rows[0].updated_at == clock.now and rows[0].window_size == 10
    clock.advance(5)
    assert pub.publish_once() == 0  # nothing changed, heartbeat not due
    risk.record(False, 0.01)
    assert pub.publish_once() == 1
    clock.advance(30)
    assert pub.publish_once() == 1  # heartbeat: rewritten although unchanged
    assert read_stats(migrated_db.engine)[0].updated_at == clock.now
    pub.stop()
    assert [r.node for r in read_stats(migrated_db.engine)] == ["api-2"]


def test_a_started_stability_runtime_publishes_its_breakers(migrated_db):
    """The wiring: every process that starts its stability layer (API, worker, up) publishes
    its breaker windows; closing it removes them."""
    from runtime.wiring import build_stability
    from stability.breaker_stats import read_stats

    rt = build_stability(migrated_db.engine, pay_orgs=("SANDBOX_A",), redis_url=None)
    rt.start()
    try:
        for ok in (True, True, False):
            rt.guard.record("risk", "link.pay", ok, 0.01)
        assert rt.breaker_stats is not None and rt.breaker_stats.publish_once() == 1
        [row] = read_stats(migrated_db.engine)
        assert (row.resource, row.calls, row.failures) == ("risk", 3, 1)
    finally:
        rt.close()
    assert read_stats(migrated_db.engine) == []
