"""HTTP client stacks: wall and CPU time per request, against one local HTTP server.

One uvicorn server (a tiny ASGI app that answers a JSON POST with a JSON object) runs in
its own process, so the CPU measured here is the client's alone (``time.process_time``
of this process). Each variant sends ``--requests`` sequential POSTs of the same ~200
byte JSON body over one kept-alive connection and decodes each JSON answer:

* ``urllib3``: ``urllib3.PoolManager().request`` (sync; the reference);
* ``helper``: ``backends.http.JsonHttp.post`` over a PoolManager (sync; what the
  runtime's sync clients use);
* ``httpx``: ``httpx.Client.post`` (sync);
* ``aiohttp``: ``aiohttp.ClientSession.post`` in an asyncio loop (uvloop by default);
* ``httpx_async``: ``httpx.AsyncClient.post`` in the same loop.

``--rounds`` rounds run every variant once, in rotating order (host noise hits all of
them alike), after an untimed warm-up of each; a variant's figure is its median round.
Ratios are against ``urllib3`` in the same run. Prints one JSON object as the last line
of stdout, also written to ``bench/results/http_clients.json``.

Usage: ``python bench/http_clients.py [--requests 2000] [--rounds 7] [--loop uvloop]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "http_clients.json"
ROOT = Path(__file__).resolve().parent.parent
BODY = {
    "channel_txn_no": "T" + "0" * 31,
    "amount": 1000,
    "currency": "CNY",
    "notify_url": "http://127.0.0.1:8000/v1/channels/SANDBOX_A/callback",
    "origin_channel_txn_no": None,
    "note": "x" * 40,
}
ANSWER = json.dumps({"accepted": True, "channel_ref": "R" * 32, "echo": "y" * 120}).encode()
SYNC = ("urllib3", "helper", "httpx")
ASYNC = ("aiohttp", "httpx_async")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the server (its own process) -----------------------------------------------------------
async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: drain the request body, answer ``ANSWER`` as JSON."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER})


def serve(port: int) -> None:
    import uvicorn

    # a client idles while the others run: keep its connection open past uvicorn's 5 s
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=600,
    )


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the bench server did not start")


# -- the clients -----------------------------------------------------------------------------
def sync_senders(base: str) -> dict[str, tuple[Callable[[], object], Callable[[], None]]]:
    """name -> (send one request and decode the answer, close)."""
    import httpx
    import urllib3

    from backends.http import JsonHttp

    raw = json.dumps(BODY, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    url = f"{base}/gateway/SANDBOX_A/pay"
    pool = urllib3.PoolManager(maxsize=4)
    helper = JsonHttp(base, timeout=5.0)
    client = httpx.Client(timeout=5.0)
    timeout = urllib3.Timeout(connect=5.0, read=5.0)

    def by_urllib3() -> object:
        resp = pool.request(
            "POST", url, body=raw, headers=headers, timeout=timeout, retries=False, redirect=False
        )
        return json.loads(resp.data)

    def by_helper() -> object:
        return helper.post("/gateway/SANDBOX_A/pay", json=BODY).json()

    def by_httpx() -> object:
        return client.post(url, content=raw, headers=headers).json()

    return {
        "urllib3": (by_urllib3, pool.clear),
        "helper": (by_helper, helper.close),
        "httpx": (by_httpx, client.close),
    }


async def async_senders(
    base: str,
) -> dict[str, tuple[Callable[[], Awaitable[object]], Callable[[], Awaitable[None]]]]:
    import aiohttp
    import httpx

    raw = json.dumps(BODY, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    url = f"{base}/gateway/SANDBOX_A/pay"
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0))
    client = httpx.AsyncClient(timeout=5.0)

    async def by_aiohttp() -> object:
        async with session.post(url, data=raw, headers=headers) as resp:
            return json.loads(await resp.read())

    async def by_httpx() -> object:
        return (await client.post(url, content=raw, headers=headers)).json()

    return {"aiohttp": (by_aiohttp, session.close), "httpx_async": (by_httpx, client.aclose)}


def timed_sync(send: Callable[[], object], n: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per request over ``n`` requests."""
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        send()
    return (time.perf_counter() - w0) * 1e3 / n, (time.process_time() - c0) * 1e3 / n


async def timed_async(send: Callable[[], Awaitable[object]], n: int) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await send()
    return (time.perf_counter() - w0) * 1e3 / n, (time.process_time() - c0) * 1e3 / n


def measure(
    base: str, requests: int, rounds: int, loop: str
) -> dict[str, list[tuple[float, float]]]:
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in SYNC + ASYNC}
    sync = sync_senders(base)
    if loop == "uvloop":
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    else:
        runner = asyncio.Runner()
    with runner:
        senders = runner.run(async_senders(base))
        for send, _ in sync.values():
            timed_sync(send, max(50, requests // 10))
        for asend, _ in senders.values():
            runner.run(timed_async(asend, max(50, requests // 10)))
        order = list(SYNC + ASYNC)
        for r in range(rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                if name in sync:
                    samples[name].append(timed_sync(sync[name][0], requests))
                else:
                    samples[name].append(runner.run(timed_async(senders[name][0], requests)))
            log(
                f"round {r + 1}/{rounds}: "
                + ", ".join(f"{k} {v[-1][1]:.3f}" for k, v in samples.items())
            )
        for _, aclose in senders.values():
            runner.run(aclose())
    for _, close in sync.values():
        close()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per variant per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    sys.path.insert(0, str(ROOT))
    load = os.getloadavg()[0]
    proc, base = start_server()
    try:
        samples = measure(base, args.requests, args.rounds, args.loop)
    finally:
        proc.terminate()
        proc.wait(10)
    result: dict[str, Any] = {}
    for name, values in samples.items():
        result[f"{name}_wall_ms"] = round(statistics.median(w for w, _ in values), 4)
        result[f"{name}_cpu_ms"] = round(statistics.median(c for _, c in values), 4)
    ref_wall, ref_cpu = result["urllib3_wall_ms"], result["urllib3_cpu_ms"]
    for name in SYNC[1:] + ASYNC:
        result[f"{name}_cpu_ratio"] = round(result[f"{name}_cpu_ms"] / ref_cpu, 3)
        result[f"{name}_wall_ratio"] = round(result[f"{name}_wall_ms"] / ref_wall, 3)
    result["httpx_async_vs_aiohttp_cpu"] = round(
        result["httpx_async_cpu_ms"] / result["aiohttp_cpu_ms"], 3
    )
    result.update(
        reference="urllib3",
        requests=args.requests,
        rounds=args.rounds,
        loop=args.loop,
        loadavg_1m_before=round(load, 2),
        cpus=os.cpu_count(),
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
