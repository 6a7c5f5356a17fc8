"""Pay link end to end: payments/s through the HTTP API vs. pgbench on the same SQL.

The API (``runtime.cli serve``) and the sandbox channel (``runtime.cli sandbox``) run in
their own processes against a throw-away PostgreSQL schema. ``--clients`` threads, each
with its own HTTP connection, loop: create an instant trade, pay it with the channel
tool. The sandbox accepts and calls back a few ms later; the callback marks the trade
``paid``. Completion is counted afterwards with SQL (no polling during the load).

pgbench runs ``bench/sql/pay_one.sql`` (the SQL the pay core issues for one payment:
create + pay + callback, same transactions) against the same schema, half of its time
before the HTTP run and half after, with the HTTP stack stopped: the host's speed drifts
over minutes, and both sides then see the same drift. ``ratio`` = payments_per_s /
pgbench_tps. Prints one JSON object as
the last line of stdout, also written to ``bench/results/pay_e2e.json``.

Usage: ``python bench/pay_e2e.py [--seconds 15] [--clients 16]``; the database comes from
``PAYWATCH_BENCH_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from _stack import DEFAULT_URL, ORG, Pgbench, Stack, bench_schema, combine, log  # bench/_stack.py

RESULTS = Path(__file__).resolve().parent / "results" / "pay_e2e.json"
AMOUNT = 1000
MODES = ("simple", "extended", "prepared")
PROCS = ("api", "sandbox", "client", "postgres")


@dataclass
class Client:
    """One load-generating client: its latencies (ms) inside the window, and errors."""

    total: list[float] = field(default_factory=list)
    create: list[float] = field(default_factory=list)
    pay: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def num(value: float, digits: int = 1) -> float | None:
    """Rounded, or None for NaN (JSON has no NaN)."""
    return None if math.isnan(value) else round(value, digits)


def trade_body(no: str, user: str) -> dict[str, object]:
    return {
        "out_trade_no": no,
        "trade_type": "instant",
        "amount": AMOUNT,
        "currency": "CNY",
        "user_id": user,
        "order_type": "goods",
        "sub_type": "physical",
        "pay_org_no": ORG,
    }


class Api:
    """One client's keep-alive HTTP/1.1 connection to the API. Plain ``http.client``:
    the load generator shares the box's CPUs with what it measures, and httpx costs
    about four times the CPU per request."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=30.0
        )
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(self, path: str, body: dict[str, object]) -> tuple[int, bytes]:
        """POST ``body`` as JSON; (status, body). A failed exchange drops the connection
        (the next request opens a new one) and raises ``OSError`` or ``HTTPException``."""
        try:
            self.conn.request("POST", path, json.dumps(body), self.headers)
            answer = self.conn.getresponse()
            return answer.status, answer.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()


def pay_once(api: Api, no: str, user: str) -> tuple[float, float]:
    """Create and pay trade ``no`` for ``user``; (create ms, pay ms). Raises on a non-200
    answer."""
    t0 = time.perf_counter()
    status, body = api.post("/v1/trades", trade_body(no, user))
    t1 = time.perf_counter()
    if status != 200:
        raise RuntimeError(f"create {status}: {body[:200]!r}")
    status, body = api.post(
        f"/v1/trades/{no}/pay", {"tools": [{"tool": "channel", "amount": AMOUNT}]}
    )
    t2 = time.perf_counter()
    if status != 200 or json.loads(body)["status"] not in ("processing", "success"):
        raise RuntimeError(f"pay {status}: {body[:200]!r}")
    return (t1 - t0) * 1000, (t2 - t1) * 1000


def load(
    stack: Stack, clients: int, warmup: float, seconds: float
) -> tuple[list[Client], float, dict[str, float]]:
    """Run the clients; returns them, the window start (``time.time()``), and CPU use in
    the window: % of one core for api, sandbox and client, % of all cores for host."""
    run = secrets.token_hex(3)
    results = [Client() for _ in range(clients)]
    barrier, go = threading.Barrier(clients + 1), threading.Event()
    bounds = [0.0, 0.0]  # window start/end, perf_counter

    def client(i: int) -> None:
        res = results[i]
        url = stack.api_urls[i % len(stack.api_urls)]  # clients spread over the replicas
        user = f"bench-user-{i}"  # one payer per client: risk allows a user 600 pays/minute
        api = Api(url, stack.token)
        try:
            pay_once(api, f"e2e-{run}-{i}-warm", user)  # connection and first-request costs
            barrier.wait()
            go.wait()
            n = 0
            while (started := time.perf_counter()) < bounds[1]:
                n += 1
                try:
                    create_ms, pay_ms = pay_once(api, f"e2e-{run}-{i}-{n}", user)
                except (OSError, http.client.HTTPException, RuntimeError) as exc:
                    res.errors += started >= bounds[0]
                    res.first_error = res.first_error or f"{type(exc).__name__}: {exc}"
                    continue
                if started >= bounds[0]:
                    res.create.append(create_ms)
                    res.pay.append(pay_ms)
                    res.total.append(create_ms + pay_ms)
        finally:
            api.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    bounds[0] = time.perf_counter() + warmup
    bounds[1] = bounds[0] + seconds
    wall_start = time.time() + warmup
    go.set()
    time.sleep(warmup)
    before = stack.cpu()
    for t in threads:
        t.join()
    after, elapsed = stack.cpu(), time.perf_counter() - bounds[0]
    usage = {f"{k}_cpu_pct": (after[k] - before[k]) / elapsed * 100 for k in PROCS}
    busy, total = (after[k] - before[k] for k in ("host_busy", "host_total"))
    usage["host_cpu_pct"] = busy / total * 100 if total else float("nan")
    return results, wall_start, usage


def completions(url: str, start: float, seconds: float, grace: float) -> dict[str, float]:
    """What the database says about the window: paid trades, and pay → paid latency."""
    time.sleep(grace)  # let callbacks for the last payments land (they count only if in time)
    lo, hi = (datetime.fromtimestamp(t, UTC) for t in (start, start + seconds))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            paid = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pay_orders WHERE status = 'success'"
                    " AND finished_at >= :lo AND finished_at < :hi"
                ),
                {"lo": lo, "hi": hi},
            ).scalar_one()
            row = conn.execute(
                sa.text(
                    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),"
                    " percentile_cont(0.99) WITHIN GROUP (ORDER BY ms),"
                    " count(*) FILTER (WHERE ms IS NULL)"
                    " FROM (SELECT extract(epoch FROM finished_at - created_at) * 1000 AS ms"
                    "       FROM pay_orders WHERE created_at >= :lo AND created_at < :hi) AS o"
                ),
                {"lo": lo, "hi": hi},
            ).one()
    finally:
        engine.dispose()
    p50, p99 = (float("nan") if v is None else float(v) for v in row[:2])
    return {
        "paid": int(paid),
        "pay_to_paid_p50_ms": p50,
        "pay_to_paid_p99_ms": p99,
        "unsettled": int(row[2]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0, help="timed window")
    p.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    p.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before the window")
    p.add_argument("--grace", type=float, default=2.0, help="wait for callbacks after the load")
    p.add_argument("--latency-ms", type=float, default=1.0, help="sandbox answer latency")
    p.add_argument("--callback-delay-ms", type=float, default=5.0, help="sandbox callback delay")
    p.add_argument(
        "--replicas", type=int, default=1, help="API processes, each its own port and node id"
    )
    p.add_argument(
        "--pgbench-seconds",
        type=int,
        default=0,
        help="default: --seconds; half before the HTTP run, half after",
    )
    p.add_argument(
        "--pgbench-mode",
        default="prepared",
        choices=MODES,
        help="pgbench -M (psycopg prepares repeated statements)",
    )
    args = p.parse_args(argv)

    url = os.environ.get("PAYWATCH_BENCH_DATABASE_URL", DEFAULT_URL)
    load1 = os.getloadavg()[0]
    knobs = {"latency_ms": args.latency_ms, "callback_delay_ms": args.callback_delay_ms}
    pg_seconds = max(2, args.pgbench_seconds or round(args.seconds))
    halves = [(pg_seconds + 1) // 2, pg_seconds // 2]  # before and after the HTTP run
    with bench_schema(url) as (schema, scoped):
        reference = Pgbench(url, schema, args.clients, args.pgbench_mode)
        try:
            before = reference.run(halves[0])
            reference.vacuum()
            stack = Stack(scoped, replicas=args.replicas)
            try:
                stack.start(knobs)
                log(f"{args.clients} clients, {args.warmup:g}s warm-up, {args.seconds:g}s window")
                clients, start, usage = load(stack, args.clients, args.warmup, args.seconds)
                done = completions(scoped, start, args.seconds, args.grace)
            finally:
                stack.stop()
            log(f"http: {done['paid'] / args.seconds:.1f} payments/s; now pgbench again")
            reference.vacuum()
            after = reference.run(halves[1])
        finally:
            reference.close()
        ref = combine([before, after])

    lat = {k: [x for c in clients for x in getattr(c, k)] for k in ("total", "create", "pay")}
    errors = sum(c.errors for c in clients)
    if errors:
        log(f"{errors} errors; first: {next(c.first_error for c in clients if c.first_error)}")
    per_s = done["paid"] / args.seconds
    result: dict[str, object] = {
        "payments_per_s": num(per_s),
        "p50_ms": num(pct(lat["total"], 50)),
        "p99_ms": num(pct(lat["total"], 99)),
        "pgbench_tps": num(ref["tps"]),
        "pgbench_tps_before": num(before["tps"]),
        "pgbench_tps_after": num(after["tps"]),
        "ratio": num(per_s / ref["tps"], 3),
        **{f"{k}_p{q}_ms": num(pct(lat[k], q)) for k in ("create", "pay") for q in (50, 99)},
        "pay_to_paid_p50_ms": num(done["pay_to_paid_p50_ms"]),
        "pay_to_paid_p99_ms": num(done["pay_to_paid_p99_ms"]),
        "completed": done["paid"],
        "requested": len(lat["total"]),
        "unsettled": done["unsettled"],
        "errors": errors,
        "pgbench_latency_ms": num(ref["latency_ms"]),
        "pgbench_mode": args.pgbench_mode,
        "clients": args.clients,
        "api_replicas": args.replicas,
        "seconds": args.seconds,
        "sandbox_knobs": knobs,
        **{k: num(v) for k, v in usage.items()},
        **{
            f"{k}_cpu_ms_per_payment": num(usage[f"{k}_cpu_pct"] * 10 / per_s) if per_s else None
            for k in PROCS
        },
        "python_cpu_ms_per_payment": num(sum(usage[f"{k}_cpu_pct"] for k in PROCS[:3]) * 10 / per_s)
        if per_s
        else None,
        "pgbench_postgres_cpu_ms_per_payment": num(ref["postgres_cpu_ms"], 2),
        "pgbench_client_cpu_ms_per_payment": num(ref["pgbench_cpu_ms"], 2),
        "cpus": os.cpu_count(),
        "loadavg_1m_before": num(load1, 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
