"""Switch rules: reason, expiry, approval, audit, version — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from switch_service import svc  # noqa: F401 - fixture

from stability.errors import ApprovalError, SwitchError
from stability.propagation import SwitchWatcher
from stability.schema import AuditEntry
from stability.switches import SwitchSnapshot


def test_reason_and_expiry_are_required(svc):
    for kwargs in (
        {"reason": "", "ttl": timedelta(hours=1)},
        {"reason": "  "},
        {"reason": "x"},
        {"reason": "x", "ttl": timedelta(days=8)},
        {"reason": "x", "ttl": timedelta(seconds=-1)},
    ):
        with pytest.raises(SwitchError):
            svc.propose("degrade", "notification", actor="alice", **kwargs)
    with pytest.raises(SwitchError):
        svc.propose(
            "force_breaker",
            "notification",
            actor="alice",
            reason="x",
            ttl=timedelta(hours=1),
            params={"state": "half"},
        )
    with pytest.raises(SwitchError):
        svc.propose(
            "set_limit",
            "notification.total",
            actor="alice",
            reason="x",
            ttl=timedelta(hours=1),
            params={"rate": -1},
        )
    assert svc.version() == 0 and svc.listing() == []


def test_weak_dependency_switch_applies_at_once_with_audit_and_version(svc):
    sw = svc.propose(
        "degrade",
        "notification",
        actor="alice",
        reason="notification p99 at 2s",
        ttl=timedelta(minutes=30),
    )
    assert sw.status == "active" and not sw.requires_approval
    snap = svc.snapshot()
    assert snap.degraded == {"notification"} and snap.version == 1
    log = svc.audit_log()
    assert log[0]["actor"] == "alice" and log[0]["action"] == "apply"
    assert log[0]["before"] is None and log[0]["after"]["status"] == "active"
    assert log[0]["reason"] == "notification p99 at 2s" and log[0]["version"] == 1
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
        "notification.total",
        actor="alice",
        reason="shed",
        ttl=timedelta(minutes=5),
        params={"rate": 1},
    )
    assert lim2.status == "active"
    assert svc.snapshot().limits == {"notification.total": {"rate": 1}}
    rejected = svc.reject(lim.id, approver="bob", reason="not needed")
    assert rejected.status == "rejected"


def test_switches_expire_and_revert_themselves(svc):
    sw = svc.propose(
        "force_breaker",
        "notification",
        actor="alice",
        reason="drill",
        ttl=timedelta(minutes=5),
        params={"state": "forced_open"},
    )
    assert svc.snapshot().forced == {"notification": "forced_open"}
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
    sw = svc.propose(
        "degrade", "notification", actor="alice", reason="drill", ttl=timedelta(minutes=5)
    )
    pending = svc.propose(
        "set_limit",
        "channel.SANDBOX_A.total",
        actor="alice",
        reason="drill",
        ttl=timedelta(minutes=9),
        params={"rate": 1},
    )
    assert pending.status == "pending"
    assert watcher.refresh() and applied[-1].degraded == {"notification"}
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
            "dry_run_limit",
            "notification.total",
            actor=f"u{i}",
            reason=f"r{i}",
            ttl=timedelta(minutes=1),
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
