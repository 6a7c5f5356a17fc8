"""Per-resource bulkheads in the guard, with real threads."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from stability.bulkhead import Bulkhead
from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.errors import BulkheadFull, DependencyFailed
from stability.guard import Guard
from stability.switches import SwitchSnapshot


def make_guard(**bulkheads: int) -> Guard:
    dmap = DependencyMap(
        [
            ResourceSpec("link.pay", "link", core_link=True),
            ResourceSpec("channel.A", "channel"),
            ResourceSpec("channel.B", "channel"),
            ResourceSpec("notification", "service"),
        ],
        [
            EdgeSpec("link.pay", "channel.A", "strong", 5000),
            EdgeSpec("link.pay", "channel.B", "strong", 5000),
            EdgeSpec("link.pay", "notification", "weak", 5000, fallback="outbox"),
        ],
    )
    caps = {k.replace("_", "."): v for k, v in bulkheads.items()}
    return Guard(dmap, bulkheads=caps)


def hold(guard: Guard, resource: str, n: int, release: threading.Event) -> ThreadPoolExecutor:
    """``n`` threads inside guarded calls of ``resource`` until ``release`` is set."""
    inside = threading.Barrier(n + 1)

    def blocked() -> str:
        inside.wait(5)
        release.wait(5)
        return "done"

    pool = ThreadPoolExecutor(n)
    for _ in range(n):
        pool.submit(guard.call, resource, blocked, caller="link.pay")
    inside.wait(5)
    return pool


def test_a_strong_call_beyond_the_cap_raises_bulkhead_full_naming_the_resource():
    g = make_guard(channel_A=3)
    release = threading.Event()
    pool = hold(g, "channel.A", 3, release)
    try:
        assert g.in_flight("channel.A") == 3
        assert g.bulkheads() == {"channel.A": (3, 3)}
        with pytest.raises(BulkheadFull) as err:
            g.call("channel.A", lambda: "never", caller="link.pay")
        assert isinstance(err.value, DependencyFailed)
        assert err.value.resource == "channel.A"
        assert err.value.reason == "bulkhead_full"
        assert err.value.public_code == "dependency_unavailable:channel.A"
        # another pay org is not held by channel.A's slow calls
        assert g.call("channel.B", lambda: "b", caller="link.pay") == "b"
    finally:
        release.set()
        pool.shutdown(wait=True)
    assert g.in_flight("channel.A") == 0
    assert g.stats.count("channel.A", "bulkhead_full") == 1
    assert g.stats.count("channel.A", "pass") == 3
    assert g.call("channel.A", lambda: "again", caller="link.pay") == "again"


def test_a_weak_call_beyond_the_cap_falls_back_with_one_bulkhead_full_outcome():
    g = make_guard(notification=1)
    release = threading.Event()
    pool = hold(g, "notification", 1, release)
    try:
        got = g.call("notification", lambda: "sent", caller="link.pay", fallback=lambda: "later")
        assert got == "later"
        with pytest.raises(BulkheadFull):  # no fallback given
            g.call("notification", lambda: "sent", caller="link.pay")
    finally:
        release.set()
        pool.shutdown(wait=True)
    assert g.stats.count("notification", "bulkhead_full") == 2
    assert g.stats.count("notification", "fallback") == 0


def test_slots_are_given_back_on_errors_and_refusals():
    g = make_guard(channel_A=1)
    for _ in range(3):
        with pytest.raises(DependencyFailed):
            g.call("channel.A", lambda: 1 / 0, caller="link.pay")
    g.apply(SwitchSnapshot(version=1, degraded=frozenset({"channel.A"})))
    with pytest.raises(DependencyFailed):
        g.call("channel.A", lambda: 1, caller="link.pay")
    g.apply(SwitchSnapshot(version=2))
    assert g.in_flight("channel.A") == 0
    assert g.call("channel.A", lambda: 1, caller="link.pay") == 1


def test_concurrent_calls_never_exceed_the_cap():
    g = make_guard(channel_A=4)
    peak, now, lock = [0], [0], threading.Lock()
    refused = []

    def work() -> None:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        threading.Event().wait(0.002)
        with lock:
            now[0] -= 1

    def one() -> None:
        try:
            g.call("channel.A", work, caller="link.pay")
        except BulkheadFull:
            refused.append(1)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: one(), range(400)))
    assert peak[0] <= 4
    assert refused  # 16 threads on 4 slots: some were refused
    assert g.stats.count("channel.A", "pass") + len(refused) == 400
    assert g.in_flight("channel.A") == 0


def test_set_bulkhead_changes_and_removes_caps_at_run_time():
    g = make_guard()
    assert g.bulkheads() == {} and g.in_flight("channel.A") == 0
    g.call("channel.A", lambda: 1, caller="link.pay")  # a cached route without a bulkhead
    g.set_bulkhead("channel.A", 1)
    release = threading.Event()
    pool = hold(g, "channel.A", 1, release)
    try:
        with pytest.raises(BulkheadFull):
            g.call("channel.A", lambda: 1, caller="link.pay")
        g.set_bulkhead("channel.A", 2)  # in place: the held slot stays counted
        assert g.bulkheads() == {"channel.A": (1, 2)}
        assert g.call("channel.A", lambda: 2, caller="link.pay") == 2
        g.set_bulkhead("channel.A", None)
        assert g.bulkheads() == {}
    finally:
        release.set()
        pool.shutdown(wait=True)
    with pytest.raises(ValueError):
        g.set_bulkhead("channel.A", 0)
    with pytest.raises(ValueError):
        Bulkhead("x", True)


def test_acall_honours_the_bulkhead():
    g = make_guard(channel_A=2)

    async def main() -> list[object]:
        gate = asyncio.Event()

        async def slow() -> str:
            await gate.wait()
            return "ok"

        tasks = [
            asyncio.create_task(g.acall("channel.A", slow, caller="link.pay")) for _ in range(2)
        ]
        await asyncio.sleep(0.01)
        assert g.in_flight("channel.A") == 2
        third = await asyncio.gather(
            g.acall("channel.A", slow, caller="link.pay"), return_exceptions=True
        )
        gate.set()
        return [*await asyncio.gather(*tasks), *third]

    first, second, third = asyncio.run(main())
    assert (first, second) == ("ok", "ok")
    assert isinstance(third, BulkheadFull)
    assert g.in_flight("channel.A") == 0


def test_default_bulkheads_cap_each_pay_org_notification_and_the_database():
    from stability.depmap_seed import default_map
    from stability.policy import default_bulkheads

    orgs = ("SANDBOX_A", "SANDBOX_B")
    caps = default_bulkheads(orgs, db_connections=20)
    assert caps == {
        "channel.SANDBOX_A": 32,
        "channel.SANDBOX_B": 32,
        "notification": 16,
        "database": 20,
    }
    assert default_bulkheads(orgs)["database"] == 64  # what docs/stability.md says
    dmap = default_map(orgs)
    assert set(caps) <= {r.name for r in dmap.resources}
    g = Guard(dmap, bulkheads=caps)
    assert g.bulkheads()["channel.SANDBOX_A"] == (0, 32)
    assert g.call("channel.SANDBOX_A", lambda: "ok", caller="job.active_query") == "ok"
