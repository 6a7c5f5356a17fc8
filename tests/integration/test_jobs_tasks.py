"""The compensation table and singleton leases, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Clock
from sqlalchemy import func, select

from paycore import IdGenerator
from paycore.context import BizContext
from paycore.db.schema import CompensationTask, JournalEntry
from paycore.errors import NotFound, WrongState
from paycore.jobs import (
    JobLeases,
    LeaseLost,
    TaskQueue,
    singleton_job,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CTX = BizContext("m1", "goods", "physical", "SANDBOX_A")


def make_queue(db, clock, worker="A", **kw) -> TaskQueue:
    kw.setdefault("rng", random.Random(7))
    return TaskQueue(db, IdGenerator(), clock=clock, worker_id=worker, **kw)


def row(db, task_id) -> CompensationTask:
    with db.session() as s:
        return s.get_one(CompensationTask, task_id)


def entries(db) -> int:
    with db.session() as s:
        return s.execute(select(func.count()).select_from(JournalEntry)).scalar_one()


# -- the queue -----------------------------------------------------------------------------
def test_enqueue_is_idempotent_per_kind_and_key(migrated_db):
    q = make_queue(migrated_db, Clock(T0))
    assert q.enqueue(None, "k", "b1", {"a": 1}) is True
    assert q.enqueue(None, "k", "b1", {"a": 2}) is False  # same key: ignored
    assert q.enqueue(None, "other", "b1", {}) is True
    with pytest.raises(RuntimeError), migrated_db.session() as s:
        assert q.enqueue(s, "k", "in-tx", {}) is True
        raise RuntimeError("the business change rolls back: so does its task")
    with migrated_db.session() as s:
        assert q.enqueue(s, "k", "in-tx", {}) is True
    assert q.backlog() == {"pending": 3, "running": 0, "done": 0, "failed": 0, "manual": 0}
    assert [t.payload for t in q.list(kind="k")] == [{}, {"a": 1}]


def test_claim_leases_due_tasks_to_one_worker(migrated_db):
    clock = Clock(T0)
    a, b = make_queue(migrated_db, clock, "A"), make_queue(migrated_db, clock, "B")
    for i in range(3):
        a.enqueue(None, "k", f"b{i}", {"i": i})
    a.enqueue(None, "k", "later", {}, run_at=T0 + timedelta(seconds=60))
    a.enqueue(None, "other", "x", {})
    got = a.claim(2, kinds=["k"])
    assert [t.payload["i"] for t in got] == [0, 1]
    assert all(t.status == "running" and t.attempts == 1 and t.locked_by == "A" for t in got)
    assert all(t.lease_until == T0 + timedelta(seconds=30) for t in got)
    assert [t.biz_key for t in b.claim(10, kinds=["k"])] == ["b2"]  # not "later", not "other"
    assert a.claim(10, kinds=["k"]) == []
    assert [t.kind for t in b.claim(10)] == ["other"]


def test_backoff_grows_exponentially_within_jitter_bounds(migrated_db):
    clock = Clock(T0)
    q = make_queue(migrated_db, clock, base_backoff_s=5, max_backoff_s=60, rng=random.Random(3))
    q.enqueue(None, "k", "b", {}, max_attempts=10)
    delays = []
    for attempt in range(1, 10):
        (task,) = q.claim(1)
        assert task.attempts == attempt
        assert q.retry(task, "ChannelUnavailable: timeout") == "pending"
        r = row(migrated_db, task.id)
        delay = (r.next_run_at - clock()).total_seconds()
        nominal = min(60, 5 * 2 ** (attempt - 1))
        assert 0.5 * nominal <= delay <= 1.5 * nominal, (attempt, delay)
        assert q.claim(1) == []  # not due before its backoff
        delays.append(delay)
        clock.advance(delay)
    assert delays[3] > delays[0] and max(delays) <= 90

    class Edge:
        def __init__(self, pick):
            self.pick = pick

        def uniform(self, lo, hi):
            return lo if self.pick == "lo" else hi

    lo = make_queue(migrated_db, clock, base_backoff_s=5, max_backoff_s=60, rng=Edge("lo"))
    hi = make_queue(migrated_db, clock, base_backoff_s=5, max_backoff_s=60, rng=Edge("hi"))
    assert [lo.backoff_s(a) for a in (1, 2, 3, 5, 9)] == [2.5, 5, 10, 30, 30]
    assert [hi.backoff_s(a) for a in (1, 2, 3, 5, 9)] == [7.5, 15, 30, 90, 90]


def test_a_business_failure_ends_the_task(migrated_db):
    clock = Clock(T0)
    q = make_queue(migrated_db, clock)
    q.enqueue(None, "k", "b", {})
    (task,) = q.claim(1)
    assert q.fail_business(task, "ChannelRejected: card closed")
    clock.advance(86_400)
    assert q.claim(10) == []
    r = row(migrated_db, task.id)
    assert (r.status, r.attempts, r.last_error) == ("failed", 1, "ChannelRejected: card closed")


def test_after_max_attempts_the_task_goes_to_manual(migrated_db):
    clock = Clock(T0)
    q = make_queue(migrated_db, clock)
    q.enqueue(None, "k", "b", {}, max_attempts=3)
    outcomes = []
    for _ in range(3):
        (task,) = q.claim(1)
        outcomes.append(q.retry(task, "StorageError: database error"))
        clock.advance(3600)
    assert outcomes == ["pending", "pending", "manual"]
    assert q.claim(10) == []
    assert row(migrated_db, task.id).status == "manual"


def test_an_expired_lease_is_claimed_by_another_worker(migrated_db):
    clock = Clock(T0)
    a = make_queue(migrated_db, clock, "A", lease_s=10)
    b = make_queue(migrated_db, clock, "B", lease_s=10)
    a.enqueue(None, "k", "b", {})
    (held,) = a.claim(1)
    clock.advance(9)
    assert b.claim(1) == []  # still leased
    clock.advance(2)
    (taken,) = b.claim(1)
    assert (taken.id, taken.attempts, taken.locked_by) == (held.id, 2, "B")


def test_a_stale_worker_cannot_settle_a_task_another_worker_reclaimed(migrated_db):
    clock = Clock(T0)
    a = make_queue(migrated_db, clock, "A", lease_s=10)
    b = make_queue(migrated_db, clock, "B", lease_s=10)
    a.enqueue(None, "k", "b", {})
    (stale,) = a.claim(1)
    clock.advance(11)
    (fresh,) = b.claim(1)
    assert a.complete(stale) is False
    assert a.fail_business(stale, "late") is False
    assert a.retry(stale, "late") is None
    assert a.extend([stale]) == []
    with pytest.raises(LeaseLost), migrated_db.session() as s:  # in-transaction completion
        a.enqueue(s, "k", "effect-of-the-stale-run", {})
        a.complete(stale, session=s)
    assert [t.biz_key for t in a.list()] == ["b"]  # the stale run's effect was rolled back
    assert row(migrated_db, fresh.id).locked_by == "B"
    assert b.complete(fresh) is True
    assert row(migrated_db, fresh.id).status == "done"


def test_a_task_whose_worker_died_on_its_last_attempt_goes_to_manual(migrated_db):
    clock = Clock(T0)
    a = make_queue(migrated_db, clock, "A", lease_s=10)
    b = make_queue(migrated_db, clock, "B", lease_s=10)
    seen = []
    b.on_manual = lambda task, error: seen.append((task.biz_key, error))
    a.enqueue(None, "k", "poison", {}, max_attempts=1)
    a.claim(1)
    clock.advance(11)
    assert b.claim(10) == []
    assert [k for k, _ in seen] == ["poison"] and "lease expired" in seen[0][1]
    assert b.backlog()["manual"] == 1


def test_renewed_lease_and_released_tasks(migrated_db):
    clock = Clock(T0)
    a = make_queue(migrated_db, clock, "A", lease_s=10)
    b = make_queue(migrated_db, clock, "B", lease_s=10)
    a.enqueue(None, "k", "1", {})
    a.enqueue(None, "k", "2", {})
    first, second = a.claim(2)
    clock.advance(8)
    assert [t.id for t in a.extend([first])] == [first.id]
    assert first.lease_until == clock() + timedelta(seconds=10)
    assert a.release([second]) == 1
    clock.advance(5)  # first's renewed lease still holds; second is free again
    (again,) = b.claim(10)
    assert (again.id, again.attempts) == (second.id, 1)


def test_manual_entry_retry_now_and_resolve(migrated_db):
    clock = Clock(T0)
    q = make_queue(migrated_db, clock)
    q.enqueue(None, "k", "failed", {})
    q.enqueue(None, "k", "manual", {}, max_attempts=1)
    one, two = q.claim(2)
    q.fail_business(one, "refused")
    assert q.retry(two, "timeout") == "manual"
    q.enqueue(None, "k", "busy", {})
    (busy,) = q.claim(1)
    for action in (q.resolve_manually, q.manual_retry_now):  # a worker holds it: refused
        with pytest.raises(WrongState):
            action(busy.id, "ops", "")
    retried = q.manual_retry_now(one.id, "alice", "customer called")
    assert (retried.status, retried.next_run_at) == ("pending", clock())
    assert "retry by alice: customer called" in retried.note
    resolved = q.resolve_manually(two.id, "bob", "refunded by bank transfer")
    assert resolved.status == "done" and "resolved by bob" in resolved.note
    with pytest.raises(WrongState):
        q.manual_retry_now(two.id, "bob", "")
    with pytest.raises(NotFound):
        q.resolve_manually(12345, "bob", "")
    (again,) = q.claim(5)
    assert again.id == one.id and again.attempts == 2
    assert q.backlog() == {"pending": 0, "running": 2, "done": 1, "failed": 0, "manual": 0}
    assert busy.id != again.id
    assert [t.biz_key for t in q.list(status="done")] == ["manual"]


# -- singleton leases ----------------------------------------------------------------------
def test_job_lease_has_one_holder_until_it_expires(migrated_db):
    clock = Clock(T0)
    leases = JobLeases(migrated_db, clock)
    assert leases.acquire("recon:A:2025-01-01", "w1", 60)
    assert not leases.acquire("recon:A:2025-01-01", "w2", 60)
    assert leases.acquire("recon:A:2025-01-01", "w1", 60)  # renew
    assert leases.holder_of("recon:A:2025-01-01") == ("w1", T0 + timedelta(seconds=60))
    clock.advance(61)
    assert leases.holder_of("recon:A:2025-01-01") is None
    assert leases.acquire("recon:A:2025-01-01", "w2", 60)  # taken over after expiry
    assert not leases.release("recon:A:2025-01-01", "w1")
    assert leases.release("recon:A:2025-01-01", "w2")
    with leases.singleton("trial", "w1", 30) as mine, leases.singleton("trial", "w2", 30) as other:
        assert (mine, other) == (True, False)
    assert leases.acquire("trial", "w2", 30)  # released after the block


def test_singleton_job_runs_once_across_concurrent_workers(migrated_db):
    leases = JobLeases(migrated_db)
    ran: list[int] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        job = singleton_job(
            leases, lambda: "recon:A:2025-01-01", f"w{i}", 60, lambda: ran.append(i), keep=True
        )
        barrier.wait()
        job()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ran) == 1
