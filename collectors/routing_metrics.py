"""Routing decisions and fallbacks per rule and pay org.

:class:`RoutingMetrics` is the router's recorder (``paycore.routing.RoutingRecorder``):
one decision per routed pay (the rule that decided, the org taken) and one fallback per
org skipped on the way (from, to, why). Rules and orgs are bounded sets (the published
rules, the configured orgs), bounded again here so a runaway rule set cannot grow the
series without limit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from .labels import BoundedLabel

__all__ = ["ROUTING_DECISIONS", "ROUTING_FALLBACKS", "RoutingMetrics"]

#: the metric names as sampled (counters with ``_total``)
ROUTING_DECISIONS = "paywatch_routing_decisions_total"
ROUTING_FALLBACKS = "paywatch_routing_fallbacks_total"


class RoutingMetrics(Collector):
    """Counts routing decisions and fallbacks, exposed on ``registry`` at scrape time.

    Counting is on the pay link, once per routed pay: an ``itertools.count`` per label
    set (atomic in CPython, no lock) rather than a prometheus_client child, read back
    when the registry is collected."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_rules: int = 64,
        max_orgs: int = 32,
        max_reasons: int = 16,
        on_overflow: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self._rule = BoundedLabel("rule", max_rules, on_overflow=on_overflow)
        self._org = BoundedLabel("pay_org", max_orgs, on_overflow=on_overflow)
        self._reason = BoundedLabel("reason", max_reasons, on_overflow=on_overflow)
        # raw label tuple -> (bounded labels, counter)
        self._decided: dict[tuple[str, ...], tuple[tuple[str, ...], itertools.count[int]]] = {}
        self._fell: dict[tuple[str, ...], tuple[tuple[str, ...], itertools.count[int]]] = {}
        #: ``.labels(*values)`` makes a series (at 0 until counted), as prometheus_client's
        #: families do: a rate needs a sample from before the first event
        self.decisions = _Family(self._decided, (self._rule, self._org))
        self.fallbacks = _Family(self._fell, (self._rule, self._org, self._org, self._reason))
        registry.register(self)

    def prepare(self, rule: str, org: str) -> None:
        """Make the decision series of ``(rule, org)`` at 0 (the router does for every
        rule and org of a rule set it takes up)."""
        self.decisions.labels(rule, org)

    def decided(self, rule: str, org: str) -> None:
        """One pay routed by ``rule`` to ``org``."""
        key = (rule, org)
        entry = self._decided.get(key)
        if entry is None:
            labels = (self._rule(rule), self._org(org))
            entry = self._decided.setdefault(key, (labels, itertools.count(1)))
        next(entry[1])

    def fell_back(self, rule: str, from_org: str, to_org: str, reason: str) -> None:
        """``from_org`` refused (``reason``) and the pay went on to ``to_org``."""
        key = (rule, from_org, to_org, reason)
        entry = self._fell.get(key)
        if entry is None:
            labels = (
                self._rule(rule),
                self._org(from_org),
                self._org(to_org),
                self._reason(reason),
            )
            entry = self._fell.setdefault(key, (labels, itertools.count(1)))
        next(entry[1])

    def collect(self) -> Iterable[CounterMetricFamily]:
        decisions = CounterMetricFamily(
            ROUTING_DECISIONS.removesuffix("_total"),
            "Routed pays by the rule that decided and the pay org taken",
            labels=["rule", "pay_org"],
        )
        fallbacks = CounterMetricFamily(
            ROUTING_FALLBACKS.removesuffix("_total"),
            "Pay orgs skipped by routing (switch degraded, breaker open, limit, bulkhead "
            "full, or refused at the send) and the org taken instead",
            labels=["rule", "from_org", "to_org", "reason"],
        )
        for family, entries in ((decisions, self._decided), (fallbacks, self._fell)):
            summed: dict[tuple[str, ...], int] = {}
            for labels, counter in list(entries.values()):  # "other" may gather several
                summed[labels] = summed.get(labels, 0) + _value(counter)
            for labels, n in sorted(summed.items()):
                family.add_metric(list(labels), float(n))
        return [decisions, fallbacks]

    def decision_count(self, rule: str, org: str) -> float:
        """The decisions counted for ``(rule, org)`` (0 when none)."""
        labels = {"rule": self._rule(rule), "pay_org": self._org(org)}
        return self.registry.get_sample_value(ROUTING_DECISIONS, labels) or 0.0

    def fallback_count(self, rule: str, from_org: str, to_org: str, reason: str) -> float:
        """The fallbacks counted for ``(rule, from_org, to_org, reason)`` (0 when none)."""
        labels = {
            "rule": self._rule(rule),
            "from_org": self._org(from_org),
            "to_org": self._org(to_org),
            "reason": self._reason(reason),
        }
        return self.registry.get_sample_value(ROUTING_FALLBACKS, labels) or 0.0


class _Child:
    __slots__ = ("_counter",)

    def __init__(self, counter: itertools.count[int]) -> None:
        self._counter = counter

    def inc(self, amount: int = 1) -> None:
        for _ in range(amount):
            next(self._counter)


class _Family:
    """One metric's label sets, as far as callers outside the pay link need them."""

    def __init__(
        self,
        entries: dict[tuple[str, ...], tuple[tuple[str, ...], itertools.count[int]]],
        bounds: tuple[BoundedLabel, ...],
    ) -> None:
        self._entries, self._bounds = entries, bounds

    def labels(self, *values: str) -> _Child:
        """The series of ``values`` (raw label values, in the metric's label order)."""
        if len(values) != len(self._bounds):
            raise ValueError(f"{len(self._bounds)} label values expected, got {len(values)}")
        entry = self._entries.get(values)
        if entry is None:
            labels = tuple(b(v) for b, v in zip(self._bounds, values, strict=True))
            entry = self._entries.setdefault(values, (labels, itertools.count(1)))
        return _Child(entry[1])


def _value(counter: itertools.count[int]) -> int:
    return int(repr(counter)[6:-1]) - 1  # count(n) has handed out n - 1 values
