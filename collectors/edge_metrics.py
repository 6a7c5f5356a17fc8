"""Per-edge guard metrics, bulkhead gauges and the channel front's per-org families.

The dependency map's edges are (caller, resource) pairs: a bounded set (the map has a few
dozen), so both are labels here. :class:`CoreMetrics` owns one :class:`EdgeMetrics` and
feeds it every guard outcome; the live dependency map reads the families back from the
metric store (:mod:`stability.edge_stats`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .errors import LabelError
from .labels import BoundedLabel

__all__ = [
    "ANSWERED_OUTCOMES",
    "BULKHEAD_IN_FLIGHT",
    "BULKHEAD_LIMIT",
    "EDGE_CALLS",
    "EDGE_LATENCY",
    "FRONT_IN_FLIGHT",
    "FRONT_REFUSED",
    "BulkheadCollector",
    "EdgeMetrics",
]

#: the metric names as sampled (counters with ``_total``)
EDGE_CALLS = "paywatch_guard_calls_total"
EDGE_LATENCY = "paywatch_guard_call_latency_seconds"
BULKHEAD_IN_FLIGHT = "paywatch_bulkhead_in_flight"
BULKHEAD_LIMIT = "paywatch_bulkhead_limit"
FRONT_IN_FLIGHT = "paywatch_channel_front_in_flight"
FRONT_REFUSED = "paywatch_channel_front_refused_total"
#: outcomes of calls that reached the dependency (only these have a meaningful latency)
ANSWERED_OUTCOMES = frozenset({"pass", "error", "timeout"})
#: why the channel front refused a call (a fixed set: a label)
FRONT_REASONS = ("cap", "closed")

BulkheadSource = Callable[[], Mapping[str, tuple[int, int]]]


class BulkheadCollector(Collector):
    """Reads ``source()`` (resource -> (in flight, cap)) at scrape time: the gauges are
    never stale and nothing runs between scrapes."""

    def __init__(self, source: BulkheadSource, resource: BoundedLabel) -> None:
        self.source = source
        self.resource = resource

    def collect(self) -> Iterable[GaugeMetricFamily]:
        flying = GaugeMetricFamily(
            BULKHEAD_IN_FLIGHT, "Guarded calls in flight per resource", labels=["resource"]
        )
        limit = GaugeMetricFamily(
            BULKHEAD_LIMIT, "Bulkhead cap (max concurrent calls) per resource", labels=["resource"]
        )
        for name, (now, cap) in sorted(self.source().items()):
            res = self.resource(name)
            flying.add_metric([res], float(now))
            limit.add_metric([res], float(cap))
        return [flying, limit]


class EdgeMetrics:
    """Guard outcomes and latency per (caller, resource); bulkheads; channel-front slots."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        resource: BoundedLabel,
        outcome: BoundedLabel,
        pay_org: BoundedLabel,
        buckets: tuple[float, ...],
        max_callers: int = 64,
        on_overflow: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self._resource, self._outcome, self._pay_org = resource, outcome, pay_org
        self._caller = BoundedLabel("caller", max_callers, on_overflow=on_overflow)
        self.calls = Counter(
            EDGE_CALLS.removesuffix("_total"),
            "Guarded dependency calls per edge (caller -> resource) by outcome",
            ["caller", "resource", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            EDGE_LATENCY,
            "Latency of guarded calls that reached the dependency (pass, error, timeout)",
            ["caller", "resource"],
            buckets=buckets,
            registry=registry,
        )
        self.front_in_flight = Gauge(
            FRONT_IN_FLIGHT,
            "Channel-front calls in flight per pay org",
            ["pay_org"],
            registry=registry,
        )
        self.front_refused = Counter(
            FRONT_REFUSED.removesuffix("_total"),
            "Channel-front calls refused per pay org: cap (the org's slots are full), closed",
            ["pay_org", "reason"],
            registry=registry,
        )
        self._calls: dict[tuple[str, str, str], Counter] = {}
        self._lat: dict[tuple[str, str], Histogram] = {}
        self._bulkheads: BulkheadCollector | None = None

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        """One guard decision on the edge ``caller -> resource``."""
        key = (caller, resource, outcome)
        child = self._calls.get(key)
        lat = self._lat.get((caller, resource)) if outcome in ANSWERED_OUTCOMES else None
        if child is None or (lat is None and outcome in ANSWERED_OUTCOMES):
            child, lat = self._children(caller, resource, outcome)
        child.inc()
        if lat is not None:
            lat.observe(max(0.0, duration_s))

    def _children(
        self, caller: str, resource: str, outcome: str
    ) -> tuple[Counter, Histogram | None]:
        """The edge's counter (and histogram for an answered call), labels bounded once."""
        pair = (self._caller(caller), self._resource(resource))
        bounded = (*pair, self._outcome(outcome))
        child = self.calls.labels(*bounded)
        if bounded == (caller, resource, outcome):  # cache admitted values only
            self._calls[bounded] = child
        if outcome not in ANSWERED_OUTCOMES:
            return child, None
        lat = self.latency.labels(*pair)
        if pair == (caller, resource):
            self._lat[pair] = lat
        return child, lat

    def track_bulkheads(self, source: BulkheadSource) -> None:
        """Export ``source()`` (resource -> (in flight, cap), e.g. from the guard's
        bulkheads) as ``paywatch_bulkhead_in_flight`` / ``paywatch_bulkhead_limit``.
        Calling it again replaces the source."""
        if self._bulkheads is not None:
            self.registry.unregister(self._bulkheads)
        self._bulkheads = BulkheadCollector(source, self._resource)
        self.registry.register(self._bulkheads)

    def set_front_in_flight(self, pay_org: str, n: int) -> None:
        """The channel front's calls in flight for ``pay_org`` right now."""
        self.front_in_flight.labels(self._pay_org(pay_org)).set(n)

    def front_refusal(self, pay_org: str, reason: str = "cap") -> None:
        """One call the channel front refused for ``pay_org`` (``cap``: its slots were full)."""
        if reason not in FRONT_REASONS:
            raise LabelError(f"unknown refusal reason {reason!r}; one of {FRONT_REASONS}")
        self.front_refused.labels(self._pay_org(pay_org), reason).inc()
