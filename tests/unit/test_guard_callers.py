"""The guard's caller attribution, edge timeouts, retries and live map replacement."""

from __future__ import annotations

import asyncio
import threading

import pytest

from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.errors import (
    BreakerOpen,
    CallTimeout,
    DependencyFailed,
    RateLimited,
    UnknownResource,
)
from stability.guard import Guard, call_budget, calling_as, current_caller
from stability.switches import SwitchSnapshot


class Business(Exception):
    pass


class Edges:
    """A recorder of (caller, resource, outcome)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        self.seen.append((caller, resource, outcome))

    def breaker_changed(self, *a: object) -> None:
        pass


def make_map(ledger_retries: int = 0, channel_retries: int = 2) -> DependencyMap:
    return DependencyMap(
        [
            ResourceSpec("link.pay", "link", core_link=True),
            ResourceSpec("ledger.posting", "ledger"),
            ResourceSpec("database", "database"),
            ResourceSpec("channel.A", "channel"),
            ResourceSpec("notification", "service"),
        ],
        [
            EdgeSpec("link.pay", "ledger.posting", "strong", 1500, ledger_retries),
            EdgeSpec("ledger.posting", "database", "strong", 1000),
            EdgeSpec("link.pay", "channel.A", "strong", 300, channel_retries),
            EdgeSpec("link.pay", "notification", "weak", 200, 1, fallback="outbox"),
        ],
    )


def make_guard() -> tuple[Guard, Edges]:
    rec = Edges()
    return Guard(make_map(), recorders=[rec], ignore=(Business,)), rec


def test_calling_as_sets_the_caller_and_nested_calls_take_the_edge_of_their_resource():
    g, rec = make_guard()
    assert current_caller() is None
    seen: dict[str, object] = {}

    def post() -> str:
        seen["inside"] = current_caller()
        seen["budget"] = call_budget(9.0)
        return g.call("database", lambda: "row")  # no caller: ledger.posting's edge

    with calling_as("link.pay"):
        assert current_caller() == "link.pay"
        assert g.call("ledger.posting", post) == "row"
        assert current_caller() == "link.pay"
    assert current_caller() is None
    assert seen == {"inside": "ledger.posting", "budget": 1.5}
    assert rec.seen == [
        ("ledger.posting", "database", "pass"),
        ("link.pay", "ledger.posting", "pass"),
    ]


def test_a_call_without_any_caller_is_a_programming_error():
    g, _ = make_guard()
    with pytest.raises(ValueError, match="needs a caller"):
        g.call("database", lambda: 1)
    with calling_as("link.pay"), pytest.raises(UnknownResource):
        g.call("database", lambda: 1)  # link.pay has no edge to the database here


def test_fallback_runs_as_the_caller_not_as_the_failed_resource():
    g, _ = make_guard()
    where = []

    def fallback() -> str:
        where.append(current_caller())
        return "outbox"

    def down() -> str:
        raise RuntimeError("smtp down")

    with calling_as("link.pay"):
        assert g.call("notification", down, fallback=fallback) == "outbox"
    assert where == ["link.pay"]


def test_timeout_s_is_the_edges_and_unknown_edges_raise():
    g, _ = make_guard()
    assert g.timeout_s("link.pay", "channel.A") == 0.3
    assert g.timeout_s("ledger.posting", "database") == 1.0
    with pytest.raises(UnknownResource):
        g.timeout_s("link.pay", "database")


def test_failures_are_retried_as_the_edge_says_and_each_attempt_counts():
    g, rec = make_guard()
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("reset by peer")
        return "ok"

    assert g.call("channel.A", flaky, caller="link.pay") == "ok"
    assert len(attempts) == 3  # the first + 2 retries
    assert [o for *_, o in rec.seen] == ["error", "error", "pass"]
    attempts.clear()

    def down() -> None:
        attempts.append(1)
        raise RuntimeError("refused")

    with pytest.raises(DependencyFailed) as err:
        g.call("channel.A", down, caller="link.pay")
    assert err.value.resource == "channel.A"
    assert len(attempts) == 3
    assert g.stats.count("channel.A", "error") == 5


def test_no_retry_when_the_edge_has_none_on_business_errors_or_on_refusals():
    g, _ = make_guard()
    calls = []

    def business() -> None:
        calls.append("b")
        raise Business("card declined")

    with pytest.raises(Business):
        g.call("channel.A", business, caller="link.pay")
    assert calls == ["b"]  # a client's mistake is not retried
    assert g.stats.count("channel.A", "pass") == 1

    def nested_refused() -> None:
        calls.append("r")
        raise BreakerOpen("open", resource="database", reason="breaker_open")

    with pytest.raises(DependencyFailed):
        g.call("channel.A", nested_refused, caller="link.pay")
    assert calls.count("r") == 1

    def nested_limited() -> None:
        calls.append("l")
        raise RateLimited("limit", resource="x")

    with pytest.raises(DependencyFailed):
        g.call("channel.A", nested_limited, caller="link.pay")
    assert calls.count("l") == 1
    with pytest.raises(DependencyFailed):
        g.call("ledger.posting", lambda: 1 / 0, caller="link.pay")  # retries 0
    assert g.stats.count("ledger.posting", "error") == 1


def test_a_refused_call_is_not_attempted_at_all():
    g, _ = make_guard()
    g.apply(SwitchSnapshot(version=1, forced={"channel.A": "forced_open"}))
    calls = []
    with pytest.raises(BreakerOpen):
        g.call("channel.A", lambda: calls.append(1), caller="link.pay")
    assert calls == []
    assert g.stats.count("channel.A", "breaker_open") == 1


def test_acall_retries_timeouts_and_attributes_nested_calls():
    g, rec = make_guard()
    attempts = []

    async def slow_then_fast() -> str:
        attempts.append(current_caller())
        if len(attempts) == 1:
            await asyncio.sleep(1.0)  # beyond the 300 ms edge
        return g.call("database", lambda: "x", caller="ledger.posting")

    assert asyncio.run(g.acall("channel.A", slow_then_fast, caller="link.pay")) == "x"
    assert attempts == ["channel.A", "channel.A"]
    assert ("link.pay", "channel.A", "timeout") in rec.seen

    async def never() -> None:
        await asyncio.sleep(1.0)

    with pytest.raises(CallTimeout):
        asyncio.run(g.acall("channel.A", never, caller="link.pay"))
    assert g.stats.count("channel.A", "timeout") == 4  # 1 above + 3 attempts here

    async def down() -> str:
        raise RuntimeError("down")

    got = asyncio.run(g.acall("notification", down, caller="link.pay", fallback=lambda: "fb"))
    assert got == "fb"
    assert g.stats.count("notification", "error") == 2  # the first + 1 retry


def test_set_map_takes_the_new_edges_at_once():
    g, _ = make_guard()
    assert g.timeout_s("link.pay", "channel.A") == 0.3
    g.call("channel.A", lambda: 1, caller="link.pay")
    edited = make_map().with_edge(EdgeSpec("link.pay", "channel.A", "weak", 700, 0, "queue"))
    g.set_map(edited)
    assert g.map is edited
    assert g.timeout_s("link.pay", "channel.A") == 0.7
    got = g.call("channel.A", lambda: 1 / 0, caller="link.pay", fallback=lambda: "queued")
    assert got == "queued"  # weak now, no retries
    assert g.stats.count("channel.A", "error") == 1


def test_each_thread_starts_without_a_caller():
    seen = []
    with calling_as("link.pay"):
        t = threading.Thread(target=lambda: seen.append(current_caller()))
        t.start()
        t.join()
    assert seen == [None]
