"""Every channel call goes through the guard as its edge's caller, with the edge's
timeout and retries: the worker's jobs through GuardedGateway, the API's sends through
the channel front. Against the sandbox channel over real HTTP; the map is the seeded one
(its channel timeouts shortened, so a slow channel shows within a test)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import date

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

from paycore.channels.errors import ChannelRefused, ChannelRejected, ChannelUnavailable
from paycore.channels.gateway import ChannelFront, build_gateway
from paycore.channels.guarded import GuardedGateway
from stability.depmap import DependencyMap
from stability.depmap_seed import default_map
from stability.guard import Guard
from stability.switch_records import SwitchSnapshot

ORGS = ("SANDBOX_A", "SANDBOX_B")
JOBS = ("job.active_query", "job.compensation", "job.reconciliation")
EDGE_MS = 250  # every channel edge's timeout in these tests
FAILED = ("error", "timeout")


class Outcomes:
    """A guard recorder: (resource, caller, outcome) of every decision, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        self.seen.append((resource, caller, outcome))

    def breaker_changed(self, resource: str, old: str, new: str, reason: str) -> None:
        pass

    def of(self, caller: str) -> list[tuple[str, str]]:
        return [(res, out) for res, c, out in self.seen if c == caller]


def short_map() -> DependencyMap:
    seeded = default_map(ORGS, redis_lock=False)
    edges = [
        replace(e, timeout_ms=EDGE_MS) if e.callee.startswith("channel.") else e
        for e in seeded.edges
    ]
    return DependencyMap(seeded.resources, edges)


@pytest.fixture
def world(sandbox):  # noqa: F811
    gateway = build_gateway(sandbox.url, SECRETS, timeout=5.0)  # outside the guard: 5 s
    rec = Outcomes()
    guard = Guard(short_map(), recorders=[rec])
    yield gateway, guard, rec
    gateway.close()


def test_the_seeded_map_has_every_channel_caller_with_its_retries() -> None:
    dmap = default_map(ORGS)
    expected = {
        "link.pay": 0,  # sends are never retried
        "link.refund": 0,
        "job.active_query": 1,  # queries are
        "job.compensation": 0,
        "job.reconciliation": 1,
    }
    for org in ORGS:
        for caller, retries in expected.items():
            edge = dmap.edge(caller, f"channel.{org}")
            assert edge is not None, f"{caller} -> channel.{org}"
            assert (edge.grade, edge.retries) == ("strong", retries)


def test_each_job_calls_the_channel_as_itself(world, receiver) -> None:  # noqa: F811
    gateway, guard, rec = world
    sent = request()
    GuardedGateway(gateway, guard, "job.compensation").send(sent, notify(receiver))
    GuardedGateway(gateway, guard, "job.active_query").query_status(
        "SANDBOX_A", sent.channel_txn_no
    )
    recon = GuardedGateway(gateway, guard, "job.reconciliation")
    assert recon.query("SANDBOX_B", "nobody-knows-it") is None
    recon.statement("SANDBOX_B", date(2030, 1, 1))
    assert rec.of("job.compensation") == [("channel.SANDBOX_A", "pass")]
    assert rec.of("job.active_query") == [("channel.SANDBOX_A", "pass")]
    assert rec.of("job.reconciliation") == [("channel.SANDBOX_B", "pass")] * 2
    assert {c for _, c, _ in rec.seen} == set(JOBS)


def test_the_http_timeout_is_the_edges_and_queries_are_retried(world, sandbox) -> None:  # noqa: F811
    gateway, guard, rec = world
    knobs(sandbox, "SANDBOX_A", latency_ms=1500.0)
    query = GuardedGateway(gateway, guard, "job.active_query")
    started = time.monotonic()
    with pytest.raises(ChannelUnavailable, match=r"timed out after 0\.25s"):
        query.query_status("SANDBOX_A", "t1")
    # two attempts of 0.25 s (retries 1), not the client's 5 s nor the sandbox's 1.5 s
    assert time.monotonic() - started < 1.2
    assert [out in FAILED for _, out in rec.of("job.active_query")] == [True, True]

    send = GuardedGateway(gateway, guard, "job.compensation")
    with pytest.raises(ChannelUnavailable, match=r"timed out after 0\.25s"):
        send.send(request(), "http://127.0.0.1:9/cb")
    assert [out in FAILED for _, out in rec.of("job.compensation")] == [True]  # sends: once


def test_a_4xx_is_an_answer_never_retried(world, receiver) -> None:  # noqa: F811
    gateway, guard, rec = world
    send = GuardedGateway(gateway, guard, "job.compensation")
    first = request()
    send.send(first, notify(receiver))
    with pytest.raises(ChannelRejected, match="409"):  # the same number, another amount
        send.send(replace(first, amount=first.amount + 1), notify(receiver))
    assert rec.of("job.compensation") == [("channel.SANDBOX_A", "pass")] * 2
    assert guard.breaker("channel.SANDBOX_A").state == "closed"


def test_a_degraded_channel_is_not_called(world, sandbox, receiver) -> None:  # noqa: F811
    gateway, guard, rec = world
    guard.apply(SwitchSnapshot(version=1, degraded=frozenset({"channel.SANDBOX_A"})))
    for caller in JOBS:
        jobs = GuardedGateway(gateway, guard, caller)
        skipped = request()
        with pytest.raises(ChannelRefused, match="channel.SANDBOX_A") as info:
            jobs.send(skipped, notify(receiver))
        assert info.value.details == {"resource": "channel.SANDBOX_A", "reason": "degraded"}
        assert sandbox.app.state.sandbox.get("SANDBOX_A", skipped.channel_txn_no) is None
        other = request(org="SANDBOX_B")
        jobs.send(other, notify(receiver, "SANDBOX_B"))  # another org is not touched
        assert rec.of(caller) == [("channel.SANDBOX_A", "degraded"), ("channel.SANDBOX_B", "pass")]

    guard.apply(SwitchSnapshot(version=2, forced={"channel.SANDBOX_A": "forced_open"}))
    with pytest.raises(ChannelRefused) as info:
        GuardedGateway(gateway, guard, "job.active_query").query_status("SANDBOX_A", "t")
    assert info.value.details["reason"] == "breaker_open"


@pytest.mark.parametrize("kind, link", [("pay", "link.pay"), ("refund", "link.refund")])
def test_front_sends_are_recorded_as_their_link_with_the_edges_timeout(
    world,
    sandbox,  # noqa: F811
    receiver,  # noqa: F811
    kind: str,
    link: str,
) -> None:
    gateway, guard, rec = world
    front = ChannelFront(gateway, lambda org: notify(receiver, org), guard=guard)
    try:
        origin = request()
        if kind == "refund":
            gateway.send(origin, notify(receiver))  # unguarded: not recorded
            receiver[0].wait(origin.channel_txn_no)
        fine = request(kind, origin=origin.channel_txn_no if kind == "refund" else None)
        front.submit(fine)
        assert front.wait_idle(5) and front.acked == 1
        knobs(sandbox, "SANDBOX_A", latency_ms=1500.0)
        slow = replace(fine, channel_txn_no=fine.channel_txn_no + "s")
        started = time.monotonic()
        front.submit(slow)
        assert front.wait_idle(5) and front.failures == 1
        assert time.monotonic() - started < 1.0  # the edge's 0.25 s, not the client's 5 s
    finally:
        front.close()
    assert rec.of(link) == [("channel.SANDBOX_A", "pass"), ("channel.SANDBOX_A", "timeout")]
    assert {c for _, c, _ in rec.seen} == {link}
