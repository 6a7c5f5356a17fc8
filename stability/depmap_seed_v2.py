"""The second default seed of the dependency map (issue #20, before issue #21), frozen.

:func:`stability.depmap_seed.seed_or_upgrade` compares a stored map with it: a database
still holding exactly this seed was never edited and is brought to today's default. It
had jobs, ``link.notify -> notification`` and no ``coupon`` (issue #21 added the coupon
service back, called for real). Never change this module: it is what was written.
"""

from __future__ import annotations

from collections.abc import Sequence

from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec

__all__ = ["seed_v2_map"]

CORE_LINKS: tuple[str, ...] = (
    "link.trade_create",
    "link.pay",
    "link.refund",
    "link.callback",
    "link.notify",
)

JOBS: tuple[str, ...] = ("job.active_query", "job.compensation", "job.reconciliation")

# timeouts (ms) per dependency, shared by every caller
DB_MS, REDIS_MS, CHANNEL_MS, LEDGER_MS, HOT_ACCOUNT_MS = 1000, 200, 3000, 1500, 1200
NOTIFY_MS, RISK_MS = 500, 300
#: a job's transactions scan batches (statements, unfinished orders): the statement
#: timeout its database edge sets is longer than a link's
JOB_DB_MS = 5000
#: retries of the channel calls per caller: a submission (pay, refund) is never sent twice
#: by the guard; the jobs' status queries and statement downloads are retried once
CHANNEL_RETRIES = {
    "link.pay": 0,
    "link.refund": 0,
    "job.active_query": 1,
    "job.compensation": 0,
    "job.reconciliation": 1,
}
_JOB_TEXT = {
    "job.active_query": "asks the pay orgs the status of unfinished payments",
    "job.compensation": "re-sends or settles what a failure left half done",
    "job.reconciliation": "downloads statements and matches them with the ledger",
}
_HOT_FALLBACK = "buffer postings for summary posting"
_RISK_FALLBACK = "allow below risk threshold; review later"


def _services(redis_lock: bool) -> list[ResourceSpec]:
    services = [
        ResourceSpec("database", "database", "sre", 0.9999, description="primary database"),
        ResourceSpec(
            "ledger.posting", "ledger", "pay-core", 0.9999, description="double-entry postings"
        ),
        ResourceSpec(
            "ledger.hot_account",
            "ledger",
            "pay-core",
            0.999,
            description="hot merchant/platform accounts",
        ),
        ResourceSpec(
            "notification",
            "service",
            "pay-core",
            0.99,
            description="merchant and user notifications",
        ),
        ResourceSpec("risk", "service", "risk-team", 0.999, description="risk decision"),
    ]
    if redis_lock:
        services.append(ResourceSpec("redis", "cache", "sre", 0.999, description="order locks"))
    return services


def _resources(pay_orgs: Sequence[str], redis_lock: bool) -> list[ResourceSpec]:
    links = [
        ResourceSpec(name, "link", "pay-core", 0.9999, True, f"core link {name[5:]}")
        for name in CORE_LINKS
    ]
    jobs = [ResourceSpec(name, "job", "pay-core", 0.999, False, _JOB_TEXT[name]) for name in JOBS]
    channels = [
        ResourceSpec(
            f"channel.{org}", "channel", "channel-team", 0.999, False, f"pay organisation {org}"
        )
        for org in pay_orgs
    ]
    return [*links, *jobs, *channels, *_services(redis_lock)]


def _edges(pay_orgs: Sequence[str], redis_lock: bool) -> list[EdgeSpec]:
    edges = [EdgeSpec(link, "database", "strong", DB_MS, owner="pay-core") for link in CORE_LINKS]
    edges += [EdgeSpec(job, "database", "strong", JOB_DB_MS, owner="pay-core") for job in JOBS]
    for caller, retries in CHANNEL_RETRIES.items():
        edges += [
            EdgeSpec(caller, f"channel.{org}", "strong", CHANNEL_MS, retries, owner="channel-team")
            for org in pay_orgs
        ]
    if redis_lock:  # the trade lock of pay and refund
        edges += [
            EdgeSpec(link, "redis", "strong", REDIS_MS, 1, owner="sre")
            for link in ("link.pay", "link.refund")
        ]
    edges += [
        EdgeSpec(link, "ledger.posting", "strong", LEDGER_MS, owner="pay-core")
        for link in ("link.pay", "link.refund", "link.callback")
    ]
    edges += [
        EdgeSpec("ledger.posting", "database", "strong", DB_MS, owner="pay-core"),
        EdgeSpec(
            "ledger.posting",
            "ledger.hot_account",
            "weak",
            HOT_ACCOUNT_MS,
            fallback=_HOT_FALLBACK,
            owner="pay-core",
        ),
        EdgeSpec("ledger.hot_account", "database", "strong", DB_MS, owner="pay-core"),
        EdgeSpec(
            "link.notify",
            "notification",
            "weak",
            NOTIFY_MS,
            fallback="outbox: deliver later",
            owner="pay-core",
        ),
    ]
    edges += [
        EdgeSpec(link, "risk", "weak", RISK_MS, fallback=_RISK_FALLBACK, owner="risk-team")
        for link in ("link.pay",)  # trade creation asks no risk question (yet)
    ]
    return edges


def seed_v2_map(pay_orgs: Sequence[str], *, redis_lock: bool = True) -> DependencyMap:
    """The map the second seed wrote for ``pay_orgs``."""
    orgs = list(dict.fromkeys(pay_orgs))
    return DependencyMap(_resources(orgs, redis_lock), _edges(orgs, redis_lock))
