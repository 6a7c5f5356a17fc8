"""One bulkhead per pay org in the channel front: pay org A answering slowly leaves pay
org B's latency as it was, on the thread pools and on the event loop; the front before
bulkheads (one pool, one session for every org) does not. Against the sandbox channel
over real HTTP, scaled down: A answers in 1 s (its edge's timeout is 3 s)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest

# fixtures and helpers shared with the channel protocol tests (tests/integration/sandbox_servers.py)
from sandbox_servers import (  # noqa: F401
    SECRETS,
    fast_knobs,
    knobs,
    notify,
    receiver,
    request,
    sandbox,
    wait_until,
)

from paycore.channels import ChannelRequest
from paycore.channels.errors import ChannelRefused
from paycore.channels.gateway import ChannelFront, build_gateway
from stability.depmap_seed import default_map
from stability.guard import Guard

THREADS, CAP = 4, 8  # per org: sending threads, sends queued or in flight
SLOW_A_MS, FLOOD = 1000.0, 12  # A's answer time; sends to A before B's
#: B's p99 with A slow may exceed B's p99 alone by at most this: room for a loaded CI
#: machine's pauses (0.15 s was exceeded once), still under the half of A's answer time
#: that B loses without per-org bulkheads (the control test below)
TOLERANCE_S = 0.4


class LoopThread:
    """An asyncio event loop in a thread, as the API's is."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 10.0):  # noqa: ANN001, ANN201
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Acks:
    """When each send was acknowledged (perf_counter), by channel txn no."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def __call__(self, txn: str) -> None:
        self.at[txn] = time.perf_counter()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.99 * (len(ordered) - 1))]


def b_p99(submit: Callable[[ChannelRequest], None], acks: Acks, n: int = 30) -> float:
    """Send ``n`` pays to B, 20 ms apart; B's p99 from submit to acknowledgement."""
    sent: dict[str, float] = {}
    for _ in range(n):
        r = request(org="SANDBOX_B")
        sent[r.channel_txn_no] = time.perf_counter()
        submit(r)
        time.sleep(0.02)
    assert wait_until(lambda: all(t in acks.at for t in sent), 20)
    return p99([acks.at[t] - sent[t] for t in sent])


def flood_a(submit: Callable[[ChannelRequest], None]) -> None:
    for _ in range(FLOOD):
        submit(request(org="SANDBOX_A"))


@pytest.fixture(params=["threads", "event loop"])
def mode(request) -> Iterator[LoopThread | None]:  # noqa: ANN001
    if request.param == "threads":
        yield None
        return
    loop = LoopThread()
    yield loop
    loop.stop()


def test_a_slow_org_leaves_the_others_p99_alone(sandbox, receiver, mode) -> None:  # noqa: F811
    gateway = build_gateway(sandbox.url, SECRETS)
    acks, refused, failed, flying = Acks(), [], [], []
    outcomes: list[tuple[str, str, str]] = []
    guard = Guard(default_map(("SANDBOX_A", "SANDBOX_B"), redis_lock=False))
    guard.recorders.append(_Recorder(outcomes))
    front = ChannelFront(
        gateway,
        lambda org: notify(receiver, org),
        max_workers=THREADS,
        max_in_flight=CAP,
        guard=guard,
        on_ack=lambda ack: acks(ack.channel_txn_no),
        on_refused=lambda req, why: refused.append((req.pay_org_no, why)),
        on_failure=lambda req, exc: failed.append(exc),
        on_in_flight=lambda org, n: flying.append((org, n)),
    )
    if mode is not None:
        front.bind_loop(mode.loop)
    try:
        alone = b_p99(front.submit, acks)
        knobs(sandbox, "SANDBOX_A", latency_ms=SLOW_A_MS)
        flood_a(front.submit)
        assert front.in_flight("SANDBOX_A") == CAP  # its cap: the rest were refused
        with_a_slow = b_p99(front.submit, acks)
        assert front.in_flight("SANDBOX_A") > 0  # A was still slow all along
        assert with_a_slow <= alone + TOLERANCE_S, (alone, with_a_slow)
        assert front.wait_idle(10)
    finally:
        if mode is not None:
            mode.run(front.unbind_loop())
        front.close()
        gateway.close()
    over = FLOOD - CAP
    assert refused == [("SANDBOX_A", "cap")] * over and front.refused == over
    assert [type(e) for e in failed] == [ChannelRefused] * over
    assert all(e.details["reason"] == "bulkhead_full" for e in failed)
    assert outcomes.count(("channel.SANDBOX_A", "link.pay", "bulkhead_full")) == over
    assert outcomes.count(("channel.SANDBOX_A", "link.pay", "pass")) == CAP
    assert max(n for org, n in flying if org == "SANDBOX_A") == CAP
    assert flying[-1][1] == 0 and front.in_flight() == 0


def test_without_per_org_bulkheads_a_slow_org_takes_the_others_slots(
    sandbox,  # noqa: F811
    receiver,  # noqa: F811
    mode,
) -> None:
    """The control: one pool (threads) or one session (loop) for every org, as the front
    was before; the same load puts A's answer time into B's p99."""
    gateway = build_gateway(sandbox.url, SECRETS)
    acks = Acks()
    pool = ThreadPoolExecutor(max_workers=THREADS)
    session: list[aiohttp.ClientSession] = []

    def send_on_thread(r: ChannelRequest) -> None:
        gateway.send(r, notify(receiver, r.pay_org_no))
        acks(r.channel_txn_no)

    async def send_on_loop(r: ChannelRequest) -> None:
        if not session:
            session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=THREADS)))
        client = gateway.client(r.pay_org_no)
        await client.send_async(session[0], r, notify(receiver, r.pay_org_no))
        acks(r.channel_txn_no)

    def submit(r: ChannelRequest) -> None:
        if mode is None:
            pool.submit(send_on_thread, r)
        else:
            asyncio.run_coroutine_threadsafe(send_on_loop(r), mode.loop)

    try:
        alone = b_p99(submit, acks)
        knobs(sandbox, "SANDBOX_A", latency_ms=SLOW_A_MS)
        flood_a(submit)
        with_a_slow = b_p99(submit, acks)
        assert with_a_slow > alone + SLOW_A_MS / 1000 / 2, (alone, with_a_slow)
    finally:
        pool.shutdown(wait=True)
        if session:
            mode.run(session[0].close())
        gateway.close()


class _Recorder:
    def __init__(self, into: list[tuple[str, str, str]]) -> None:
        self.into = into

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        self.into.append((resource, caller, outcome))

    def breaker_changed(self, resource: str, old: str, new: str, reason: str) -> None:
        pass
