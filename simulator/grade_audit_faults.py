"""How a grade audit takes one dependency down, and brings it back.

* ``channel.<ORG>``: the sandbox channel's ``outage_rate`` knob (every call, queries and
  statements too, answered 503);
* ``database`` and ``redis``: the TCP fault proxy in front of the platform's connections
  (down: open connections cut, new ones refused);
* ``notification``: the simulator's merchant receivers answer no notification in time;
* anything else (``ledger.posting``, ``ledger.hot_account``, ``risk``, ...): the guard's
  fault hook (:mod:`stability.faults`), only when the guard consults it.

A dependency that cannot be faulted here gets a reason instead of a fault, and the
audit reports its edges ``not_applicable``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stability.depmap import DependencyMap
from stability.faults import ATTR, FaultInjector

from .runner import DrillTargets

LeadIn = Callable[[str], Any] | None


@dataclass(frozen=True)
class Fault:
    """One dependency's fault: how, and the calls that apply and undo it."""

    resource: str
    how: str
    apply: Callable[[], Any]
    undo: Callable[[], Any]


def guard_has_hook(guard: Any) -> bool:
    """Does ``guard``'s class consult a :class:`~stability.faults.FaultInjector` before
    each call (its ``fault_injector``)?"""
    try:
        source = inspect.getsource(type(guard))
    except (OSError, TypeError):
        return False
    return ATTR in source


def _channel(resource: str, targets: DrillTargets, lead_in: LeadIn, hold_s: float) -> Fault | str:
    sandbox, org = targets.sandbox, resource.split(".", 1)[1]
    if sandbox is None:
        return "no sandbox channel admin API to fail the channel"
    before: dict[str, Any] = {}

    def apply() -> Any:
        before.update(sandbox.knobs()[org])
        if lead_in is not None:  # a pay left processing: what the active query asks about
            sandbox.put(org, {"callback_delay_ms": hold_s * 1000.0})
            lead_in(org)
        return sandbox.put(org, {"outage_rate": 1.0})

    return Fault(
        resource,
        f"sandbox knobs: {org} answers every call 503 (pays, refunds, queries, statements)"
        + (f" (after one pay accepted, its callback held {hold_s:g}s)" if lead_in else ""),
        apply,
        lambda: sandbox.put(org, dict(before) or {"error_rate": 0.0}),
    )


def _proxy(resource: str, targets: DrillTargets) -> Fault | str:
    proxy = targets.proxies.get(resource)
    if proxy is None:
        return (
            f"{resource} is not reached through a fault proxy of this process "
            "(SQLite, no Redis, or a platform running elsewhere)"
        )
    return Fault(
        resource,
        f"fault proxy: {resource} down (connections cut and refused)",
        lambda: proxy.set(down=True),
        proxy.reset,
    )


def _receiver(resource: str, simulator: Any) -> Fault | str:
    receiver = getattr(simulator, "receiver", None)
    if receiver is None:
        return "the simulator runs no merchant notification receivers"
    saved = (receiver.failure_ratio, receiver.timeout_share)

    def apply() -> None:  # no answer in time: an answer of any status is a working service
        receiver.failure_ratio, receiver.timeout_share = 1.0, 1.0

    def undo() -> None:
        receiver.failure_ratio, receiver.timeout_share = saved

    how = f"merchant receivers answer no notification (each held {receiver.timeout_s:g}s)"
    return Fault(resource, how, apply, undo)


def _hook(resource: str, guard: Any) -> Fault | str:
    if not guard_has_hook(guard):
        return (
            "the guard does not consult a stability.faults.FaultInjector (its "
            "fault_injector) before each call, so no honest fault can be injected"
        )
    injector = FaultInjector.attach(guard)
    return Fault(
        resource,
        "guard fault hook: every guarded call fails",
        lambda: injector.fail([resource]),
        lambda: injector.heal([resource]),
    )


def fault_for(
    resource: str,
    dmap: DependencyMap,
    targets: DrillTargets,
    guard: Any,
    simulator: Any,
    lead_in: LeadIn = None,
    hold_s: float = 10.0,
) -> Fault | str:
    """The fault for ``resource``, or why there is none. ``lead_in(org)``, when given, runs
    before a channel fails: a probe's pay, its callback held ``hold_s`` (past the fault),
    so the active query has an order in flight to ask the failing channel about."""
    kind = dmap.resource(resource).kind
    if kind == "channel" and "." in resource:
        return _channel(resource, targets, lead_in, hold_s)
    if resource in ("database", "redis"):
        return _proxy(resource, targets)
    if resource == "notification":
        return _receiver(resource, simulator)
    return _hook(resource, guard)


#: fault order: the least disruptive first, the database (everything's) last
_LAST = ("ledger.hot_account", "ledger.posting", "redis", "database")


def audit_order(dmap: DependencyMap, only: tuple[str, ...] = ()) -> list[str]:
    """Every dependency some edge points at (or ``only``), in fault order."""
    called = {e.callee for e in dmap.edges if not dmap.resource(e.callee).core_link}
    unknown = [r for r in only if r not in called]
    if unknown:
        raise ValueError(f"not a dependency of the map: {', '.join(unknown)}")
    chosen = list(dict.fromkeys(only)) if only else sorted(called)
    return sorted(chosen, key=lambda r: (_LAST.index(r) if r in _LAST else -1, r))
