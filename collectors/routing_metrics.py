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
        registry.register(self)

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


def _value(counter: itertools.count[int]) -> int:
    return int(repr(counter)[6:-1]) - 1  # count(n) has handed out n - 1 values
