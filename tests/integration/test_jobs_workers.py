"""Several worker *processes* on one PostgreSQL compensation table.

Each worker is a subprocess running :class:`paycore.jobs.Worker` with a test-only task
kind ``count``: in one transaction it inserts a row into ``job_hits`` (a plain table
without a unique key, so a second execution would show), posts the task's journal
entry through the real ``ledger_posting`` code, and records the task's completion.
Exactly once is then checkable in SQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from paycore import Database, IdGenerator
from paycore.context import BizContext
from paycore.jobs import TaskQueue, ledger_posting_payload
from paycore.ledger import credit, debit, merchant_payable, platform_transit, trial_balance

pytestmark = pytest.mark.postgres

WORKER = """
import signal, sys, threading, time
from sqlalchemy import text
from paycore import PayCore
from paycore.jobs import Handlers, TaskQueue, Worker

url, me, lease_s, sleep_s, batch = sys.argv[1:6]
core = PayCore(url)
queue = TaskQueue(core.db, core.ids, clock=core.clock, worker_id=me, lease_s=float(lease_s))
handlers = Handlers(core)

def count(task):
    def work(s):
        s.execute(text("INSERT INTO job_hits (task_id, worker) VALUES (:t, :w)"),
                  {"t": task.id, "w": me})
        handlers.post_entry(s, task.payload)
        time.sleep(float(sleep_s))  # a slow handler: the batch stays claimed for a while
        queue.complete(task, session=s)
    core.db.run(work)
    return True

handlers.register("count", count)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
worker = Worker(core, queue, handlers, batch=int(batch), stop_event=stop)
print("ready", flush=True)
worker.run_until_stopped(idle_sleep_s=0.05)
print("counts", worker.counts, flush=True)
core.close()
"""
CTX = BizContext("m1", "goods", "physical", "SANDBOX_A")


@pytest.fixture
def setup(pg_url, tmp_path):
    db = Database(pg_url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE job_hits (task_id BIGINT NOT NULL, worker TEXT NOT NULL,"
            " at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"
        )
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs: list[subprocess.Popen[str]] = []

    def spawn(name: str, *, lease_s: float = 30, sleep_s: float = 0, batch: int = 50):
        err = (tmp_path / f"{name}.err").open("w")
        p = subprocess.Popen(
            [sys.executable, str(script), pg_url, name, str(lease_s), str(sleep_s), str(batch)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=tmp_path,
        )
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", stderr(name)
        return p

    def stderr(name: str) -> str:
        return Path(tmp_path / f"{name}.err").read_text()[-3000:]

    try:
        yield db, spawn, stderr
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        db.dispose()


def enqueue(db: Database, n: int) -> None:
    queue = TaskQueue(db, IdGenerator(), worker_id="producer")
    with db.session() as s:
        for i in range(n):
            legs = [
                debit(merchant_payable(f"m{i % 10}", "CNY"), 100),
                credit(platform_transit("CNY"), 100),
            ]
            payload = ledger_posting_payload(
                biz_type="count", biz_key=str(i), ctx=CTX, currency="CNY", legs=legs
            )
            assert queue.enqueue(s, "count", str(i), payload)


def scalar(db: Database, sql: str):
    with db.engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop(p: subprocess.Popen[str]) -> str:
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0, out
    return out


def test_two_worker_processes_share_1000_tasks_each_exactly_once(setup):
    db, spawn, stderr = setup
    workers = [spawn("w1"), spawn("w2")]
    enqueue(db, 1000)
    done = "SELECT count(*) FROM compensation_tasks WHERE status = 'done'"
    wait_until(lambda: scalar(db, done) == 1000, 180, "1000 tasks done")
    outputs = [stop(p) for p in workers]
    assert all("'done'" in out for out in outputs), outputs
    assert scalar(db, "SELECT count(*) FROM job_hits") == 1000
    assert scalar(db, "SELECT count(DISTINCT task_id) FROM job_hits") == 1000
    with db.engine.connect() as conn:
        per_worker = dict(
            conn.execute(sa.text("SELECT worker, count(*) FROM job_hits GROUP BY 1")).all()
        )
    assert set(per_worker) == {"w1", "w2"} and sum(per_worker.values()) == 1000, per_worker
    assert scalar(db, "SELECT max(attempts) FROM compensation_tasks") == 1  # no lease expired
    assert scalar(db, "SELECT count(*) FROM journal_entries WHERE biz_type = 'count'") == 1000
    tb = trial_balance(db)
    assert tb.ok, tb
    assert "Traceback" not in stderr("w1") + stderr("w2")


def test_kill_9_mid_batch_loses_no_task(setup):
    db, spawn, stderr = setup
    victim = spawn("w1", lease_s=2, sleep_s=0.1, batch=20)
    enqueue(db, 60)
    wait_until(lambda: scalar(db, "SELECT count(*) FROM job_hits") >= 3, 60, "w1 mid-batch")
    os.kill(victim.pid, signal.SIGKILL)  # no cleanup of any kind: its leases just run out
    victim.wait(10)
    with db.engine.connect() as conn:
        held = dict(
            conn.execute(
                sa.text(
                    "SELECT id, lease_until FROM compensation_tasks"
                    " WHERE status = 'running' AND locked_by = 'w1'"
                )
            ).all()
        )
    assert held, "the victim held claimed tasks when it died"
    rescuer = spawn("w2", lease_s=2)
    done = "SELECT count(*) FROM compensation_tasks WHERE status = 'done'"
    wait_until(lambda: scalar(db, done) == 60, 120, "60 tasks done")
    stop(rescuer)
    assert scalar(db, "SELECT count(*) FROM job_hits") == 60  # the killed run left nothing
    assert scalar(db, "SELECT count(DISTINCT task_id) FROM job_hits") == 60
    assert scalar(db, "SELECT count(*) FROM journal_entries WHERE biz_type = 'count'") == 60
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT t.id, t.attempts, h.worker, h.at FROM compensation_tasks t"
                " JOIN job_hits h ON h.task_id = t.id"
            )
        ).all()
    for task_id, attempts, worker, at in rows:
        if task_id in held:  # taken over by w2, and only after the victim's lease ended
            assert (attempts, worker) == (2, "w2") and at >= held[task_id], (task_id, at)
        else:
            assert attempts == 1
    tb = trial_balance(db)
    assert tb.ok, tb
    assert "Traceback" not in stderr("w2")
