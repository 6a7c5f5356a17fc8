"""Which switch changes need a second person's approval, and the default limits."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

from .depmap import DependencyMap
from .limits import LimitRule


def is_strong_dependency(dmap: DependencyMap, resource: str) -> bool:
    """True when some caller cannot work without ``resource``."""
    return any(e.callee == resource and e.grade == "strong" for e in dmap.edges)


def is_core_link(dmap: DependencyMap, resource: str) -> bool:
    return any(r.name == resource and r.core_link for r in dmap.resources)


def approval_policy(
    dmap_provider: Callable[[], DependencyMap], rules_provider: Callable[[], Iterable[LimitRule]]
) -> Callable[[str, str], bool]:
    """``needs_approval(kind, target)``: switches on strong dependencies or core links,
    and limits guarding them, apply only after a second person approves."""

    def needs_approval(kind: str, target: str) -> bool:
        dmap = dmap_provider()
        resource = target
        if kind in ("set_limit", "dry_run_limit"):
            rule = next((r for r in rules_provider() if r.name == target), None)
            resource = rule.resource if rule else target
        return is_core_link(dmap, resource) or is_strong_dependency(dmap, resource)

    return needs_approval


def known_targets(dmap: DependencyMap, rules: Iterable[LimitRule]) -> dict[str, set[str]]:
    """What a switch of each kind may name at all: a resource of the map (degrade,
    force_breaker) or a limit rule (set_limit, dry_run_limit). ``SwitchService(targets=)``
    refuses anything else with :class:`~stability.errors.UnknownSwitchTarget`."""
    resources = {r.name for r in dmap.resources}
    names = {r.name for r in rules}
    return {
        "degrade": resources,
        "force_breaker": resources,
        "set_limit": names,
        "dry_run_limit": set(names),
    }


def acting_targets(dmap: DependencyMap, rules: Iterable[LimitRule]) -> dict[str, list[str]]:
    """The switches that change behaviour, per kind, sorted: what the console offers.

    A degrade or forced breaker acts on a resource some guarded call reads, i.e. the
    callee of an edge (every edge has a guarded call site: test_guarded_edges). Core links
    and jobs are only callers, so switching them would change nothing: not offered. A
    limit acts when its rule guards such a resource.
    """
    called = sorted({e.callee for e in dmap.edges})
    acting = set(called)
    limits = sorted(r.name for r in rules if r.resource in acting)
    return {
        "degrade": called,
        "force_breaker": list(called),
        "set_limit": limits,
        "dry_run_limit": list(limits),
    }


def target_checker(
    dmap_provider: Callable[[], DependencyMap], rules_provider: Callable[[], Iterable[LimitRule]]
) -> Callable[[], Mapping[str, Collection[str]]]:
    """``targets()`` for :class:`~stability.switches.SwitchService`: the known targets of
    the current map and rules (read at each proposal, so map edits count at once)."""
    return lambda: known_targets(dmap_provider(), rules_provider())


def default_rules(pay_orgs: Iterable[str]) -> list[LimitRule]:
    """Per-channel limits: a total and a per-merchant bucket (both fail open: a limit
    store outage must not stop payments), and a cap on risk checks."""
    rules = []
    for org in pay_orgs:
        res = f"channel.{org}"
        rules.append(LimitRule(f"{res}.total", res, rate=2000, burst=4000))
        rules.append(
            LimitRule(f"{res}.per_merchant", res, rate=500, burst=1000, scope=("merchant_id",))
        )
    rules.append(LimitRule("risk.total", "risk", rate=5000, burst=10000))
    return rules


#: concurrent calls one pay org may have in flight (its slow answers cannot take more)
CHANNEL_BULKHEAD = 32
NOTIFICATION_BULKHEAD = 16


def default_bulkheads(pay_orgs: Iterable[str], *, db_connections: int = 64) -> dict[str, int]:
    """Per-resource caps on calls in flight (``Guard(bulkheads=...)``): 32 per pay org,
    16 notification POSTs, and the database at the connections its pool can open
    (``db_connections``: pool size plus overflow), so a call beyond them fails fast
    instead of queueing for a connection."""
    caps = {f"channel.{org}": CHANNEL_BULKHEAD for org in pay_orgs}
    caps["notification"] = NOTIFICATION_BULKHEAD
    caps["database"] = db_connections
    return caps
