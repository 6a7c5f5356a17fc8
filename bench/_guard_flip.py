"""Guard bench, part 3: how long a switch flip takes to reach another process.

The parent proposes / reverts a ``degrade coupon`` switch; a child process (this file,
run as a script) built with ``build_stability`` and started like the API applies it. The
child wraps its watcher's ``apply`` (``guard.apply``) and prints, as JSON lines, the
``time.time()`` at which each new snapshot was in force; the parent wraps the switch
service's ``on_commit`` hook to timestamp each commit (just after COMMIT, before the
Redis publish). Latency = child apply time - parent commit time, matched by version.
"""

from __future__ import annotations

import json
import math
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from _schema import scratch_schema  # bench/_schema.py

from paycore.db.engine import create_engine_from_url
from runtime.wiring import build_stability
from stability.switches import SwitchSnapshot

ORGS = ("SANDBOX_A",)
TARGET = "coupon"
ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[guard] {msg}", file=sys.stderr, flush=True)


@contextmanager
def bench_schema(url: str) -> Iterator[str]:
    """A fresh, migrated schema; yields the URL scoped to it. Dropped on exit."""
    with scratch_schema(url, "bench_guard", log) as (_, scoped):
        yield scoped


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with fewer than 100 samples, p99 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _reader(stream: Any, out: queue.Queue[dict[str, Any]]) -> None:
    for line in stream:
        try:
            out.put(json.loads(line))
        except ValueError:
            log(f"child: {line.rstrip()}")
    out.put({"eof": True})


def measure(
    url: str, redis_url: str | None, flips: int, spacing_s: float, poll_s: float = 0.25
) -> dict[str, Any]:
    """Flip ``flips`` times; latencies in ms of the child seeing each commit."""
    engine = create_engine_from_url(url, pool_size=2)
    runtime = build_stability(engine, pay_orgs=ORGS, redis_url=redis_url, poll_s=poll_s)
    svc, commits = runtime.switches, dict[int, float]()
    publish = svc.on_commit

    def on_commit(version: int) -> None:
        commits[version] = time.time()
        if publish is not None:
            publish(version)

    svc.on_commit = on_commit
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), url, redis_url or "-", str(poll_s)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[dict[str, Any]] = queue.Queue()
    threading.Thread(target=_reader, args=(child.stdout, lines), daemon=True).start()
    lat: list[float] = []
    wrong = missed = 0
    try:
        first: dict[str, Any] = {}
        while not first.get("ready"):  # the child's initial apply comes first
            first = lines.get(timeout=60)
            if first.get("eof"):
                raise RuntimeError("child did not start")
        sw = None
        for i in range(flips):
            if sw is None:
                sw = svc.propose(
                    "degrade",
                    TARGET,
                    actor="bench",
                    reason=f"guard bench flip {i}",
                    ttl=timedelta(minutes=10),
                )
                if sw.status != "active":
                    raise RuntimeError(f"switch is {sw.status}, expected active")
                want = True
            else:
                svc.revert(sw.id, actor="bench", reason=f"guard bench flip {i}")
                sw, want = None, False
            version = max(commits)
            deadline = time.time() + max(3.0, 4 * poll_s)
            seen = None
            while seen is None and time.time() < deadline:
                try:
                    rec = lines.get(timeout=max(0.0, deadline - time.time()))
                except queue.Empty:
                    break
                if rec.get("eof"):
                    raise RuntimeError("child exited")
                if rec.get("v", -1) >= version:
                    seen = rec
            if seen is None:
                missed += 1
            else:
                lat.append((seen["t"] - commits[version]) * 1000.0)
                wrong += seen["v"] == version and seen["degraded"] != want
            time.sleep(spacing_s * random.uniform(0.8, 1.2))
        if sw is not None:
            svc.revert(sw.id, actor="bench", reason="guard bench done")
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        runtime.close()
        engine.dispose()
    if not lat:
        raise RuntimeError("the child saw no flip")
    return {
        "p50_ms": round(percentile(lat, 0.5), 2),
        "p99_ms": round(percentile(lat, 0.99), 2),
        "max_ms": round(max(lat), 2),
        "samples": len(lat),
        "missed": missed,
        "wrong_state": wrong,
    }


def child_main(url: str, redis_url: str | None, poll_s: float) -> None:
    """The other process: the stability runtime as the API builds it, timing each apply."""
    engine = create_engine_from_url(url, pool_size=2)
    runtime = build_stability(engine, pay_orgs=ORGS, redis_url=redis_url, poll_s=poll_s)
    apply, guard = runtime.watcher.apply, runtime.guard
    out_lock = threading.Lock()

    def emit(record: dict[str, Any]) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()

    def timed_apply(snapshot: SwitchSnapshot) -> None:
        apply(snapshot)  # guard.apply: the snapshot is in force when it returns
        emit(
            {"v": snapshot.version, "degraded": TARGET in guard.snapshot.degraded, "t": time.time()}
        )

    runtime.watcher.apply = timed_apply
    runtime.start()
    emit({"ready": True, "v": runtime.watcher.version})
    sys.stdin.read()  # until the parent closes our stdin
    runtime.close()
    engine.dispose()


if __name__ == "__main__":
    child_main(sys.argv[1], None if sys.argv[2] == "-" else sys.argv[2], float(sys.argv[3]))
