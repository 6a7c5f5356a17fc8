"""Declarative metric queries: evaluated through :class:`MetricsQuery`, rendered as PromQL.

A :class:`QuerySpec` is one of four kinds, mirroring the query interface:

* ``rate``     – per-second increase of a counter, summed per ``by`` group;
* ``ratio``    – increase(numerator) / increase(denominator) per group;
* ``quantile`` – the ``q``-quantile of a histogram (its ``_bucket`` series);
* ``latest``   – the newest value of a gauge per group (``window`` = maximum age).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from collectors.query import MetricsQuery, Series

from .errors import RuleError
from .model import LABEL_NAME

KINDS = ("rate", "ratio", "quantile", "latest")


def duration(seconds: float) -> str:
    """A Prometheus duration: ``3600`` → ``"1h"``, ``90`` → ``"90s"``, ``259200`` → ``"3d"``."""
    if seconds < 0 or not math.isfinite(seconds):
        raise RuleError(f"invalid duration {seconds!r}")
    if seconds != int(seconds):
        return f"{int(round(seconds * 1000))}ms"
    s = int(seconds)
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def number(x: float) -> str:
    """A float as PromQL/YAML-friendly text (no float noise: 0.0144, not 0.014400000000000001)."""
    return f"{x:.10g}"


def selector(metric: str, match: Mapping[str, str] | None = None) -> str:
    """``metric{a="x",b="y"}`` with label values escaped for PromQL."""
    if not match:
        return metric
    parts = []
    for key, val in match.items():
        esc = val.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{key}="{esc}"')
    return metric + "{" + ",".join(parts) + "}"


def sum_by(by: tuple[str, ...], inner: str, extra: tuple[str, ...] = (), agg: str = "sum") -> str:
    labels = (*extra, *by)
    return f"{agg} by ({', '.join(labels)}) ({inner})" if labels else f"{agg}({inner})"


def on(by: tuple[str, ...]) -> str:
    return f"on({', '.join(by)})"


@dataclass(frozen=True)
class QuerySpec:
    """A declarative query; see the module docstring for the kinds."""

    kind: str
    metric: str
    match: dict[str, str] = field(default_factory=dict)
    by: tuple[str, ...] = ()
    window: float = 300.0
    denominator: str | None = None  # ratio: defaults to ``metric``
    match_den: dict[str, str] | None = None  # ratio: defaults to ``match``
    q: float = 0.99  # quantile
    #: latest, in PromQL only: how replicas' copies of a gauge combine. Business gauges are
    #: read from the database, so every replica exposes the same value: ``max``, not ``sum``.
    agg: str = "max"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RuleError(f"query kind must be one of {KINDS}, not {self.kind!r}")
        if not LABEL_NAME.fullmatch(self.metric):
            raise RuleError(f"invalid metric name {self.metric!r}")
        if not self.window > 0:
            raise RuleError("query window must be positive")
        if self.agg not in ("sum", "max", "min", "avg"):
            raise RuleError(f"agg must be sum, max, min or avg, not {self.agg!r}")
        if not 0 < self.q < 1:
            raise RuleError("quantile q must be between 0 and 1")
        for name in (*self.match, *(self.match_den or {}), *self.by):
            if not LABEL_NAME.fullmatch(name):
                raise RuleError(f"invalid label name {name!r}")

    def evaluate(self, query: MetricsQuery, at: float) -> list[Series]:
        """Run the query at ``at``."""
        if self.kind == "rate":
            return query.rate(self.metric, window=self.window, at=at, match=self.match, by=self.by)
        if self.kind == "ratio":
            return query.ratio(
                self.metric,
                self.denominator or self.metric,
                window=self.window,
                at=at,
                match_num=self.match,
                match_den=self.match if self.match_den is None else self.match_den,
                by=self.by,
            )
        if self.kind == "quantile":
            return query.quantile(
                self.q, self.metric, window=self.window, at=at, match=self.match, by=self.by
            )
        return query.latest(
            self.metric, at=at, match=self.match, by=self.by, max_age=self.window, agg=self.agg
        )

    def present(self, query: MetricsQuery, at: float, window: float) -> bool:
        """Whether the underlying series had any sample in the ``window`` before ``at``."""
        metric, match = self.base_selector()
        if self.kind == "latest":
            found = query.latest(metric, at=at, match=match, max_age=window)
        else:
            found = query.rate(metric, window=window, at=at, match=match)
        return any(s.value is not None for s in found)

    def base_selector(self) -> tuple[str, dict[str, str]]:
        """The metric and matchers whose presence means "there is data"."""
        if self.kind == "ratio":
            den = self.match if self.match_den is None else self.match_den
            return self.denominator or self.metric, dict(den)
        if self.kind == "quantile":
            return self.metric + "_bucket", dict(self.match)
        return self.metric, dict(self.match)

    def promql(self) -> str:
        """The equivalent PromQL expression."""
        w = duration(self.window)
        if self.kind == "rate":
            return sum_by(self.by, f"rate({selector(self.metric, self.match)}[{w}])")
        if self.kind == "ratio":
            den = self.match if self.match_den is None else self.match_den
            num = sum_by(self.by, f"rate({selector(self.metric, self.match)}[{w}])")
            dsel = selector(self.denominator or self.metric, den)
            return f"({num} / {sum_by(self.by, f'rate({dsel}[{w}])')})"
        if self.kind == "quantile":
            inner = f"rate({selector(self.metric + '_bucket', self.match)}[{w}])"
            return f"histogram_quantile({number(self.q)}, {sum_by(self.by, inner, ('le',))})"
        return sum_by(self.by, selector(self.metric, self.match), agg=self.agg)

    def absent_promql(self, window: float) -> str:
        metric, match = self.base_selector()
        return f"absent_over_time({selector(metric, match)}[{duration(window)}])"


@dataclass(frozen=True)
class MinTraffic:
    """Minimum-traffic guard: the rule is not evaluated while ``spec`` < ``min_rps``.

    ``spec`` is a ``rate`` query; with ``by`` labels the guard applies per group (a rule
    series is guarded by the traffic series with the same values of those labels).
    """

    spec: QuerySpec
    min_rps: float

    def __post_init__(self) -> None:
        if self.spec.kind != "rate":
            raise RuleError("a min-traffic guard needs a rate query")
        if not self.min_rps >= 0:
            raise RuleError("min_rps must be >= 0")

    def passing(self, query: MetricsQuery, at: float) -> set[tuple[str, ...]]:
        """The groups (values of ``spec.by``) whose traffic reaches ``min_rps``."""
        totals: dict[tuple[str, ...], float] = {}
        for s in self.spec.evaluate(query, at):
            if s.value is not None:
                key = self.key(s.labels)
                totals[key] = totals.get(key, 0.0) + s.value
        return {k for k, v in totals.items() if v >= self.min_rps}

    def key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(labels.get(b, "") for b in self.spec.by)

    def promql_guard(self) -> str:
        """``and on(<by>) <traffic> >= X``, appended to a rule expression."""
        return f"and {on(self.spec.by)} {self.spec.promql()} >= {number(self.min_rps)}"
