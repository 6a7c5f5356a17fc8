"""Live traffic on the dependency map: per edge and per node, from the guard's outcomes.

Every process's guard records each outcome per edge (``paywatch_guard_calls_total`` and
``paywatch_guard_call_latency_seconds``, :mod:`collectors.edge_metrics`); the samplers put
them in the metric store (or Prometheus scrapes them), so the console reads the API's and
the workers' calls together through :class:`~collectors.query.MetricsQuery`.

Figures, over a window:

* ``rps``: calls that reached the dependency (pass, error, timeout) per second;
* ``error_ratio``: (error + timeout) / those calls;
* ``p99_s``: the 99th percentile of their latency;
* ``refused_rps``: calls the guard kept away (blocked, breaker_open, bulkhead_full,
  degraded); ``fallback_rps``: weak calls answered by their fallback.

:func:`health` grades a figure as Kiali does: more than 0.1 % errors is degraded
(``warn``), more than 20 % is failure (``bad``); no calls is ``unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from collectors.edge_metrics import EDGE_CALLS, EDGE_LATENCY
from collectors.query import MetricsQuery

__all__ = [
    "DEGRADED_RATIO",
    "FAILURE_RATIO",
    "LiveTraffic",
    "Traffic",
    "health",
    "live_traffic",
]

FAILED = frozenset({"error", "timeout"})
ANSWERED = frozenset({"pass", "error", "timeout"})
REFUSED = frozenset({"blocked", "breaker_open", "bulkhead_full", "degraded"})
FALLBACK = frozenset({"fallback"})
#: Kiali's default thresholds on the error ratio
DEGRADED_RATIO, FAILURE_RATIO = 0.001, 0.2
OK, WARN, BAD, UNKNOWN = "ok", "warn", "bad", "unknown"
Edge = tuple[str, str]


@dataclass(frozen=True)
class Traffic:
    """One edge's or node's figures over the window (``None``: no calls)."""

    rps: float | None = None
    error_ratio: float | None = None
    p99_s: float | None = None
    refused_rps: float = 0.0
    fallback_rps: float = 0.0

    @property
    def health(self) -> str:
        """ok / warn / bad by :func:`health`."""
        return health(self.error_ratio)


def health(error_ratio: float | None) -> str:
    """``bad`` above 20 % errors, ``warn`` above 0.1 %, ``ok`` below, ``unknown`` idle."""
    if error_ratio is None:
        return UNKNOWN
    if error_ratio > FAILURE_RATIO:
        return BAD
    return WARN if error_ratio > DEGRADED_RATIO else OK


@dataclass(frozen=True)
class LiveTraffic:
    """Per edge ``(caller, resource)`` and per resource (its inbound calls, all callers)."""

    edges: dict[Edge, Traffic]
    nodes: dict[str, Traffic]
    window_s: float
    at: float

    def edge(self, caller: str, resource: str) -> Traffic:
        """The edge's figures (an idle :class:`Traffic` when it had no calls)."""
        return self.edges.get((caller, resource), Traffic())

    def node(self, name: str) -> Traffic:
        """The resource's inbound figures (idle when nobody called it)."""
        return self.nodes.get(name, Traffic())

    def outbound(self, caller: str) -> Traffic:
        """What ``caller`` itself did: its outgoing edges together (a job's own figures)."""
        mine = [t for (c, _), t in self.edges.items() if c == caller]
        return _combine(mine, None)


class _Sums:
    __slots__ = ("answered", "failed", "fallback", "refused")

    def __init__(self) -> None:
        self.answered = self.failed = self.refused = self.fallback = 0.0

    def add(self, outcome: str, rate: float) -> None:
        if outcome in ANSWERED:
            self.answered += rate
            if outcome in FAILED:
                self.failed += rate
        elif outcome in REFUSED:
            self.refused += rate
        elif outcome in FALLBACK:
            self.fallback += rate

    def traffic(self, p99: float | None) -> Traffic:
        if self.answered <= 0:
            return Traffic(None, None, None, self.refused, self.fallback)
        return Traffic(self.answered, self.failed / self.answered, p99, self.refused, self.fallback)


def _combine(parts: Iterable[Traffic], p99: float | None) -> Traffic:
    sums = _Sums()
    worst = None
    for t in parts:
        if t.rps:
            sums.answered += t.rps
            sums.failed += t.rps * (t.error_ratio or 0.0)
        sums.refused += t.refused_rps
        sums.fallback += t.fallback_rps
        if t.p99_s is not None:
            worst = t.p99_s if worst is None else max(worst, t.p99_s)
    return sums.traffic(p99 if p99 is not None else worst)


def _p99(
    query: MetricsQuery, at: float, window: float, by: tuple[str, ...]
) -> Mapping[tuple[str, ...], float | None]:
    rows = query.quantile(0.99, EDGE_LATENCY, window=window, at=at, by=by)
    return {tuple(r.labels.get(k, "") for k in by): r.value for r in rows}


def live_traffic(query: MetricsQuery, at: float, *, window: float = 300.0) -> LiveTraffic:
    """Edges' and nodes' figures over ``window`` seconds before ``at`` (three queries)."""
    by_edge: dict[Edge, _Sums] = {}
    by_node: dict[str, _Sums] = {}
    rows = query.rate(EDGE_CALLS, window=window, at=at, by=("caller", "resource", "outcome"))
    for r in rows:
        caller, resource = r.labels.get("caller", ""), r.labels.get("resource", "")
        outcome, rate = r.labels.get("outcome", ""), r.value or 0.0
        by_edge.setdefault((caller, resource), _Sums()).add(outcome, rate)
        by_node.setdefault(resource, _Sums()).add(outcome, rate)
    edge_p99 = _p99(query, at, window, ("caller", "resource"))
    node_p99 = _p99(query, at, window, ("resource",))
    return LiveTraffic(
        {k: s.traffic(edge_p99.get(k)) for k, s in by_edge.items()},
        {k: s.traffic(node_p99.get((k,))) for k, s in by_node.items()},
        window,
        at,
    )
