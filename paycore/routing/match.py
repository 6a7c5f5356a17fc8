"""Matching a payment against the rules, and the seeded weighted pick.

A :class:`CompiledRules` is built once per rule set version (the router caches it): the
enabled rules in priority order (ties: the order published), so :meth:`decide` is a scan
of plain tuples with no allocation but the answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from .model import DEFAULT_RULE, RouteDecision, RouteQuery, RoutingRule


def matches(rule: RoutingRule, q: RouteQuery) -> bool:
    """True when every field the rule names equals the query's (None = any) and the
    amount is within its inclusive bounds. A disabled rule matches nothing."""
    return (
        rule.enabled
        and (rule.merchant_id is None or rule.merchant_id == q.merchant_id)
        and (rule.order_type is None or rule.order_type == q.order_type)
        and (rule.sub_type is None or rule.sub_type == q.sub_type)
        and (rule.currency is None or rule.currency == q.currency)
        and (rule.user_segment is None or rule.user_segment == q.user_segment)
        and (rule.amount_min is None or q.amount >= rule.amount_min)
        and (rule.amount_max is None or q.amount <= rule.amount_max)
    )


def weighted_pick(targets: Iterable[tuple[str, int]], rng: random.Random) -> tuple[str, ...]:
    """The targets ordered for trying: one picked with probability weight/total (weights
    above 0 only), then the others by weight, highest first (ties: listed order)."""
    targets = list(targets)
    total = sum(w for _, w in targets if w > 0)
    if total <= 0:
        return tuple(o for o, _ in targets)
    point = rng.random() * total
    picked = targets[-1][0]
    for org, weight in targets:
        if weight <= 0:
            continue
        if point < weight:
            picked = org
            break
        point -= weight
    rest = sorted((t for t in targets if t[0] != picked), key=lambda t: -t[1])
    return (picked, *(o for o, _ in rest))


def candidates_of(
    rule: RoutingRule, granted: frozenset[str], rng: random.Random
) -> tuple[str, ...]:
    """The rule's orgs to try, granted ones only, each once: the weighted pick among the
    granted targets, the other targets by weight, then the fallback in order."""
    targets = [(t.pay_org_no, t.weight) for t in rule.targets if t.pay_org_no in granted]
    if targets and not any(w > 0 for _, w in targets):
        # the weighted targets are not granted: the standby targets keep their listed order
        ordered: tuple[str, ...] = tuple(o for o, _ in targets)
    else:
        ordered = weighted_pick(targets, rng) if targets else ()
    seen = set(ordered)
    tail = []
    for org in rule.fallback:
        if org in granted and org not in seen:
            seen.add(org)
            tail.append(org)
    return ordered + tuple(tail)


class CompiledRules:
    """One rule set's enabled rules in the order they are tried."""

    __slots__ = ("rules", "version")

    def __init__(self, rules: Iterable[RoutingRule], version: int = 0) -> None:
        indexed = sorted(
            enumerate(r for r in rules if r.enabled), key=lambda p: (p[1].priority, p[0])
        )
        self.rules: tuple[RoutingRule, ...] = tuple(r for _, r in indexed)
        self.version = version

    def decide(self, q: RouteQuery, rng: random.Random) -> RouteDecision:
        """The first matching rule with at least one granted org decides; a rule whose
        orgs the merchant holds none of is passed over (it cannot route this merchant).
        No rule: the trade's own pay org, ``rule="default"``."""
        for rule in self.rules:
            if matches(rule, q):
                candidates = candidates_of(rule, q.granted, rng)
                if candidates:
                    return RouteDecision(rule.name, candidates)
        return RouteDecision(DEFAULT_RULE, (q.default_org,))
