"""Guard bench: what the stability layer costs and how fast it reacts.

1. In-process overhead of ``Guard.call`` on a weak dependency with an in-memory limit rule
   and a closed breaker, against a bare call and against pybreaker + ``limits`` doing the
   same job (p50 of interleaved timed batches); plus a breakdown of the guard's time.
2. Redis token-bucket decisions/s from Python (``RedisLimitStore.acquire``, N threads in
   one process, and several processes) against ``redis-benchmark`` EVALSHA-ing the same
   Lua script with the same number of clients.
3. Switch flip-to-effect latency across two processes: a child built with
   ``build_stability`` applies ``degrade coupon`` flips the parent commits, with Redis
   pub/sub (headline) and with polling only.

Prints one JSON object as the last line of stdout (also ``bench/results/guard.json``).
Usage: ``python bench/guard.py [--batches 200] [--calls 2000] [--redis-seconds 5] ...``;
the database comes from ``PAYWATCH_BENCH_DATABASE_URL``, Redis from
``PAYWATCH_BENCH_REDIS_URL`` (default db 14; the bench deletes its keys).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import _guard_flip  # bench/_guard_*.py
import _guard_overhead
import _guard_redis

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
RESULTS = Path(__file__).resolve().parent / "results" / "guard.json"
TARGET_ADDED_US, TARGET_RATIO, TARGET_FLIP_P99_MS = 5.0, 0.5, 1000.0


def log(msg: str) -> None:
    print(f"[guard] {msg}", file=sys.stderr, flush=True)


def run_overhead(args: argparse.Namespace) -> dict[str, Any]:
    log(f"overhead: {args.batches} batches x {args.calls} calls, bare / guard / libs")
    out = _guard_overhead.overhead(args.batches, args.calls)
    log(
        f"bare {out['bare_us']} µs, guard {out['guard_us']} µs (+{out['guard_added_us']}), "
        f"pybreaker+limits {out['libs_baseline_us']} µs"
    )
    parts = _guard_overhead.components()
    log("guard steps, p50 µs per call (bare loop subtracted):")
    for name, us in parts.items():
        log(f"  {name:48s} {us:8.3f}")
    prof = _guard_overhead.profile()
    log("cProfile of Guard.call, per guard call: calls, own µs, cumulative µs:")
    for where, n, own, cum in prof:
        log(f"  {where:48s} {n:5.2f} {own:8.3f} {cum:8.3f}")
    out["guard_steps_us"] = parts
    out["guard_profile_top"] = [list(row) for row in prof[:8]]
    return out


def run_flips(args: argparse.Namespace) -> dict[str, Any]:
    url = os.environ.get("PAYWATCH_BENCH_DATABASE_URL", DEFAULT_URL)
    out: dict[str, Any] = {}
    with _guard_flip.bench_schema(url) as scoped:
        for mode, redis_url in (("pubsub", args.redis_url), ("poll", None)):
            log(f"flips ({mode}): {args.flips} flips ~{args.spacing_ms} ms apart")
            r = _guard_flip.measure(
                scoped, redis_url, args.flips, args.spacing_ms / 1000.0, poll_s=args.poll_s
            )
            log(f"flips ({mode}): {r}")
            key = "flip" if mode == "pubsub" else "flip_poll"
            out.update({f"{key}_{name}": value for name, value in r.items()})
    out["flip_poll_s"] = args.poll_s
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=200, help="timed batches per variant")
    p.add_argument("--calls", type=int, default=2000, help="calls per batch")
    p.add_argument("--redis-url", default=os.environ.get("PAYWATCH_BENCH_REDIS_URL", DEFAULT_REDIS))
    p.add_argument("--redis-seconds", type=float, default=5.0, help="window of each Python run")
    p.add_argument("--threads", type=int, default=16, help="Python threads and bench clients")
    cpus = os.cpu_count() or 1
    p.add_argument(
        "--procs",
        type=int,
        default=cpus,
        help="processes of the multi-process run (default: one per CPU)",
    )
    p.add_argument(
        "--proc-threads",
        type=int,
        default=None,
        help="threads per process (default: --threads spread over the processes)",
    )
    p.add_argument("--requests", type=int, default=200_000, help="redis-benchmark -n")
    p.add_argument("--flips", type=int, default=40, help="flips per propagation mode")
    p.add_argument("--spacing-ms", type=float, default=150.0, help="pause after each flip")
    p.add_argument("--poll-s", type=float, default=0.25, help="the watcher's poll interval")
    args = p.parse_args(argv)
    if args.proc_threads is None:  # the same number of clients as the other runs
        args.proc_threads = max(1, args.threads // args.procs)

    load = os.getloadavg()[0]
    result: dict[str, Any] = run_overhead(args)
    log(f"redis: {args.redis_url}")
    result.update(
        _guard_redis.measure(
            args.redis_url,
            secrets.token_hex(4),
            threads=args.threads,
            procs=args.procs,
            proc_threads=args.proc_threads,
            seconds=args.redis_seconds,
            requests=args.requests,
        )
    )
    result.update(run_flips(args))
    result.update(
        {
            "meets_guard_target": result["guard_added_us"] <= TARGET_ADDED_US,
            "meets_redis_target": result["ratio_redis"] >= TARGET_RATIO,
            "meets_flip_target": result["flip_p99_ms"] < TARGET_FLIP_P99_MS,
            "loadavg_1m_before": round(load, 2),
            "cpus": os.cpu_count(),
        }
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
