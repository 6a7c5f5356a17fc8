"""The pay core's real dependencies, as the default :class:`~stability.depmap.DependencyMap`.

Callers are the core links (``link.*``) and the background jobs (``job.*``); every edge is
one guarded call site (``tests/integration/test_guarded_edges.py`` proves it).
:func:`seed_or_upgrade` writes it on start, and replaces a stored map that is an
untouched older seed (:mod:`stability.depmap_seed_v1`, :mod:`stability.depmap_seed_v2`),
never one an operator edited.

Timeouts are chosen so the default map passes :func:`~stability.depmap.lint_timeouts`:
every caller waits longer than its callee can spend on its own slowest call, retries
included (e.g. ``ledger.posting`` waits 1200 ms on the hot account, which waits 1000 ms on
the database, and the links wait 1500 ms on ``ledger.posting``).
"""

from __future__ import annotations

from collections.abc import Sequence

from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.depmap_seed_v1 import seed_v1_map
from stability.depmap_seed_v2 import seed_v2_map
from stability.depmap_store import DependencyMapStore

DEFAULT_PAY_ORGS: tuple[str, ...] = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")
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
#: the coupon service (weak): redeem at pay, release at refund and compensation; both are
#: idempotent at the service (on the redemption key), so the guard may retry them once
COUPON_MS, COUPON_RETRIES = 500, 1
COUPON_CALLERS: tuple[str, ...] = ("link.pay", "link.refund", "job.compensation")
_COUPON_FALLBACK = "pay without coupon where the merchant allows; a failed release is logged"
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
        ResourceSpec("coupon", "service", "marketing", 0.99, description="coupons at pay time"),
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
    edges += [
        EdgeSpec(
            caller,
            "coupon",
            "weak",
            COUPON_MS,
            COUPON_RETRIES,
            fallback=_COUPON_FALLBACK,
            owner="marketing",
        )
        for caller in COUPON_CALLERS
    ]
    return edges


def default_map(
    pay_orgs: Sequence[str] = DEFAULT_PAY_ORGS, *, redis_lock: bool = True
) -> DependencyMap:
    """The pay core's dependency map: core links, jobs, channels per pay org, ledger,
    services.

    ``redis_lock=False`` leaves Redis out (the in-process lock needs no dependency).
    """
    orgs = list(dict.fromkeys(pay_orgs))
    return DependencyMap(_resources(orgs, redis_lock), _edges(orgs, redis_lock))


def seed_if_empty(
    store: DependencyMapStore,
    pay_orgs: Sequence[str] = DEFAULT_PAY_ORGS,
    *,
    redis_lock: bool = True,
) -> bool:
    """Write :func:`default_map` when the map tables are empty; True when it wrote it.

    Idempotent: the emptiness check and the write share one transaction.
    """
    return store.replace(default_map(pay_orgs, redis_lock=redis_lock), only_if_empty=True)


def seed_or_upgrade(
    store: DependencyMapStore,
    pay_orgs: Sequence[str] = DEFAULT_PAY_ORGS,
    *,
    redis_lock: bool = True,
) -> str:
    """Bring the stored map to today's :func:`default_map` unless an operator made it.

    Writes when the tables are empty (``"seeded"``) or hold exactly a default seed, of
    an older version or for other pay orgs (``"upgraded"``); a map that differs from
    every default seed was edited and is kept (``"kept"``), as is today's default
    (``"current"``). The check and the write share one transaction.
    """
    want = default_map(pay_orgs, redis_lock=redis_lock)
    outcome = "kept"

    def stale(stored: DependencyMap) -> bool:
        nonlocal outcome
        if not stored.resources and not stored.edges:
            outcome = "seeded"
        elif stored.to_dict() == want.to_dict():
            outcome = "current"
        elif is_default_seed(stored):
            outcome = "upgraded"
        return outcome in ("seeded", "upgraded")

    store.replace_if(want, stale)
    return outcome


def is_default_seed(dmap: DependencyMap) -> bool:
    """True when ``dmap`` is exactly what some version of the seed wrote (for the pay
    orgs and the Redis lock it has): nobody edited it."""
    orgs = [r.name.removeprefix("channel.") for r in dmap.resources if r.kind == "channel"]
    redis = any(r.name == "redis" for r in dmap.resources)
    seen = dmap.to_dict()
    return any(
        build(orgs, redis_lock=redis).to_dict() == seen
        for build in (default_map, seed_v2_map, seed_v1_map)
    )
