"""Matching a payment against the rules, and the seeded weighted pick.

A :class:`CompiledRules` is built once per rule set version (the router caches it): the
enabled rules in priority order (ties: the order published). It works out, once per
payment context and set of granted orgs, which rules can match and the candidate order
of each possible pick, so deciding a pay is a dict lookup, an amount check and one draw.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from ..money import MAX_AMOUNT
from .model import DEFAULT_RULE, RouteDecision, RouteQuery, RoutingRule

Weighted = Sequence[tuple[str, int]]


def matches_context(rule: RoutingRule, q: RouteQuery) -> bool:
    """True when the rule is enabled and every context field it names equals the
    query's (None = any); the amount is not looked at."""
    return (
        rule.enabled
        and (rule.merchant_id is None or rule.merchant_id == q.merchant_id)
        and (rule.order_type is None or rule.order_type == q.order_type)
        and (rule.sub_type is None or rule.sub_type == q.sub_type)
        and (rule.currency is None or rule.currency == q.currency)
        and (rule.user_segment is None or rule.user_segment == q.user_segment)
    )


def in_amount(amount: int, lo: int | None, hi: int | None) -> bool:
    """``lo <= amount <= hi``, a missing bound being no bound."""
    return (lo is None or amount >= lo) and (hi is None or amount <= hi)


def matches(rule: RoutingRule, q: RouteQuery) -> bool:
    """True when the rule matches the query's context and its amount is within the
    rule's inclusive bounds. A disabled rule matches nothing."""
    return matches_context(rule, q) and in_amount(q.amount, rule.amount_min, rule.amount_max)


def draw(weighted: Weighted, rng: random.Random, total: int | None = None) -> str:
    """One org of ``weighted`` (weights above 0), with probability weight/total
    (``total``: their sum, when known)."""
    point = rng.random() * (sum(w for _, w in weighted) if total is None else total)
    for org, weight in weighted:
        if point < weight:
            return org
        point -= weight
    return weighted[-1][0]


def ordered(targets: Weighted, picked: str | None) -> tuple[str, ...]:
    """``picked`` first, then the other targets by weight, highest first (ties: listed
    order); no pick: the listed order."""
    if picked is None:
        return tuple(o for o, _ in targets)
    rest = sorted((t for t in targets if t[0] != picked), key=lambda t: -t[1])
    return (picked, *(o for o, _ in rest))


def weighted_pick(targets: Iterable[tuple[str, int]], rng: random.Random) -> tuple[str, ...]:
    """The targets ordered for trying: one picked with probability weight/total (weights
    above 0 only), then the others by weight, highest first (ties: listed order)."""
    targets = list(targets)
    weighted = [(o, w) for o, w in targets if w > 0]
    return ordered(targets, draw(weighted, rng) if weighted else None)


class _Plan:
    """One rule's candidates for one set of granted orgs, worked out once: the granted
    targets with a weight, and per possible pick the whole ordered tuple (the pick, the
    other targets by weight, the granted fallback)."""

    __slots__ = ("by_pick", "hi", "lo", "name", "total", "weighted")

    def __init__(self, rule: RoutingRule, granted: frozenset[str]) -> None:
        self.name = rule.name
        # the amount bounds as plain ints: one chained comparison per plan on the pay link
        self.lo = rule.amount_min if rule.amount_min is not None else -1
        self.hi = rule.amount_max if rule.amount_max is not None else MAX_AMOUNT + 1
        targets = [(t.pay_org_no, t.weight) for t in rule.targets if t.pay_org_no in granted]
        self.weighted = tuple((o, w) for o, w in targets if w > 0)
        self.total = sum(w for _, w in self.weighted)
        seen = {o for o, _ in targets}
        tail = tuple(o for o in dict.fromkeys(rule.fallback) if o in granted and o not in seen)
        picks: list[str | None] = [o for o, _ in self.weighted] or [None]
        # the decisions are built once: deciding a pay allocates nothing
        self.by_pick = {p: RouteDecision(rule.name, ordered(targets, p) + tail) for p in picks}

    @property
    def empty(self) -> bool:
        return not any(d.candidates for d in self.by_pick.values())

    def decision(self, rng: random.Random) -> RouteDecision:
        if not self.weighted:
            # the weighted targets are not granted: standby targets keep their listed order
            return self.by_pick[None]
        return self.by_pick[draw(self.weighted, rng, self.total)]


def candidates_of(
    rule: RoutingRule, granted: frozenset[str], rng: random.Random
) -> tuple[str, ...]:
    """The rule's orgs to try, granted ones only, each once: the weighted pick among the
    granted targets, the other targets by weight, then the fallback in order."""
    return _Plan(rule, granted).decision(rng).candidates


class CompiledRules:
    """One rule set's enabled rules in the order they are tried; the plans per context
    are cached (bounded: the cache starts over when full)."""

    __slots__ = ("_cache", "rules", "version")
    MAX_CACHED = 10_000

    def __init__(self, rules: Iterable[RoutingRule], version: int = 0) -> None:
        indexed = sorted(
            enumerate(r for r in rules if r.enabled), key=lambda p: (p[1].priority, p[0])
        )
        self.rules: tuple[RoutingRule, ...] = tuple(r for _, r in indexed)
        self.version = version
        self._cache: dict[tuple[object, ...], tuple[_Plan, ...]] = {}

    def _plans(self, key: tuple[object, ...], q: RouteQuery) -> tuple[_Plan, ...]:
        """The plans of the rules matching ``q``'s context that can route one of its
        granted orgs, in the order they are tried."""
        plans = (_Plan(r, q.granted) for r in self.rules if matches_context(r, q))
        found = tuple(p for p in plans if not p.empty)
        if len(self._cache) >= self.MAX_CACHED:
            self._cache.clear()
        self._cache[key] = found
        return found

    def decide(self, q: RouteQuery, rng: random.Random) -> RouteDecision:
        """The first matching rule with at least one granted org decides; a rule whose
        orgs the merchant holds none of is passed over (it cannot route this merchant).
        No rule: the trade's own pay org, ``rule="default"``."""
        key = (q.merchant_id, q.order_type, q.sub_type, q.currency, q.user_segment, q.granted)
        plans = self._cache.get(key)
        if plans is None:
            plans = self._plans(key, q)
        amount = q.amount
        for plan in plans:
            if plan.lo <= amount <= plan.hi:
                return plan.decision(rng)
        return RouteDecision(DEFAULT_RULE, (q.default_org,))
