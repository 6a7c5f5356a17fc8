"""Latency SLO burn rates: the ratio of slow requests read from histogram buckets."""

from __future__ import annotations

from dataclasses import dataclass

from collectors.query import MetricsQuery

from .burnrate import BurnRateRule
from .errors import RuleError
from .spec import duration, selector, sum_by


def le_label(seconds: float) -> str:
    """A bucket bound as prometheus_client writes ``le``: 1 -> ``"1.0"``, 0.25 -> ``"0.25"``."""
    return repr(float(seconds))


@dataclass(frozen=True)
class LatencyBurnRule(BurnRateRule):
    """A burn-rate rule whose bad events are requests slower than ``threshold_s``.

    ``histogram`` is the histogram's base name; its ``_count`` is the total (and the
    min-traffic guard), ``_bucket{le=threshold}`` the fast requests, so the error ratio is
    ``1 - fast / total``. ``threshold_s`` must be one of the histogram's bucket bounds.
    """

    histogram: str = "paywatch_link_latency_seconds"
    threshold_s: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", f"{self.histogram}_count")
        super().__post_init__()
        if not self.threshold_s > 0:
            raise RuleError(f"{self.name}: threshold_s must be > 0")

    @property
    def fast_selector(self) -> dict[str, str]:
        return {**self.match, "le": le_label(self.threshold_s)}

    def counts(self, query: MetricsQuery, window: float, at: float) -> dict[tuple, tuple]:
        """``(slow, total)`` requests per ``by`` group over the window."""
        bucket = f"{self.histogram}_bucket"
        fast_rows = query.count(bucket, window=window, at=at, match=self.fast_selector, by=self.by)
        fast = {self._key(s.labels): s.value or 0.0 for s in fast_rows}
        out = {}
        for s in query.count(self.metric, window=window, at=at, match=self.match, by=self.by):
            if s.value is not None:
                key = self._key(s.labels)
                out[key] = (max(s.value - fast.get(key, 0.0), 0.0), s.value)
        return out

    def _ratio_promql(self, window: float) -> str:
        w = duration(window)
        fast = sum_by(
            self.by, f"rate({selector(f'{self.histogram}_bucket', self.fast_selector)}[{w}])"
        )
        tot = sum_by(self.by, f"rate({selector(self.metric, self.match)}[{w}])")
        return f"(1 - {fast} / {tot})"
