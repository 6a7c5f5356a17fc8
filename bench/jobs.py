"""Jobs bench: compensation tasks per second with one and two worker processes.

In a fresh, throw-away PostgreSQL schema: enqueue ``--tasks`` ``ledger_posting`` tasks
(each posts one two-leg journal entry and records its completion in the same
transaction), then time real worker processes (this script with ``--child``, running
:class:`paycore.jobs.Worker`) until every task is done: first one worker, then two on a
fresh set of tasks. Checks afterwards: every task done exactly once (attempts = 1, one
journal entry per task), trial balance ok.

Notifications and the 100k reconciliation are measured by ``bench/_jobs_nr.py`` (owned
by the notifications/reconciliation work) when it exists; otherwise their keys are null.

Prints one JSON object as the last line of stdout (also ``bench/results/jobs.json``):
``compensation_per_s_1w``, ``compensation_per_s_2w``, ``notifications_per_s``,
``recon_100k_s``, ``recon_100k_peak_mb`` (plus the run's parameters and the 2w/1w ratio).

Usage: ``python bench/jobs.py [--tasks 3000] [--batch 50]``; the database comes from
``PAYWATCH_BENCH_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RESULTS = Path(__file__).resolve().parent / "results" / "jobs.json"


def log(msg: str) -> None:
    print(f"[jobs] {msg}", file=sys.stderr, flush=True)


# -- a worker process ----------------------------------------------------------------------
def child(url: str, name: str, batch: int) -> int:
    """One worker process: run the compensation loop until SIGTERM."""
    from paycore import PayCore
    from paycore.jobs import Handlers, TaskQueue, Worker

    core = PayCore(url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    queue = TaskQueue(core.db, core.ids, clock=core.clock, worker_id=name)
    worker = Worker(core, queue, Handlers(core), batch=batch, stop_event=stop)
    print("ready", flush=True)
    worker.run_until_stopped(idle_sleep_s=0.02)
    print(json.dumps(worker.counts), flush=True)
    core.close()
    return 0


def spawn(url: str, name: str, batch: int) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, __file__, "--child", url, name, str(batch)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError(f"worker {name} did not start")
    return p


def stop(p: subprocess.Popen[str]) -> dict[str, int]:
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"worker exited with {p.returncode}")
    return dict(json.loads(out.strip().splitlines()[-1]))


# -- the measurement -----------------------------------------------------------------------
def enqueue(db: Any, phase: str, n: int) -> None:
    from paycore import IdGenerator
    from paycore.context import BizContext
    from paycore.jobs import LEDGER_POSTING, TaskQueue, ledger_posting_payload
    from paycore.ledger import credit, debit, merchant_payable, platform_transit

    ctx = BizContext("bench", "bench", "bench", "bench")
    queue = TaskQueue(db, IdGenerator(), worker_id="producer")
    with db.session() as s:
        for i in range(n):
            legs = [
                debit(merchant_payable(f"bench-m{i % 64}", "CNY"), 100),
                credit(platform_transit("CNY"), 100),
            ]
            key = f"{phase}-{i}"
            payload = ledger_posting_payload(
                biz_type="bench", biz_key=key, ctx=ctx, currency="CNY", legs=legs
            )
            queue.enqueue(s, LEDGER_POSTING, key, payload)


def done_count(db: Any) -> int:
    with db.engine.connect() as conn:
        sql = "SELECT count(*) FROM compensation_tasks WHERE status = 'done'"
        return int(conn.execute(sa.text(sql)).scalar_one())


def measure(db: Any, url: str, phase: str, workers: int, n: int, batch: int) -> float:
    """Tasks per second of ``workers`` processes working off ``n`` fresh tasks."""
    before = done_count(db)
    procs = [spawn(url, f"{phase}-w{i + 1}", batch) for i in range(workers)]
    try:
        enqueue(db, phase, n)  # committed at once: from here on the workers race
        start = time.perf_counter()
        while done_count(db) < before + n:
            if time.perf_counter() - start > 600:
                raise RuntimeError(f"{phase}: tasks not done after 600 s")
            time.sleep(0.05)
        seconds = time.perf_counter() - start
    finally:
        counts = [stop(p) for p in procs]
    rate = n / seconds
    log(f"{phase}: {n} tasks in {seconds:.2f}s with {workers} worker(s): {rate:.1f}/s {counts}")
    return rate


def check(db: Any, total: int) -> None:
    from paycore.ledger import trial_balance

    with db.engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT count(*), max(attempts), count(*) FILTER (WHERE status <> 'done')"
                " FROM compensation_tasks"
            )
        ).one()
        sql = "SELECT count(*) FROM journal_entries WHERE biz_type = 'bench'"
        entries = conn.execute(sa.text(sql)).scalar_one()
    if tuple(row) != (total, 1, 0) or entries != total:
        raise RuntimeError(
            f"not exactly once: tasks/max attempts/not done {tuple(row)}, "
            f"entries {entries}, expected {total}"
        )
    tb = trial_balance(db)
    if not tb.ok:
        raise RuntimeError(f"trial balance failed: {tb}")
    log(f"exactly once: {total} tasks, {entries} entries, attempts 1; trial balance ok")


def load_nr() -> Any:
    """``bench/_jobs_nr.py`` (notifications and recon measurements), or None if absent."""
    for name in ("_jobs_nr", "bench._jobs_nr"):  # run as a script, or from the repo root
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    log("bench/_jobs_nr.py not found: notifications and recon are null")
    return None


def measure_nr() -> dict[str, float | None]:
    out: dict[str, float | None] = {
        "notifications_per_s": None,
        "recon_100k_s": None,
        "recon_100k_peak_mb": None,
    }
    nr = load_nr()
    notifications = getattr(nr, "measure_notifications", None)
    recon = getattr(nr, "measure_recon_100k", None)
    try:
        if notifications is not None:
            out["notifications_per_s"] = round(float(notifications()), 1)
    except Exception as e:  # noqa: BLE001 - report null, keep the rest of the bench
        log(f"measure_notifications failed: {type(e).__name__}: {e}")
    try:
        if recon is not None:
            seconds, peak_mb = recon()
            out["recon_100k_s"] = round(float(seconds), 2)
            out["recon_100k_peak_mb"] = round(float(peak_mb), 1)
    except Exception as e:  # noqa: BLE001
        log(f"measure_recon_100k failed: {type(e).__name__}: {e}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--child", nargs=3, metavar=("URL", "NAME", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        url, name, batch = args.child
        return child(url, name, int(batch))

    from paycore import Database
    from runtime.migrate import upgrade_database

    load_at_start = round(os.getloadavg()[0], 2)  # other load on the box skews the ratio
    base = os.environ.get("PAYWATCH_BENCH_DATABASE_URL", DEFAULT_URL)
    schema = f"bench_jobs_{secrets.token_hex(4)}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    log(f"schema {schema}")
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    db = Database(url)
    try:
        upgrade_database(db.engine)
        one = measure(db, url, "w1", 1, args.tasks, args.batch)
        two = measure(db, url, "w2", 2, args.tasks, args.batch)
        check(db, 2 * args.tasks)
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()
        log(f"dropped schema {schema}")
    result: dict[str, Any] = {
        "compensation_per_s_1w": round(one, 1),
        "compensation_per_s_2w": round(two, 1),
        **measure_nr(),
        "scaling_2w_vs_1w": round(two / one, 3),
        "tasks": args.tasks,
        "cpus": os.cpu_count(),
        "load_avg_1m_at_start": load_at_start,
        "batch": args.batch,
        "task": "ledger_posting (one 2-leg entry + in-transaction completion)",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
