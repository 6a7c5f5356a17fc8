"""Routing decisions and fallbacks per rule and pay org.

:class:`RoutingMetrics` is the router's recorder (``paycore.routing.RoutingRecorder``):
one decision per routed pay (the rule that decided, the org taken) and one fallback per
org skipped on the way (from, to, why). Rules and orgs are bounded sets (the published
rules, the configured orgs), bounded again here so a runaway rule set cannot grow the
series without limit.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

from .labels import BoundedLabel

__all__ = ["ROUTING_DECISIONS", "ROUTING_FALLBACKS", "RoutingMetrics"]

#: the metric names as sampled (counters with ``_total``)
ROUTING_DECISIONS = "paywatch_routing_decisions_total"
ROUTING_FALLBACKS = "paywatch_routing_fallbacks_total"


class RoutingMetrics:
    """Counts routing decisions and fallbacks on ``registry``."""

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
        self.decisions = Counter(
            ROUTING_DECISIONS.removesuffix("_total"),
            "Routed pays by the rule that decided and the pay org taken",
            ["rule", "pay_org"],
            registry=registry,
        )
        self.fallbacks = Counter(
            ROUTING_FALLBACKS.removesuffix("_total"),
            "Pay orgs skipped by routing (switch degraded, breaker open, limit, bulkhead "
            "full, or refused at the send) and the org taken instead",
            ["rule", "from_org", "to_org", "reason"],
            registry=registry,
        )
        # label tuple -> child: skips prometheus_client's per-call label validation
        self._decided: dict[tuple[str, str], Counter] = {}
        self._fell: dict[tuple[str, str, str, str], Counter] = {}

    def decided(self, rule: str, org: str) -> None:
        """One pay routed by ``rule`` to ``org``."""
        key = (rule, org)
        child = self._decided.get(key)
        if child is None:
            child = self.decisions.labels(self._rule(rule), self._org(org))
            self._decided[key] = child
        child.inc()

    def fell_back(self, rule: str, from_org: str, to_org: str, reason: str) -> None:
        """``from_org`` refused (``reason``) and the pay went on to ``to_org``."""
        key = (rule, from_org, to_org, reason)
        child = self._fell.get(key)
        if child is None:
            child = self.fallbacks.labels(
                self._rule(rule), self._org(from_org), self._org(to_org), self._reason(reason)
            )
            self._fell[key] = child
        child.inc()

    def decision_count(self, rule: str, org: str) -> float:
        """The decisions counted for ``(rule, org)`` (0 when none)."""
        value = self.registry.get_sample_value(
            ROUTING_DECISIONS, {"rule": self._rule(rule), "pay_org": self._org(org)}
        )
        return value or 0.0

    def fallback_count(self, rule: str, from_org: str, to_org: str, reason: str) -> float:
        """The fallbacks counted for ``(rule, from_org, to_org, reason)`` (0 when none)."""
        labels = {
            "rule": self._rule(rule),
            "from_org": self._org(from_org),
            "to_org": self._org(to_org),
            "reason": self._reason(reason),
        }
        return self.registry.get_sample_value(ROUTING_FALLBACKS, labels) or 0.0
