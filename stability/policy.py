"""Which switch changes need a second person's approval, and the default limits."""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
