"""Guard bench, part 2: Redis token-bucket decisions per second from Python
(``RedisLimitStore.acquire``), against ``redis-benchmark`` running the same Lua script.
"""

from __future__ import annotations

import multiprocessing as mp
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

import redis

from stability.limits_redis import TOKEN_BUCKET_LUA, RedisLimitStore

RATE = BURST = 1_000_000.0  # never refuses: every decision is a full script run
KEYS_PER_THREAD = 1000
RPS = re.compile(r"([0-9.]+) requests per second")


def log(msg: str) -> None:
    print(f"[guard] {msg}", file=sys.stderr, flush=True)


def _thread(
    store: RedisLimitStore, tag: str, start_at: float, stop_at: float, out: list[int]
) -> None:
    """Decide on this thread's own keys from ``start_at`` to ``stop_at``; count them."""
    keys = [f"{tag}:{k}" for k in range(KEYS_PER_THREAD)]
    acquire, now = store.acquire, time.time
    n = 0
    while now() < start_at:
        acquire(keys[n % KEYS_PER_THREAD], RATE, BURST)  # warm the pool's connection
        n += 1
    n = 0
    while now() < stop_at:
        acquire(keys[n % KEYS_PER_THREAD], RATE, BURST)
        n += 1
    out.append(n)


def run_threads(
    url: str, namespace: str, threads: int, start_at: float, stop_at: float, tag: str = "p0"
) -> tuple[int, float]:
    """Decisions made by ``threads`` threads sharing one store (one pool), as a process
    of the pay link would, and the CPU seconds this process used in the window."""
    store = RedisLimitStore(url, namespace=namespace)
    counts: list[int] = []
    workers = [
        threading.Thread(target=_thread, args=(store, f"{tag}t{i}", start_at, stop_at, counts))
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu = time.process_time()
    time.sleep(max(0.0, stop_at - time.time()))
    cpu = time.process_time() - cpu
    for w in workers:
        w.join()
    store.close()
    if len(counts) != threads:
        raise RuntimeError(f"{threads - len(counts)} decision threads failed")
    return sum(counts), cpu


def _proc(
    url: str, namespace: str, threads: int, seconds: float, tag: str, barrier: Any, q: Any
) -> None:
    try:
        barrier.wait(timeout=120)  # every process spawned and imported: start together
        start_at = time.time() + 0.3
        q.put(run_threads(url, namespace, threads, start_at, start_at + seconds, tag)[0])
    except Exception as exc:  # noqa: BLE001 - report it to the parent
        q.put(repr(exc))


def run_processes(url: str, namespace: str, procs: int, threads: int, seconds: float) -> float:
    """Decisions/s of ``procs`` processes × ``threads`` threads (no shared GIL)."""
    ctx = mp.get_context("spawn")
    q, barrier = ctx.Queue(), ctx.Barrier(procs + 1)
    ps = [
        ctx.Process(target=_proc, args=(url, namespace, threads, seconds, f"p{i}", barrier, q))
        for i in range(procs)
    ]
    for p in ps:
        p.start()
    barrier.wait(timeout=120)
    results = [q.get(timeout=seconds + 60) for _ in ps]
    for p in ps:
        p.join(10)
    bad = [r for r in results if not isinstance(r, int)]
    if bad:
        raise RuntimeError(f"decision process failed: {bad[0]}")
    return sum(results) / seconds


def decisions_per_s(url: str, namespace: str, threads: int, seconds: float) -> tuple[float, float]:
    """Decisions/s of one process and its CPU µs per decision (all threads)."""
    start_at = time.time() + 0.5
    n, cpu = run_threads(url, namespace, threads, start_at, start_at + seconds)
    return n / seconds, cpu / max(n, 1) * 1e6


def single_decision_us(url: str, namespace: str, seconds: float = 1.0) -> tuple[float, float]:
    """Round-trip µs of one decision from one thread (nothing else running), and the
    process's CPU µs per decision."""
    start_at = time.time() + 0.2
    n, cpu = run_threads(url, namespace, 1, start_at, start_at + seconds, tag="lat")
    return seconds / max(n, 1) * 1e6, cpu / max(n, 1) * 1e6


def redis_benchmark(url: str, prefix: str, requests: int, clients: int) -> float:
    """``redis-benchmark`` EVALSHA-ing the store's Lua script on random keys; requests/s."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise RuntimeError("redis-benchmark not on PATH")
    u = redis.connection.parse_url(url)
    host, port, db = str(u.get("host", "127.0.0.1")), str(u.get("port", 6379)), str(u.get("db", 0))
    client = redis.Redis.from_url(url)
    try:
        sha = client.script_load(TOKEN_BUCKET_LUA)
    finally:
        client.close()
    cmd = [
        exe,
        "-h",
        host,
        "-p",
        port,
        "--dbnum",
        db,
        "-n",
        str(requests),
        "-c",
        str(clients),
        "-r",
        "1000000",
        "-q",
        "evalsha",
        sha,
        "1",
        f"{prefix}__rand_int__",
        repr(RATE),
        repr(BURST),
        "1",
    ]
    log(" ".join(cmd[1:]))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    found = RPS.findall(proc.stdout.replace("\r", "\n"))
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"redis-benchmark failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return float(found[-1])


def cleanup(url: str, pattern: str) -> int:
    """Delete the bench's keys (they also expire on their own after 2 s)."""
    client = redis.Redis.from_url(url)
    try:
        n = 0
        batch: list[Any] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                n += client.delete(*batch)
                batch.clear()
        if batch:
            n += client.delete(*batch)
        return n
    finally:
        client.close()


def measure(
    url: str,
    tag: str,
    *,
    threads: int,
    procs: int,
    proc_threads: int,
    seconds: float,
    requests: int,
) -> dict[str, object]:
    ns = f"bench:guard:{tag}:"
    try:
        bench = [redis_benchmark(url, f"{ns}rb:", requests, threads)]
        log(f"redis-benchmark: {bench[0]:.0f} decisions/s")
        one_rb = redis_benchmark(url, f"{ns}rb:", max(requests // 10, 1000), 1)
        one_us, one_cpu_us = single_decision_us(url, ns)
        log(
            f"one client: redis-benchmark {1e6 / one_rb:.1f} µs, Python {one_us:.1f} µs "
            f"({one_cpu_us:.1f} µs CPU)"
        )
        by_threads, cpu_us = decisions_per_s(url, ns, threads, seconds)
        log(
            f"1 process x {threads} threads: {by_threads:.0f} decisions/s, "
            f"{cpu_us:.1f} µs CPU per decision"
        )
        by_procs = run_processes(url, ns, procs, proc_threads, seconds)
        log(f"{procs} processes x {proc_threads} threads: {by_procs:.0f} decisions/s")
        bench.append(redis_benchmark(url, f"{ns}rb:", requests, threads))
        log(f"redis-benchmark again: {bench[1]:.0f} decisions/s")
    finally:
        removed = cleanup(url, f"{ns}*")
        log(f"removed {removed} bench keys")
    rb = sum(bench) / len(bench)
    best = max(by_threads, by_procs)
    return {
        "redis_decisions_per_s": round(best),
        "redis_benchmark_per_s": round(rb),
        "ratio_redis": round(best / rb, 3),
        "redis_headline": ("1 process" if best == by_threads else f"{procs} processes")
        + " (best of the two Python runs)",
        "redis_1proc_threads_per_s": round(by_threads),
        "redis_1proc_ratio": round(by_threads / rb, 3),
        "redis_multiproc_per_s": round(by_procs),
        "redis_multiproc_ratio": round(by_procs / rb, 3),
        "redis_multiproc_shape": f"{procs}x{proc_threads}",
        "redis_threads": threads,
        "redis_benchmark_runs": [round(b) for b in bench],
        "redis_benchmark_clients": threads,
        "redis_single_decision_us": round(one_us, 1),
        "redis_benchmark_single_us": round(1e6 / one_rb, 1),
        "redis_py_cpu_us_single": round(one_cpu_us, 1),
        "redis_py_cpu_us_threads": round(cpu_us, 1),
        "redis_seconds": seconds,
    }
