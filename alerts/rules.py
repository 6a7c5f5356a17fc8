"""Alert rules: thresholds and SLO burn rates (multi-window, multi-burn-rate).

Every rule evaluates to the :class:`~alerts.model.Instance` list that is active at the
evaluation time; the engine turns those into lifecycles. Each rule also renders
itself as Prometheus alerting rules (:meth:`Rule.to_prometheus`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collectors.query import MetricsQuery

from .base import (
    DEFAULT_WINDOWS,
    OPS,
    BurnWindow,
    QueryFn,
    Rule,
    absent_export,
    absent_instance,
    instance,
    validate_common,
    with_for,
)
from .burnrate import BurnRateRule
from .errors import RuleError
from .model import Instance
from .spec import MinTraffic, QuerySpec, duration, number

__all__ = [
    "DEFAULT_WINDOWS",
    "BurnRateRule",
    "BurnWindow",
    "MinTraffic",
    "QuerySpec",
    "Rule",
    "ThresholdRule",
]


@dataclass(frozen=True)
class ThresholdRule(Rule):
    """Fires when a query's value compares ``op`` ``threshold`` for ``for_s`` seconds.

    ``query`` is a :class:`QuerySpec` or a callable ``(MetricsQuery, at) -> [Series]``
    (then ``promql`` is needed for export). ``min_traffic`` skips evaluation while the
    traffic is too low; ``absent_for_s`` adds a ``<name>_absent`` alert that fires when
    there was no data at all for that long.
    """

    name: str
    query: QuerySpec | QueryFn
    op: str
    threshold: float
    for_s: float = 0.0
    severity: str = "ticket"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    promql: str | None = None
    min_traffic: MinTraffic | None = None
    absent_for_s: float | None = None
    absent_severity: str = "ticket"
    absent_promql: str | None = None

    def __post_init__(self) -> None:
        validate_common(self)
        if self.op not in OPS:
            raise RuleError(f"{self.name}: op must be one of {sorted(OPS)}")
        if not self.severity or not self.absent_severity:
            raise RuleError(f"{self.name}: severity is required")

    def alert_names(self) -> tuple[str, ...]:
        return (self.name,) + ((f"{self.name}_absent",) if self.absent_for_s else ())

    def evaluate(self, query: MetricsQuery, at: float) -> list[Instance]:
        spec: QuerySpec | None = None
        if isinstance(self.query, QuerySpec):
            spec = self.query
            series = spec.evaluate(query, at)
        else:
            series = self.query(query, at)
        out: list[Instance] = []
        if self.absent_for_s:
            if spec is not None:
                missing = not spec.present(query, at, self.absent_for_s)
            else:
                missing = not any(s.value is not None for s in series)
            if missing:
                inst = absent_instance(self, spec.base_selector()[1] if spec else {})
                # a callable has no look-back of its own: "no data for that long" is a for
                out.append(inst if spec else with_for(inst, self.absent_for_s))
        passing = self.min_traffic.passing(query, at) if self.min_traffic else None
        compare = OPS[self.op]
        for s in series:
            if s.value is None or not compare(s.value, self.threshold):
                continue
            if passing is not None and self.min_traffic.key(s.labels) not in passing:  # type: ignore[union-attr]
                continue
            out.append(instance(self, self.name, self.severity, s.labels, s.value, self.for_s))
        return out

    def expr(self) -> str:
        if self.promql:
            base = self.promql
        elif isinstance(self.query, QuerySpec):
            base = f"{self.query.promql()} {self.op} {number(self.threshold)}"
        else:
            raise RuleError(f"{self.name}: a callable query needs promql= to be exported")
        return f"({base}) {self.min_traffic.promql_guard()}" if self.min_traffic else base

    def to_prometheus(self) -> list[dict[str, Any]]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr()}
        if self.for_s:
            rule["for"] = duration(self.for_s)
        rule["labels"] = {"severity": self.severity, **self.labels}
        if self.annotations:
            rule["annotations"] = dict(self.annotations)
        out = [rule]
        if self.absent_for_s:
            if self.absent_promql:
                expr = self.absent_promql
            elif isinstance(self.query, QuerySpec):
                expr = self.query.absent_promql(self.absent_for_s)
            else:
                raise RuleError(f"{self.name}: a callable query needs absent_promql= to export")
            out.append(absent_export(self, expr))
        return out
