"""The first default seed of the dependency map (before issue #20), frozen.

:func:`stability.depmap_seed.seed_or_upgrade` compares a stored map with it: a database
still holding exactly this seed was never edited and is brought to today's default. It
had ``coupon`` (never called by any code), ``link.callback -> notification`` (delivery is
``link.notify``'s) and no jobs. Never change this module: it is what was written.
"""

from __future__ import annotations

from collections.abc import Sequence

from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec

__all__ = ["seed_v1_map"]

_LINKS: tuple[str, ...] = (
    "link.trade_create",
    "link.pay",
    "link.refund",
    "link.callback",
    "link.notify",
)

# the timeouts (ms) that seed wrote
DB_MS, REDIS_MS, CHANNEL_MS, LEDGER_MS, HOT_ACCOUNT_MS = 1000, 200, 3000, 1500, 1200
NOTIFY_MS, COUPON_MS, RISK_MS = 500, 300, 300


def _resources(pay_orgs: Sequence[str], redis_lock: bool) -> list[ResourceSpec]:
    links = [
        ResourceSpec(name, "link", "pay-core", 0.9999, True, f"core link {name[5:]}")
        for name in _LINKS
    ]
    channels = [
        ResourceSpec(
            f"channel.{org}", "channel", "channel-team", 0.999, False, f"pay organisation {org}"
        )
        for org in pay_orgs
    ]
    others = [
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
        ResourceSpec("coupon", "service", "marketing", 0.99, description="coupons at pay time"),
        ResourceSpec("risk", "service", "risk-team", 0.999, description="risk decision"),
    ]
    if redis_lock:
        others.append(ResourceSpec("redis", "cache", "sre", 0.999, description="order locks"))
    return [*links, *channels, *others]


def _edges(pay_orgs: Sequence[str], redis_lock: bool) -> list[EdgeSpec]:
    edges = [EdgeSpec(link, "database", "strong", DB_MS, owner="pay-core") for link in _LINKS]
    for link in ("link.pay", "link.refund"):
        edges += [
            EdgeSpec(link, f"channel.{org}", "strong", CHANNEL_MS, 0, owner="channel-team")
            for org in pay_orgs
        ]
        if redis_lock:
            edges.append(EdgeSpec(link, "redis", "strong", REDIS_MS, 1, owner="sre"))
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
            fallback="buffer postings for summary posting",
            owner="pay-core",
        ),
        EdgeSpec("ledger.hot_account", "database", "strong", DB_MS, owner="pay-core"),
        EdgeSpec(
            "link.callback",
            "notification",
            "weak",
            NOTIFY_MS,
            fallback="outbox: deliver later",
            owner="pay-core",
        ),
        EdgeSpec(
            "link.pay",
            "coupon",
            "weak",
            COUPON_MS,
            fallback="pay without coupon",
            owner="marketing",
        ),
    ]
    risk_fallback = "allow below risk threshold; review later"
    edges += [
        EdgeSpec(link, "risk", "weak", RISK_MS, fallback=risk_fallback, owner="risk-team")
        for link in ("link.pay", "link.trade_create")
    ]
    return edges


def seed_v1_map(pay_orgs: Sequence[str], *, redis_lock: bool = True) -> DependencyMap:
    """The map the first seed wrote for ``pay_orgs``."""
    orgs = list(dict.fromkeys(pay_orgs))
    return DependencyMap(_resources(orgs, redis_lock), _edges(orgs, redis_lock))
