"""Bench helpers for the pay core's jobs: notification delivery and T+1 reconciliation.

* :func:`measure_notifications`: N notifications (default 2,000) queued in a fresh
  PostgreSQL schema are delivered by :class:`paycore.notify.NotificationDelivery` (its
  production defaults: batches of 50, 8 concurrent POSTs, signed) to a receiver on
  127.0.0.1 that runs in its own process (uvicorn, a bare ASGI app answering 200).
  Returns notifications delivered per second (queue to ``delivered``, wall clock).
* :func:`measure_recon_100k`: 100,000 of our channel pay items (with their trades and
  pay orders, loaded by COPY) against a 100,000-line statement that is streamed to
  :func:`paycore.recon.reconcile_day`, with 100 lines of each seeded discrepancy
  (amount off, line missing, phantom line). Returns (seconds, peak MB): the time of
  the first run, and the peak of Python allocations (``tracemalloc``) of a re-run of
  the same day (which does the same matching work and records nothing new).

Each uses a throw-away schema ``bench_jobs_<random>`` dropped on exit. Database URL:
``PAYWATCH_BENCH_DATABASE_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
Standalone: ``python bench/_jobs_nr.py`` prints one JSON object as the last line.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from paycore import Database, PayCore
from paycore.channels.client import StatementLine
from paycore.db.engine import create_engine_from_url
from paycore.db.schema import Notification
from paycore.notify import NotificationDelivery
from paycore.recon import reconcile_day
from runtime.migrate import upgrade_database

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ORG = "SANDBOX_A"
DAY = date(2030, 1, 15)
SEEDED_EVERY = 1000  # one line in 1,000 of each discrepancy: 100 each at 100,000
RECEIVER = r"""
import sys, uvicorn
hits = 0
async def app(scope, receive, send):
    global hits
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    if scope["method"] == "POST":
        hits += 1
    body = str(hits).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False)
"""


def log(msg: str) -> None:
    print(f"[jobs] {msg}", file=sys.stderr, flush=True)


@contextmanager
def bench_db(pool_size: int = 12) -> Iterator[Database]:
    """A migrated :class:`Database` in a fresh schema, dropped afterwards."""
    url = os.environ.get("PAYWATCH_BENCH_DATABASE_URL", DEFAULT_URL)
    schema = f"bench_jobs_{secrets.token_hex(4)}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in url else "?"
    engine = create_engine_from_url(
        f"{url}{sep}options=-csearch_path%3D{schema}", pool_size=pool_size, max_overflow=4
    )
    try:
        upgrade_database(engine)
        yield Database(engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@contextmanager
def receiver() -> Iterator[str]:
    """The receiver process; yields its base URL (GET returns the POSTs it has had)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the receiver did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def measure_notifications(n: int = 2000, *, batch: int = 50, concurrency: int = 8) -> float:
    """Notifications delivered per second to a local receiver (see the module docstring)."""
    with bench_db() as db, receiver() as url:
        now = datetime.now(UTC)
        payload = json.dumps({"out_trade_no": "bench", "amount": 1000, "currency": "CNY"})
        common = {
            "merchant_id": "MBENCH",
            "event_type": "trade.paid",
            "payload": payload,
            "url": f"{url}/hook",
            "status": "pending",
            "next_attempt_at": now,
        }
        rows = [
            {"id": i + 1, "event_id": f"evt_bench_{i}", "created_at": now + timedelta(0, 0, i)}
            | common
            for i in range(n)
        ]
        with db.session() as s:
            s.execute(sa.insert(Notification), rows)
        delivery = NotificationDelivery(
            db, secret="bench-notify-key", batch=batch, concurrency=concurrency
        )
        try:
            start = time.perf_counter()
            while delivery.deliver_due():
                pass
            elapsed = time.perf_counter() - start
        finally:
            delivery.close()
        with db.session() as s:
            done = s.execute(
                sa.select(sa.func.count())
                .select_from(Notification)
                .where(Notification.status == "delivered")
            ).scalar_one()
        hits = int(httpx.get(url, timeout=5).text)
    if done != n or hits != n:
        raise RuntimeError(f"delivered {done} of {n}, receiver saw {hits}")
    rate = n / elapsed
    log(f"notifications: {n} in {elapsed:.2f}s = {rate:.0f}/s (batch {batch}, x{concurrency})")
    return rate


TRADE_COLS = (
    "id, merchant_id, out_trade_no, trade_type, status, amount, currency, paid_amount, "
    "refunded_amount, user_id, order_type, sub_type, pay_org_no, root_trade_id, request_hash, "
    "subject, created_at, updated_at"
)
ORDER_COLS = (
    "id, trade_id, merchant_id, out_pay_no, pay_type, status, amount, currency, user_id, "
    "order_type, sub_type, pay_org_no, request_hash, created_at, finished_at"
)
ITEM_COLS = (
    "id, pay_order_id, merchant_id, seq, tool, status, amount, refunded_amount, pay_org_no, "
    "channel_txn_no, settled_amount, created_at, finished_at"
)


def _copy(cur: Any, table: str, cols: str, rows: Iterable[tuple[Any, ...]]) -> None:
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def _seed_ours(db: Database, n: int) -> list[tuple[int, int, datetime]]:
    """n settled channel pays of ORG on DAY, by COPY; returns (txn no, amount, settled at)."""
    core = PayCore(db)
    mid = core.merchants.onboard("bench", products=[("goods", "physical")], pay_orgs=[ORG]).merchant
    start = datetime.combine(DAY, datetime.min.time(), tzinfo=UTC) + timedelta(minutes=10)
    step = (timedelta(hours=23, minutes=40)) / n
    ours = [(10_000_000 + i, 100 + i % 9_000, start + step * i) for i in range(n)]
    m = mid.merchant_id
    trades = (
        (
            i,
            m,
            f"b{i}",
            "instant",
            "paid",
            a,
            "CNY",
            a,
            0,
            "u1",
            "goods",
            "physical",
            ORG,
            i,
            "h",
            "",
            at,
            at,
        )
        for i, a, at in ours
    )
    orders = (
        (i, i, m, f"p{i}", "pay", "success", a, "CNY", "u1", "goods", "physical", ORG, "h", at, at)
        for i, a, at in ours
    )
    items = ((i, i, m, 0, "channel", "success", a, 0, ORG, str(i), a, at, at) for i, a, at in ours)
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        _copy(cur, "trades", TRADE_COLS, trades)
        _copy(cur, "pay_orders", ORDER_COLS, orders)
        _copy(cur, "pay_items", ITEM_COLS, items)
        raw.commit()
    finally:
        raw.close()
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    return ours


def _statement(ours: list[tuple[int, int, datetime]]) -> Iterator[StatementLine]:
    """The channel's file for DAY, one line at a time, with seeded discrepancies."""
    for n, (txn, amount, at) in enumerate(ours):
        kind = n % SEEDED_EVERY
        if kind == 1:
            continue  # missing from the statement
        line_amount = amount + 1 if kind == 0 else amount
        yield StatementLine(str(txn), f"REF{txn}", "pay", line_amount, "CNY", "success", at)
        if kind == 2:
            yield StatementLine(f"EXTRA{txn}", f"REFX{txn}", "pay", 5, "CNY", "success", at)


def measure_recon_100k(n: int = 100_000) -> tuple[float, float]:
    """(seconds, peak MB) of reconciling an n-line statement against n of our items."""
    with bench_db() as db:
        t0 = time.perf_counter()
        ours = _seed_ours(db, n)
        log(f"recon: seeded {n} items in {time.perf_counter() - t0:.1f}s")
        core = PayCore(db)
        expect = {
            k: n // SEEDED_EVERY for k in ("amount_mismatch", "missing_channel", "missing_ours")
        }

        def source(org: str, day: date) -> Iterator[StatementLine]:
            return _statement(ours)

        start = time.perf_counter()
        first = reconcile_day(core, source, ORG, DAY)
        elapsed = time.perf_counter() - start
        if first.counts != expect or first.added != sum(expect.values()):
            raise RuntimeError(f"unexpected differences: {first.counts} (added {first.added})")
        tracemalloc.start()
        again = reconcile_day(core, source, ORG, DAY)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        if again.added or again.counts != expect:
            raise RuntimeError(f"the re-run was not idempotent: {again.as_dict()}")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log(
        f"recon: {n} lines in {elapsed:.2f}s, peak {peak:.1f} MB traced "
        f"(process max RSS {maxrss:.0f} MB incl. seeding)"
    )
    return elapsed, peak


def main() -> int:
    rate = measure_notifications()
    seconds, peak = measure_recon_100k()
    result = {
        "notifications_per_s": round(rate, 1),
        "recon_100k_s": round(seconds, 2),
        "recon_100k_peak_mb": round(peak, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
