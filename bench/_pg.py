"""Database-level half of the hot-account bench: the same postings, sent by pgbench.

The scripts in ``bench/sql/hot_<mode>.sql`` issue, statement for statement, the SQL that
``Ledger.post`` (or the bench's naive row-lock path) issues for one posting. The accounts
they post to are created here with the app's own :class:`AccountDirectory`, which takes
its ids from :class:`CountingIds`, so that consecutive accounts get consecutive ids and a
script can find client *c*'s accounts as ``base + :client_id`` (no lookup round trip).
Entry, leg and pending-posting ids come from the bench-only sequence ``bench_ids``.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from paycore.db.engine import Database
from paycore.ids import IdGenerator
from paycore.ledger.accounts import AccountDirectory, AccountRef, HotPolicy
from paycore.ledger.hot import drain_pending, pending_count, summarize_pending
from paycore.ledger.subjects import MERCHANT_PAYABLE, PLATFORM_TRANSIT
from paycore.ledger.trial import trial_balance

SQL_DIR = Path(__file__).resolve().parent / "sql"
MODES = ("cold", "row_lock", "sub_accounts", "buffered")
THREADS = 2  # pgbench -j
FIRST_ACCOUNT_ID = 1
FIRST_POSTING_ID = 1_000_000  # bench_ids starts above every account id
TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)$", re.M)
FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
DONE = re.compile(r"^number of transactions actually processed: (\d+)", re.M)


def log(msg: str) -> None:
    print(f"[hot_account] {msg}", file=sys.stderr, flush=True)


def check_trial(db: Database, name: str) -> None:
    tb = trial_balance(db)
    if not tb.ok:
        raise RuntimeError(f"{name}: trial balance failed: {tb}")
    log(f"{name}: trial balance ok (pending {tb.pending_postings})")


@contextmanager
def summarizing(db: Database, ids: IdGenerator) -> Iterator[list[int]]:
    """Run ``summarize_pending`` every ~200 ms in the background, as production would."""
    stop = threading.Event()
    folded = [0]

    def summarizer() -> None:
        while not stop.wait(0.2):
            folded[0] += summarize_pending(db, ids)

    bg = threading.Thread(target=summarizer, daemon=True)
    bg.start()
    try:
        yield folded
    finally:
        stop.set()
        bg.join()


def drain_and_check(db: Database, ids: IdGenerator, name: str) -> None:
    check_trial(db, f"{name} (before drain)")
    log(f"{name}: drained {drain_pending(db, ids)} after run")
    if pending_count(db):
        raise RuntimeError(f"{name}: pending postings left after drain")
    check_trial(db, name)


class CountingIds(IdGenerator):
    """Consecutive ids from ``start``, so per-client accounts are ``base + client``."""

    def __init__(self, start: int) -> None:
        super().__init__(node_id=0)
        self._counter = itertools.count(start)

    def next_id(self) -> int:
        with self._lock:
            return next(self._counter)


def payer(i: int) -> AccountRef:
    return AccountRef("merchant", f"pg-w{i}", MERCHANT_PAYABLE, "CNY")


def transit(owner_id: str) -> AccountRef:
    return AccountRef("platform", owner_id, PLATFORM_TRANSIT, "CNY")


def setup(db: Database, clients: int, subs: int, amount: int) -> dict[str, int]:
    """Create the bench sequence and every account; return the pgbench ``-D`` variables.

    Payers are created first, so their ids are below every target's: the scripts update
    the payer first, which is the account id order ``Ledger.post`` uses.
    """
    code = PLATFORM_TRANSIT.code
    policy = HotPolicy(
        rules={
            ("platform", "pg-hot-sub", code): ("sub_accounts", subs),
            ("platform", "pg-hot-buf", code): ("buffered", 0),
        }
    )
    accounts = AccountDirectory(CountingIds(FIRST_ACCOUNT_ID), policy)
    now = datetime.now(UTC)
    with db.session() as s:
        s.execute(sa.text(f"CREATE SEQUENCE bench_ids START {FIRST_POSTING_ID} INCREMENT 4"))
        payers = [accounts.resolve(s, payer(i), now).id for i in range(clients)]
        colds = [accounts.resolve(s, transit(f"pg-cold-{i}"), now).id for i in range(clients)]
        rowlock = accounts.resolve(s, transit("pg-hot-rowlock"), now)
        sub = accounts.resolve(s, transit("pg-hot-sub"), now)
        buf = accounts.resolve(s, transit("pg-hot-buf"), now)
    if payers != list(range(payers[0], payers[0] + clients)):
        raise RuntimeError(f"payer ids not consecutive: {payers}")
    if colds != list(range(colds[0], colds[0] + clients)):
        raise RuntimeError(f"cold account ids not consecutive: {colds}")
    if sub.sub_ids != tuple(range(sub.sub_ids[0], sub.sub_ids[0] + subs)):
        raise RuntimeError(f"sub-account ids not consecutive: {sub.sub_ids}")
    if not payers[-1] < min(colds[0], rowlock.id, sub.sub_ids[0], buf.id):
        raise RuntimeError("payer ids must sort below every target id")
    if buf.id >= FIRST_POSTING_ID:
        raise RuntimeError("account ids reach into the bench_ids range")
    return {
        "amount": amount,
        # delta = leg.amount * subject sign, as Ledger.post computes it
        "payer_delta": amount * MERCHANT_PAYABLE.sign,  # debit leg (+amount)
        "target_delta": -amount * PLATFORM_TRANSIT.sign,  # credit leg (-amount)
        "payer0": payers[0],
        "cold0": colds[0],
        "rowlock_hot": rowlock.id,
        "sub_lo": sub.sub_ids[0],
        "sub_hi": sub.sub_ids[-1],
        "buf_hot": buf.id,
    }


def vacuum(db: Database) -> None:
    """Start every scenario from the same state: no dead row versions, fresh statistics."""
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("accounts", "journal_entries", "journal_legs", "pending_postings"):
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")


def pgbench(
    mode: str, variables: dict[str, int], url: str, schema: str, clients: int, seconds: int
) -> tuple[float, int]:
    """Run ``bench/sql/hot_<mode>.sql``; return (tps without connection time, postings)."""
    exe = shutil.which("pgbench") or "/usr/bin/pgbench"
    if not Path(exe).exists():
        raise RuntimeError("pgbench not found (install postgresql-client)")
    u = sa.make_url(url)
    env = {**os.environ, "PGOPTIONS": f"-csearch_path={schema}"}
    for key, value in (
        ("PGHOST", u.host),
        ("PGPORT", u.port),
        ("PGUSER", u.username),
        ("PGPASSWORD", u.password),
        ("PGDATABASE", u.database),
    ):
        if value is not None:
            env[key] = str(value)
    cmd = [exe, "-c", str(clients), "-j", str(min(THREADS, clients))]
    cmd += ["-T", str(seconds), "-n", "-f", str(SQL_DIR / f"hot_{mode}.sql")]
    for name, value in variables.items():
        cmd += ["-D", f"{name}={value}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    out = proc.stdout
    tps, failed, done = TPS.search(out), FAILED.search(out), DONE.search(out)
    if proc.returncode != 0 or not tps or not done or (failed and int(failed[1])):
        raise RuntimeError(
            f"pgbench {mode} failed (exit {proc.returncode}):\n{out}\n{proc.stderr[-4000:]}"
        )
    return float(tps[1]), int(done[1])


def run_database(
    db: Database,
    ids: IdGenerator,
    url: str,
    schema: str,
    *,
    clients: int,
    seconds: int,
    subs: int,
    amount: int,
) -> dict[str, float]:
    """Database level: pgbench clients sending the SQL of one posting, no Python client."""
    variables = setup(db, clients, subs, amount)
    log(f"pgbench variables: {variables}")
    out: dict[str, float] = {}
    for mode in MODES:
        vacuum(db)
        if mode == "buffered":
            with summarizing(db, ids) as folded:
                tps, done = pgbench(mode, variables, url, schema, clients, seconds)
            log(f"db {mode}: {tps:.1f}/s, {done} postings (summarizer folded {folded[0]})")
            drain_and_check(db, ids, f"db {mode}")
        else:
            tps, done = pgbench(mode, variables, url, schema, clients, seconds)
            log(f"db {mode}: {tps:.1f}/s, {done} postings")
            check_trial(db, f"db {mode}")
        out[mode] = tps
    return out
