"""SLO burn-rate rules: multiwindow, multi-burn-rate alerts (SRE workbook, chapter 5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from collectors.query import MetricsQuery

from .base import (
    DEFAULT_WINDOWS,
    BurnWindow,
    Rule,
    absent_export,
    absent_instance,
    instance,
    validate_common,
)
from .errors import RuleError
from .model import Instance
from .slo_spec import LINK_REQUESTS, STEP_OUTCOMES, Outcomes
from .spec import duration, number, on, selector, sum_by


def outcome_selector(metric: str, match: Mapping[str, str], outcomes: tuple[str, ...]) -> str:
    """``metric{match, outcome=~"a|b"}``: the series of those outcomes (label values are
    checked against the fixed outcome sets by the spec, so none needs regex escaping)."""
    inner = selector(metric, match)
    one = f'outcome=~"{"|".join(sorted(outcomes))}"'
    return f"{inner[:-1]},{one}}}" if inner.endswith("}") else f"{inner}{{{one}}}"


@dataclass(frozen=True)
class BurnRateRule(Rule):
    """SLO burn-rate alert over a request counter (SRE workbook, multiwindow multi-burn-rate).

    The error ratio is ``bad / (good + bad)`` over ``metric{match}``, split by its
    ``outcome`` label as ``outcomes`` says (from the SLO spec; other outcomes, such as
    business refusals, count as neither). For each window pair the rule fires when *both* the
    long and the short window's error ratio exceed ``factor × (1 − slo)``; the instance
    carries the pair's severity (one instance per severity and ``by`` group), and its
    value is the long window's burn rate (multiples of the error budget).
    """

    name: str
    slo: float
    match: dict[str, str] = field(default_factory=dict)
    step: str | None = None  # shorthand for match["step"]
    metric: str = LINK_REQUESTS
    outcomes: Outcomes = STEP_OUTCOMES
    by: tuple[str, ...] = ()
    windows: tuple[BurnWindow, ...] = DEFAULT_WINDOWS
    min_traffic_rps: float | None = None
    for_s: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    absent_for_s: float | None = None
    absent_severity: str = "ticket"

    def __post_init__(self) -> None:
        validate_common(self)
        if not 0 < self.slo < 1:
            raise RuleError(f"{self.name}: slo must be between 0 and 1, e.g. 0.999")
        if self.step is not None:
            object.__setattr__(self, "match", {**self.match, "step": self.step})
        windows = tuple(BurnWindow(*w) for w in self.windows)
        if not windows:
            raise RuleError(f"{self.name}: at least one window pair is needed")
        for w in windows:
            if not (0 < w.short_s < w.long_s and w.factor > 0 and w.severity):
                raise RuleError(f"{self.name}: bad window pair {tuple(w)}")
        object.__setattr__(self, "windows", windows)
        if self.min_traffic_rps is not None and not self.min_traffic_rps >= 0:
            raise RuleError(f"{self.name}: min_traffic_rps must be >= 0")

    @property
    def budget(self) -> float:
        return round(1.0 - self.slo, 12)  # 0.001, not 0.0010000000000000009

    def alert_names(self) -> tuple[str, ...]:
        return (self.name,) + ((f"{self.name}_absent",) if self.absent_for_s else ())

    def counts(self, query: MetricsQuery, window: float, at: float) -> dict[tuple, tuple]:
        """``(bad, total)`` events per ``by`` group over the window: the counter's increase
        per outcome (what the SLA report counts with), total = good + bad."""
        rows = query.count(
            self.metric, window=window, at=at, match=self.match, by=(*self.by, "outcome")
        )
        per: dict[tuple, dict[str, float]] = {}
        for s in rows:
            if s.value is not None:
                outcomes = per.setdefault(self._key(s.labels), {})
                outcome = s.labels.get("outcome", "")
                outcomes[outcome] = outcomes.get(outcome, 0.0) + s.value
        out = {}
        for key, by_outcome in per.items():
            good, bad = self.outcomes.split(by_outcome)
            out[key] = (bad, good + bad)
        return out

    def _ratios(self, query: MetricsQuery, window: float, at: float) -> dict[tuple, float]:
        return {k: bad / tot for k, (bad, tot) in self.counts(query, window, at).items() if tot}

    def _key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(labels.get(b, "") for b in self.by)

    def evaluate(self, query: MetricsQuery, at: float) -> list[Instance]:
        out: list[Instance] = []
        if self.absent_for_s:
            # every process exports the step's zero-initialised series, so "absent" is
            # "no increase at all", not "no series"
            seen = query.rate(self.metric, window=self.absent_for_s, at=at, match=self.match)
            if not any(s.value for s in seen):
                out.append(absent_instance(self, self.match))
        min_rps = self.min_traffic_rps or 0.0
        cache: dict[float, dict[tuple, float]] = {}
        traffic_cache: dict[float, dict | None] = {}

        def ratios(win: float) -> dict[tuple, float]:
            if win not in cache:
                cache[win] = self._ratios(query, win, at)
            return cache[win]

        best: dict[tuple[tuple, str], tuple[float, BurnWindow]] = {}
        for w in self.windows:
            threshold = w.factor * self.budget
            # the long window first: the short one and the traffic are read only for a
            # series whose long window burns (most evaluations of a healthy system)
            burning = {k: r for k, r in ratios(w.long_s).items() if r > threshold}
            if not burning:
                continue
            short = ratios(w.short_s)
            if w.long_s not in traffic_cache:
                traffic_cache[w.long_s] = self._traffic(query, w.long_s, at)
            traffic = traffic_cache[w.long_s]
            for key, ratio in burning.items():
                if short.get(key, 0.0) > threshold:
                    if traffic is not None and traffic.get(key, 0.0) < min_rps:
                        continue
                    burn = ratio / self.budget
                    if (key, w.severity) not in best or burn > best[(key, w.severity)][0]:
                        best[(key, w.severity)] = (burn, w)
        for (key, severity), (burn, w) in best.items():
            extra = {
                "windows": f"{duration(w.long_s)}/{duration(w.short_s)}",
                "slo": f"{self.slo:.6g}",
                "burn_rate": f"{burn:.4g}",
            }
            labels = {**self.match, **dict(zip(self.by, key, strict=True))}
            out.append(instance(self, self.name, severity, labels, burn, self.for_s, extra))
        return out

    def _traffic(self, query: MetricsQuery, window: float, at: float) -> dict | None:
        if self.min_traffic_rps is None:
            return None
        rows = query.rate(self.metric, window=window, at=at, match=self.match, by=self.by)
        return {self._key(s.labels): s.value for s in rows if s.value is not None}

    def _ratio_promql(self, window: float) -> str:
        w = duration(window)
        bad = outcome_selector(self.metric, self.match, self.outcomes.bad)
        counted = outcome_selector(self.metric, self.match, self.outcomes.counted)
        err = sum_by(self.by, f"rate({bad}[{w}])")
        tot = sum_by(self.by, f"rate({counted}[{w}])")
        # no bad series yet is a ratio of 0, not no data (as the engine and the SLA report)
        return f"({err} or 0 * {tot}) / {tot}"

    def pair_promql(self, w: BurnWindow) -> str:
        """One window pair, SRE workbook form, with the min-traffic guard if any."""
        t = f"({number(w.factor)} * {number(self.budget)})"
        lines = [
            "(",
            f"  {self._ratio_promql(w.long_s)} > {t}",
            "and",
            f"  {self._ratio_promql(w.short_s)} > {t}",
        ]
        if self.min_traffic_rps is not None:
            tot = selector(self.metric, self.match)
            traffic = sum_by(self.by, f"rate({tot}[{duration(w.long_s)}])")
            lines += [f"and {on(self.by)}", f"  {traffic} >= {number(self.min_traffic_rps)}"]
        return "\n".join([*lines, ")"])

    def to_prometheus(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for severity in dict.fromkeys(w.severity for w in self.windows):
            pairs = [self.pair_promql(w) for w in self.windows if w.severity == severity]
            rule: dict[str, Any] = {"alert": self.name, "expr": "\nor\n".join(pairs) + "\n"}
            if self.for_s:
                rule["for"] = duration(self.for_s)
            rule["labels"] = {"severity": severity, **self.match, **self.labels}
            notes = {"slo": f"{self.slo:.6g}", **self.annotations}
            rule["annotations"] = notes
            out.append(rule)
        if self.absent_for_s:
            sel, win = selector(self.metric, self.match), duration(self.absent_for_s)
            expr = f"sum(increase({sel}[{win}])) == 0 or absent_over_time({sel}[{win}])"
            out.append(absent_export(self, expr))
        return out
