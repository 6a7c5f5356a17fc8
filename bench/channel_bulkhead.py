"""Channel-front bulkheads: does a slow pay org A change pay org B's latency?

The sandbox channel runs in this process (uvicorn, a thread); no database is used. For
each way of sending (the front's thread pools, the front on an event loop) the bench
measures B's latency from ``submit`` to the channel's acknowledgement, first alone, then
while A answers in ``--slow-ms`` (10 s: longer than the edge's 3 s timeout, so each of
A's sends holds its slot for the whole timeout) under a steady stream of sends to A. The
same load runs through the front before bulkheads (one thread pool, or one aiohttp
session, for every org) as the control.

B sends still unanswered ``--wait-s`` after the last one count at the time waited (a
lower bound; ``b_unfinished`` says how many). Prints one JSON object as the last line of
stdout (also ``bench/results/channel_bulkhead.json``).
Usage: ``python bench/channel_bulkhead.py [--slow-ms 10000] [--b-sends 200] ...`` (about 2 min).
With ``--b-sends 100`` on a quiet machine (2 cores), B p99 with A slow / B p99 alone was
0.8 (threads) and 1.3 (loop); without per-org bulkheads 765 and 21. Other load on the
machine shows as outliers in a p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn

from paycore.channels import ChannelRequest
from paycore.channels.gateway import ChannelFront, ChannelGateway, build_gateway
from simulator.sandbox import create_sandbox_app
from simulator.sandbox_config import Knobs, SandboxConfig
from stability.depmap_seed import default_map
from stability.guard import Guard

RESULTS = Path(__file__).resolve().parent / "results" / "channel_bulkhead.json"
ORGS = ("SANDBOX_A", "SANDBOX_B")
SECRETS = {org: f"bench-secret-{org}" for org in ORGS}
NOTIFY = "http://127.0.0.1:9/callback"  # never called: callbacks are far in the future
Submit = Callable[[ChannelRequest], None]


def log(msg: str) -> None:
    print(f"[channel_bulkhead] {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


@contextmanager
def sandbox(latency_ms: float) -> Iterator[tuple[str, Any]]:
    """The sandbox channel on a free port; yields its URL and its state (for knobs)."""
    quiet = Knobs(latency_ms=latency_ms, latency_jitter=0.0, callback_delay_ms=600_000)
    app = create_sandbox_app(
        SandboxConfig(dict(SECRETS), "bench-admin", knobs=dict.fromkeys(ORGS, quiet))
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app.state.sandbox
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def request(org: str) -> ChannelRequest:
    return ChannelRequest("pay", org, uuid.uuid4().hex[:20], 1000, "CNY", "bench", 1, 1)


class Acks:
    """When each send was acknowledged, by channel txn no."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def __call__(self, txn: str) -> None:
        self.at[txn] = time.perf_counter()


def b_latencies(submit: Submit, acks: Acks, args: argparse.Namespace) -> dict[str, Any]:
    """``--b-sends`` sends to B at ``--b-rate``; latency percentiles in ms."""
    sent: dict[str, float] = {}
    gap = 1.0 / args.b_rate
    for _ in range(args.b_sends):
        r = request("SANDBOX_B")
        sent[r.channel_txn_no] = time.perf_counter()
        submit(r)
        time.sleep(gap)
    deadline = time.monotonic() + args.wait_s
    while time.monotonic() < deadline and not all(t in acks.at for t in sent):
        time.sleep(0.02)
    now = time.perf_counter()
    lat = [(acks.at.get(t, now) - at) * 1000 for t, at in sent.items()]
    return {
        "b_p50_ms": round(percentile(lat, 0.5), 2),
        "b_p99_ms": round(percentile(lat, 0.99), 2),
        "b_unfinished": sum(1 for t in sent if t not in acks.at),
    }


@contextmanager
def stream_to_a(submit: Submit, rate: float) -> Iterator[None]:
    """Send to A at ``rate`` per second while the block runs."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(1.0 / rate):
            submit(request("SANDBOX_A"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class Loop:
    """An asyncio event loop in a thread, as the API's is."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def bulkhead_front(gateway: ChannelGateway, loop: Loop | None, acks: Acks) -> ChannelFront:
    guard = Guard(default_map(ORGS, redis_lock=False))
    front = ChannelFront(
        gateway, lambda org: NOTIFY, guard=guard, on_ack=lambda a: acks(a.channel_txn_no)
    )
    if loop is not None:
        front.bind_loop(loop.loop)
    return front


def shared_sender(gateway: ChannelGateway, loop: Loop | None, acks: Acks) -> tuple[Submit, Any]:
    """The front before bulkheads: one pool of 8 threads, or one aiohttp session (its
    default connector: 100 connections), for every org; the edge's 3 s timeout."""
    if loop is None:
        pool = ThreadPoolExecutor(max_workers=8)

        def on_thread(r: ChannelRequest) -> None:
            try:
                gateway.send(r, NOTIFY, timeout=3.0)
                acks(r.channel_txn_no)
            except Exception:  # noqa: BLE001 - A's timeouts: counted by their absence
                pass

        def to_pool(r: ChannelRequest) -> None:
            pool.submit(on_thread, r)

        return to_pool, pool

    session = loop.run(_new_session())

    async def on_loop(r: ChannelRequest) -> None:
        try:
            await gateway.client(r.pay_org_no).send_async(session, r, NOTIFY, timeout=3.0)
            acks(r.channel_txn_no)
        except Exception:  # noqa: BLE001 - as above
            pass

    def to_loop(r: ChannelRequest) -> None:
        asyncio.run_coroutine_threadsafe(on_loop(r), loop.loop)

    return to_loop, session


async def _new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


def scenario(url: str, state: Any, mode: str, kind: str, args: argparse.Namespace) -> dict:
    """B alone, then B with A slow, through ``kind`` (bulkheads | shared) in ``mode``."""
    gateway = build_gateway(url, SECRETS, timeout=3.0)
    loop = Loop() if mode == "loop" else None
    acks = Acks()
    front = closer = None
    if kind == "bulkheads":
        front = bulkhead_front(gateway, loop, acks)
        submit: Submit = front.submit
    else:
        submit, closer = shared_sender(gateway, loop, acks)
    try:
        b_latencies(submit, acks, argparse.Namespace(**{**vars(args), "b_sends": 10}))  # warm
        alone = b_latencies(submit, acks, args)
        state.set_knobs("SANDBOX_A", state.knobs("SANDBOX_A").updated({"latency_ms": args.slow_ms}))
        with stream_to_a(submit, args.a_rate):
            time.sleep(args.a_lead_s)  # A fills whatever it can before B is measured
            slow = b_latencies(submit, acks, args)
        out = {
            "b_alone": alone,
            "b_with_a_slow": slow,
            "p99_ratio": round(slow["b_p99_ms"] / alone["b_p99_ms"], 2),
        }
        if front is not None:
            out["a_refused"] = front.refused
            out["a_in_flight_cap"] = front.max_in_flight
        return out
    finally:
        state.set_knobs("SANDBOX_A", state.knobs("SANDBOX_B"))
        _close(front, closer, loop, gateway)


def _close(front: Any, closer: Any, loop: Loop | None, gateway: ChannelGateway) -> None:
    if front is not None:
        if loop is not None:
            loop.run(front.unbind_loop(timeout=0.1))
        front.close()  # waits for A's sends on the pools (each at most the 3 s timeout)
    if isinstance(closer, ThreadPoolExecutor):
        closer.shutdown(wait=False, cancel_futures=True)
    elif closer is not None and loop is not None:
        loop.run(closer.close())
    if loop is not None:
        loop.stop()
    gateway.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slow-ms", type=float, default=10_000.0, help="A's answer time")
    p.add_argument("--fast-ms", type=float, default=5.0, help="B's (and A's usual) answer time")
    p.add_argument("--a-rate", type=float, default=40.0, help="sends to A per second")
    p.add_argument("--a-lead-s", type=float, default=3.0, help="A's stream before B's sends")
    p.add_argument("--b-sends", type=int, default=200)
    p.add_argument("--b-rate", type=float, default=25.0, help="sends to B per second")
    p.add_argument("--wait-s", type=float, default=10.0, help="wait for B's last answers")
    args = p.parse_args()
    logging.getLogger("paycore.channels").setLevel(logging.CRITICAL)  # A's failures, by design
    result: dict[str, Any] = {"params": vars(args)}
    with sandbox(args.fast_ms) as (url, state):
        for mode in ("threads", "loop"):
            for kind in ("bulkheads", "shared"):
                log(f"{mode} / {kind}: B alone, then B with A at {args.slow_ms:g} ms")
                out = scenario(url, state, mode, kind, args)
                log(f"  {json.dumps(out)}")
                result.setdefault(mode, {})[kind] = out
    result["headline"] = {
        mode: {
            "b_p99_alone_ms": result[mode]["bulkheads"]["b_alone"]["b_p99_ms"],
            "b_p99_a_slow_ms": result[mode]["bulkheads"]["b_with_a_slow"]["b_p99_ms"],
            "ratio": result[mode]["bulkheads"]["p99_ratio"],
            "ratio_without_bulkheads": result[mode]["shared"]["p99_ratio"],
        }
        for mode in ("threads", "loop")
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
