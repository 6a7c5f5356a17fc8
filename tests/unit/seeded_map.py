"""The seeded dependency map of the shared contract (§A), built here so the map tests do not
depend on which version of ``stability.depmap_seed`` is in the tree: 5 links, 3 jobs, 3
channels, database, redis, the ledger's two resources, notification and risk (17 nodes)."""

from __future__ import annotations

from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec

ORGS = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")
LINKS = ("link.trade_create", "link.pay", "link.refund", "link.callback", "link.notify")
JOBS = ("job.active_query", "job.compensation", "job.reconciliation")


def _strong(caller: str, callee: str, ms: int = 1000, retries: int = 0) -> EdgeSpec:
    return EdgeSpec(caller, callee, "strong", ms, retries)


def _weak(caller: str, callee: str, ms: int, fallback: str) -> EdgeSpec:
    return EdgeSpec(caller, callee, "weak", ms, fallback=fallback)


def contract_map(orgs: tuple[str, ...] = ORGS) -> DependencyMap:
    """The contract's §A map over ``orgs``."""
    channels = [f"channel.{o}" for o in orgs]
    resources = [ResourceSpec(n, "link", core_link=True) for n in LINKS]
    resources += [ResourceSpec(n, "job") for n in JOBS]
    resources += [ResourceSpec(c, "channel") for c in channels]
    resources += [
        ResourceSpec("database", "database"),
        ResourceSpec("redis", "cache"),
        ResourceSpec("ledger.posting", "ledger"),
        ResourceSpec("ledger.hot_account", "ledger"),
        ResourceSpec("notification", "service"),
        ResourceSpec("risk", "service"),
    ]
    edges = [_strong(n, "database") for n in LINKS + JOBS]
    edges += [_weak("link.trade_create", "risk", 300, "allow; review later")]
    for link in ("link.pay", "link.refund"):
        edges += [_strong(link, c, 3000) for c in channels]
        edges += [_strong(link, "redis", 200, 1), _strong(link, "ledger.posting", 1500)]
    edges += [_weak("link.pay", "risk", 300, "allow; review later")]
    edges += [_strong("link.callback", "ledger.posting", 1500)]
    edges += [_weak("link.notify", "notification", 500, "outbox: deliver later")]
    edges += [
        _strong("ledger.posting", "database"),
        _weak("ledger.posting", "ledger.hot_account", 1200, "buffer postings"),
        _strong("ledger.hot_account", "database"),
    ]
    for job, retries in (("job.active_query", 1), ("job.compensation", 0)):
        edges += [_strong(job, c, 3000, retries) for c in channels]
    edges += [_strong("job.reconciliation", c, 3000, 1) for c in channels]
    return DependencyMap(resources, edges)
