"""The rule interface and the helpers rule kinds share."""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from collectors.query import MetricsQuery, Series

from .errors import RuleError
from .model import LABEL_NAME, Instance, check_labels, render
from .spec import duration

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
QueryFn = Callable[[MetricsQuery, float], list[Series]]


class BurnWindow(NamedTuple):
    """One window pair: fire when both windows burn faster than ``factor``."""

    long_s: float
    short_s: float
    factor: float
    severity: str


#: SRE workbook, 30-day SLO: 2% of the budget in 1h, 5% in 6h (pages), 10% in 3d (ticket)
DEFAULT_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow(3600, 300, 14.4, "page"),
    BurnWindow(21600, 1800, 6.0, "page"),
    BurnWindow(259200, 21600, 1.0, "ticket"),
)


class Rule(ABC):
    """What the engine and the exporter need from a rule."""

    name: str

    @abstractmethod
    def alert_names(self) -> tuple[str, ...]:
        """Every alert name this rule can produce (its own, and ``<name>_absent``)."""

    @abstractmethod
    def evaluate(self, query: MetricsQuery, at: float) -> list[Instance]:
        """The instances active at ``at``."""

    @abstractmethod
    def to_prometheus(self) -> list[dict[str, Any]]:
        """The rule as Prometheus alerting rules (``alert``/``expr``/``for``/...)."""


def validate_common(rule: Any) -> None:
    if not isinstance(rule.name, str) or not LABEL_NAME.fullmatch(rule.name):
        raise RuleError(f"rule name must match {LABEL_NAME.pattern}: {rule.name!r}")
    if not rule.for_s >= 0:
        raise RuleError(f"{rule.name}: for_s must be >= 0")
    if rule.absent_for_s is not None and not rule.absent_for_s > 0:
        raise RuleError(f"{rule.name}: absent_for_s must be positive")
    check_labels(rule.labels, rule.name)


def instance(
    rule: Any,
    name: str,
    severity: str,
    labels: Mapping[str, str],
    value: float | None,
    for_s: float,
    extra: Mapping[str, str] | None = None,
) -> Instance:
    full = {**labels, **rule.labels, "alertname": name, "severity": severity}
    notes = {k: render(v, full, value) for k, v in rule.annotations.items()}
    notes.update(extra or {})
    return Instance(name, full, severity, value, for_s, notes)


def absent_instance(rule: Any, match: Mapping[str, str]) -> Instance:
    return instance(
        rule,
        f"{rule.name}_absent",
        rule.absent_severity,
        dict(match),
        None,
        0.0,
        {"summary": f"no data for {rule.name} for {duration(rule.absent_for_s)}"},
    )


def absent_export(rule: Any, expr: str) -> dict[str, Any]:
    return {
        "alert": f"{rule.name}_absent",
        "expr": expr,
        "labels": {"severity": rule.absent_severity, **rule.labels},
        "annotations": {"summary": f"no data for {rule.name} for {duration(rule.absent_for_s)}"},
    }


def with_for(inst: Instance, for_s: float) -> Instance:
    return Instance(inst.rule, inst.labels, inst.severity, inst.value, for_s, inst.annotations)
