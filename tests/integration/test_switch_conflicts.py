"""One live switch per kind and target (issue 18), on SQLite and PostgreSQL: a second apply is
refused naming the first, pending and lapsed switches, the database's own index, concurrent
applies, and the migration that ends duplicates stored before the index."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from switch_service import svc  # noqa: F401 - fixture

from stability.errors import SwitchConflict
from stability.schema import AuditEntry, Switch
from stability.switches import SwitchService

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
    notify = svc.propose(
        "degrade", "notification", actor="olive", reason="slow", ttl=timedelta(hours=1)
    )
    assert other.status == notify.status == "active"
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
    first = svc.propose(
        "degrade", "notification", actor="olive", reason="slow", ttl=timedelta(minutes=5)
    )
    svc.test_clock.now += timedelta(minutes=6)  # past expiry; the expiry job has not run
    second = svc.propose(
        "degrade", "notification", actor="otto", reason="slow again", ttl=timedelta(minutes=5)
    )
    assert svc.get(first.id).status == "expired" and second.status == "active"
    assert [(e["action"], e["switch_id"]) for e in svc.audit_log()[:2]] == [
        ("apply", second.id),
        ("expire", first.id),
    ]
    assert [s.id for s in svc.live()] == [second.id]


def test_the_database_refuses_a_second_live_row_itself(svc, migrated_db):
    """The partial unique index, not only the service's check (another writer, a bug)."""
    svc.propose("degrade", "notification", actor="olive", reason="slow", ttl=timedelta(minutes=5))
    row = {
        "kind": "degrade",
        "target": "notification",
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
    first = svc.propose(
        "degrade", "notification", actor="olive", reason="slow", ttl=timedelta(minutes=5)
    )
    real = SwitchService._live_of
    calls = []

    def blind_once(conn, kind, target):
        calls.append(kind)
        return None if len(calls) == 1 else real(conn, kind, target)

    monkeypatch.setattr(SwitchService, "_live_of", staticmethod(blind_once))
    with pytest.raises(SwitchConflict, match=rf"already active \(#{first.id}, by olive"):
        svc.propose(
            "degrade", "notification", actor="otto", reason="slow", ttl=timedelta(minutes=5)
        )
    assert len(calls) == 2 and [s.id for s in svc.live()] == [first.id]
